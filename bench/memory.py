"""Memory per symbol, before and after the float32 buffer and the numpy rings (issue 21).

``python bench/memory.py --before /tmp/mem-before`` (a checkout of the code before the change,
e.g. ``git worktree add /tmp/mem-before d1e492a~1``) prints one table. Every figure is measured
in its own subprocess, the old code and this checkout side by side in one invocation:

1. **bytes per buffered row**: ``tracemalloc`` over a ``SampleBuffer`` of the 15 default features
   filled to ``max_rows`` and compacted (steady state), divided by ``max_rows``;
2. **one symbol's engine state** after 3,000 real one-minute BTCUSDT bars (warm samples and
   rolling windows full; batch learning off): the deep size of its ``SymbolState`` and its
   checkpoint (codec) bytes;
3. **RSS of N symbols** (100 and 1,000): engine states cloned through the codec from that replay,
   and sample buffers filled synthetically to ``--rows`` rows (random float64 features, cloned),
   held in one process; VmRSS minus the process's RSS before them, per symbol, and the
   extrapolation to 2,000 symbols at the default ``batch.buffer_rows = 200,000`` with the
   arithmetic shown (per-row bytes from 1., state from 3., the process from the RSS);
4. **validation**: a quick-profile replay of 6,000 real bars with batch learning on, its
   validations (River candidate read from the buffer at float32 now) old against new.
"""

from __future__ import annotations

import argparse
import copy
import gc
import gzip
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KLINES = ROOT.parent / "shared" / "data" / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
FEATURES = 15


def rss() -> int:
    """This process's resident set, bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and all it references (numpy buffers included), each object once."""
    import numpy as np

    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, type):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, np.ndarray):
        return size if obj.base is None else size + deep_size(obj.base, seen)
    if isinstance(obj, dict):
        return size + sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
        return size + sum(deep_size(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            size += deep_size(getattr(obj, name), seen)
    return size


NAMES = [f"f{i}" for i in range(FEATURES)]


def samples(rows: int) -> list[dict[str, float]]:
    """Random float64 feature dicts, as many as a buffer of ``rows`` takes before it is full
    and compacted (its steady state)."""
    import numpy as np

    X = np.random.default_rng(0).normal(size=(rows + rows // 3, FEATURES)).tolist()
    return [dict(zip(NAMES, row, strict=True)) for row in X]


def filled_buffer(rows: int, xs: list[dict[str, float]]) -> Any:
    """A buffer of ``rows`` max rows, given ``xs`` one by one."""
    from ares_stream.learners.buffer import SampleBuffer

    buf = SampleBuffer("S", NAMES, max_rows=rows)
    for i, x in enumerate(xs):
        buf.add(i + 1, x, label=i % 2, forward_return=0.001, close=100.0)
    return buf


class NullSink:
    """Takes the engine's results and drops them."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def engine_state(bars: int) -> Any:
    """One symbol's state after ``bars`` real one-minute bars (batch learning off)."""
    from ares_stream.config import load_config, replace_values
    from ares_stream.engine import Engine
    from ares_stream.feed.publicdata import PublicDataSource

    cfg = replace_values(load_config(None), {"feed": {"symbols": ["BTCUSDT"]},
                                             "batch": {"enabled": False}})
    engine = Engine(cfg, NullSink())
    for k in itertools.islice(PublicDataSource(KLINES), bars):
        engine.feed(k)
    return engine.state["BTCUSDT"]


def probe_row(rows: int) -> dict[str, Any]:
    import ares_stream
    from ares_stream.learners import buffer  # imported before the count

    xs = samples(rows)
    filled_buffer(8, xs[:20])
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    buf = filled_buffer(rows, xs)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"bytes_per_row": held / rows, "rows": len(buf), "code": ares_stream.__file__,
            "dtype": str(buffer.SampleBuffer("S", NAMES)._X.dtype)}


def probe_state() -> dict[str, Any]:
    from ares_stream import codec

    st = engine_state(3000)
    parts = {"warm samples": st.learner._buffer, "learner rolling": st.learner._rolling,
             "engine rolling scores": st.rolling}
    return {"total": deep_size(st), "checkpoint": len(codec.dumps(st)),
            **{k: deep_size(v) for k, v in parts.items()}}


def probe_rss(symbols: int, rows: int) -> dict[str, Any]:
    from ares_stream import codec

    blob = codec.dumps(engine_state(1500))
    template = filled_buffer(rows, samples(rows)) if rows else None
    gc.collect()
    base = rss()
    states = [codec.loads(blob) for _ in range(symbols)]
    buffers = [copy.deepcopy(template) for _ in range(symbols)]  # rows = 0: states only
    gc.collect()
    held = rss() - base
    assert len(states) == len(buffers) == symbols
    return {"rss": rss(), "base": base, "per_symbol": held / symbols}


def probe_validate(workdir: str) -> dict[str, Any]:
    import sqlite3

    from ares_stream.config import load_config, replace_values
    from ares_stream.replay import run_replay

    src = Path(workdir) / "BTCUSDT-1m-sub.csv"
    if not src.exists():
        with gzip.open(KLINES, "rt") as f, open(src, "w") as g:
            g.writelines(itertools.islice(f, 6000))
    cfg = replace_values(load_config(None, "quick"), {"feed": {"symbols": ["BTCUSDT"]}})
    db = Path(tempfile.mkdtemp(dir=workdir)) / "run.db"
    run_replay([str(src)], cfg, db_path=db)
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT challenger, incumbent, promoted, challenger_loss, "
                        "incumbent_loss, fold_table FROM validations ORDER BY id").fetchall()
    out = [{"decision": [ch, inc, promoted], "losses": [cl, il],
            "folds": {f"{r['fold']}/{r['candidate']}": {k: v for k, v in r.items()
                                                       if isinstance(v, float)}
                      for r in json.loads(table)}}
           for ch, inc, promoted, cl, il, table in rows]
    preds = conn.execute("SELECT proba, value FROM predictions ORDER BY symbol, ts_event")
    proba, value = zip(*preds.fetchall(), strict=True)
    trades = conn.execute("SELECT count(*) FROM fills").fetchone()[0]
    return {"validations": out, "online": hashlib.sha256(repr(value).encode()).hexdigest()[:16],
            "traded": list(proba), "fills": trades}


PROBES = {"row": lambda a: probe_row(a.rows), "state": lambda a: probe_state(),
          "rss": lambda a: probe_rss(a.symbols, a.rows),
          "validate": lambda a: probe_validate(a.workdir)}


def run_probe(code: Path, kind: str, **kw: Any) -> dict[str, Any]:
    """One probe in a fresh interpreter importing ares_stream from ``code``."""
    args = [sys.executable, __file__, "--probe", kind, *itertools.chain.from_iterable(
        (f"--{k}", str(v)) for k, v in kw.items())]
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True, cwd=code)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, default=Path("/tmp/mem-before"),
                   help="a checkout of the code before the change")
    p.add_argument("--rows", type=int, default=20_000, help="rows per buffer in the RSS probe")
    p.add_argument("--symbols", type=int, default=0)
    p.add_argument("--counts", default="100,1000", help="symbol counts of the RSS probe")
    p.add_argument("--probe", choices=sorted(PROBES))
    p.add_argument("--workdir", default="")
    p.add_argument("--no-validate", action="store_true")
    a = p.parse_args()
    if a.probe:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
        print(json.dumps(PROBES[a.probe](a)))
        return
    report(a)


def report(a: argparse.Namespace) -> None:
    codes = {"before": a.before.resolve(), "after": ROOT}
    row = {k: run_probe(c, "row", rows=50_000)["bytes_per_row"] for k, c in codes.items()}
    state = {k: run_probe(c, "state") for k, c in codes.items()}
    print(f"{'':44} {'before':>10} {'after':>10} {'ratio':>6}")
    line = "{:44} {:>10,.0f} {:>10,.0f} {:>6.2f}"
    print(line.format("bytes per buffered row (15 feat.)", row["before"], row["after"],
                      row["before"] / row["after"]))
    for key in ("total", "warm samples", "learner rolling", "engine rolling scores",
                "checkpoint"):
        b, n = state["before"][key], state["after"][key]
        print(line.format(f"state per symbol: {key}, B", b, n, b / n))
    counts = [int(c) for c in a.counts.split(",")]
    rs = {(k, n): run_probe(c, "rss", symbols=n, rows=a.rows) for k, c in codes.items()
          for n in counts}
    for k, c in codes.items():  # the states alone: their RSS per symbol
        state[k]["rss"] = run_probe(c, "rss", symbols=max(counts), rows=0)["per_symbol"]
    b, m = state["before"]["rss"], state["after"]["rss"]
    print(line.format(f"state per symbol: RSS ({max(counts):,} states), B", b, m, b / m))
    for n in counts:
        b, m = rs[("before", n)], rs[("after", n)]
        print(line.format(f"RSS, {n:,} symbols x {a.rows:,} rows, MB", b["rss"] / 1e6,
                          m["rss"] / 1e6, b["rss"] / m["rss"]))
        print(line.format("  held per symbol, KB", b["per_symbol"] / 1e3,
                          m["per_symbol"] / 1e3, b["per_symbol"] / m["per_symbol"]))
    extrapolate(row, state, rs, counts, a.rows)
    if not a.no_validate:
        validate(codes)


def extrapolate(row: dict[str, float], state: dict[str, Any], rs: dict[Any, Any],
                counts: list[int], rows: int) -> None:
    print("\n2,000 symbols at batch.buffer_rows = 200,000 (per-symbol slope of the RSS probe):")
    lo, hi = min(counts), max(counts)
    for k in ("before", "after"):
        slope = (rs[(k, hi)]["rss"] - rs[(k, lo)]["rss"]) / (hi - lo)
        st = state[k]["rss"]
        rows_part = slope - st  # what one buffer of ``rows`` rows cost in RSS
        per_row = rows_part / rows
        base = rs[(k, lo)]["rss"] - lo * slope
        total = base + 2000 * (200_000 * per_row + st)
        print(f"  {k:6}: RSS slope {slope / 1e3:,.0f} KB/symbol = {st / 1e3:,.0f} KB state + "
              f"{rows:,} rows x {per_row:.1f} B; 2,000 x (200,000 x {per_row:.1f} B + "
              f"{st / 1e3:,.0f} KB) + {base / 1e9:.2f} GB process = {total / 1e9:.1f} GB "
              f"(tracemalloc: {row[k]:.1f} B a row)")


def validate(codes: dict[str, Path]) -> None:
    work = tempfile.mkdtemp(prefix="bench-memory-")
    got = {k: run_probe(c, "validate", workdir=work) for k, c in codes.items()}
    print("\n" + compare_validations(got["before"], got["after"]))


def compare_validations(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Decisions, and per candidate the largest difference of any fold metric, old vs new."""
    b, a = before["validations"], after["validations"]
    same = sum(x["decision"] == y["decision"] for x, y in zip(b, a, strict=False))
    worst: dict[str, float] = {}
    for x, y in zip(b, a, strict=False):
        for key, metrics in x["folds"].items():
            cand = key.split("/", 1)[1]
            other = y["folds"].get(key, {})
            d = max((abs(v - other[m]) for m, v in metrics.items()
                     if isinstance(other.get(m), float)), default=0.0)
            worst[cand] = max(worst.get(cand, 0.0), d)
    cands = ", ".join(f"{c} {d:.1e}" for c, d in worst.items())
    moved = [abs(p - q) for p, q in zip(before["traded"], after["traded"], strict=True) if p != q]
    online = "identical" if before["online"] == after["online"] else "DIFFERENT"
    return (f"validation (quick profile, 6,000 real 1m bars, batch on): {len(b)} / {len(a)} "
            f"validations, {same} decisions identical; largest |difference| of a fold metric "
            f"per candidate: {cands}\nonline River predictions ({len(after['traded']):,}): "
            f"{online}; traded ensemble probability (weights = validated skill): "
            f"{len(moved):,} differ, by at most {max(moved, default=0.0):.1e}; "
            f"fills {before['fills']} / {after['fills']}")


if __name__ == "__main__":
    main()
