import json, sqlite3, sys, numpy as np
from collections import defaultdict
BINS, EPS = 10, 1e-4
def load(db):
    c = sqlite3.connect(db)
    feats = json.loads(c.execute("select features from models limit 1").fetchone()[0])
    rows = c.execute("select ts_event, x from buffer order by ts_event").fetchall()
    ts = np.array([r[0] for r in rows]); X = np.frombuffer(b"".join(r[1] for r in rows)).reshape(len(rows), -1)
    checks = c.execute("select distinct ts_event, model_id from feature_drift order by ts_event").fetchall()
    models = {i: (a, b) for i, a, b in c.execute("select id, train_start, train_end from models")}
    return feats, ts, X, checks, models
def psi_null(ref, rec, w, stride):
    ref = ref[np.isfinite(ref)]; rec = rec[np.isfinite(rec)]
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, BINS + 1)[1:-1]))
    B = len(edges) + 1
    bi = np.searchsorted(edges, ref, side="right")
    p = np.maximum(np.bincount(bi, minlength=B) / len(ref), EPS)
    q = np.maximum(np.bincount(np.searchsorted(edges, rec, side="right"), minlength=B) / len(rec), EPS)
    psi = float(np.sum((q - p) * np.log(q / p)))
    C = np.vstack([np.zeros(B), np.cumsum(np.eye(B)[bi], axis=0)])
    starts = np.arange(0, len(ref) - w + 1, stride)
    if len(ref) < 2 * w or not len(starts): return psi, np.array([np.inf])
    cnt = C[starts + w] - C[starts]; rest = C[-1] - cnt
    qq = np.maximum(cnt / w, EPS); pp = np.maximum(rest / (len(ref) - w), EPS)
    return psi, np.sum((qq - pp) * np.log(qq / pp), axis=1)
def run(db, W, minref):
    feats, ts, X, checks, models = load(db)
    out = []
    for t, mid in checks:
        a, b = models[mid]
        ref = X[(ts >= a) & (ts <= b)]
        rec = X[ts < t][-W:]
        if len(ref) < minref * W: out.append((t, None)); continue
        res = []
        for j in range(X.shape[1]):
            p, null = psi_null(ref[:, j], rec[:, j], W, max(W // 5, 1))
            res.append((p, null))
        out.append((t, mid, res))
    return feats, out
