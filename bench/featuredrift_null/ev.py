import sys, json, itertools, numpy as np
sys.path.insert(0, __import__('os').path.dirname(__file__)); from ana import run
DB = __import__('os').environ.get('FD_DB', '/tmp/fd2/db')
BAR = 10 * 10**9; START = 1735689600 * 10**9; H = 3600 * 10**9
SW = [START + 6 * H, START + 12 * H, START + 18 * H]
seeds = [int(s) for s in sys.argv[1].split(',')]
Ws = [int(s) for s in sys.argv[2].split(',')]
res = {}
for s in seeds:
    for kind in ('stationary', 'vol'):
        for W in Ws:
            res[s, kind, W] = run(f'{DB}/{s}-{kind}.db', W, 4)
def flags(chk, q, fac, floor):
    t, mid, r = chk
    return [p > max(floor, fac * (np.max(n) if q >= 1 else np.quantile(n, q))) for p, n in r]
def evaluate(W, q, fac, floor, k):
    fp, dl, per = 0, [], {}
    for s in seeds:
        feats, out = res[s, 'stationary', W]
        raised = None; ev = 0
        for c in out:
            if c[1] is None: continue
            d = sum(flags(c, q, fac, floor)) >= k
            if not d: raised = None
            elif raised != c[1]: raised = c[1]; ev += 1
        fp += ev
        feats, out = res[s, 'vol', W]
        row = []
        for sw in SW:
            hit = [c[0] for c in out if c[1] is not None and sw <= c[0] < sw + 2 * H and sum(flags(c, q, fac, floor)) >= k]
            row.append((hit[0] - sw) // BAR if hit else None)
        dl.append(row)
    bars = 8640 * len(seeds)
    return fp * 10000 / bars, dl
if __name__ == '__main__':
    for W in Ws:
        for q, fac, floor, k in itertools.product([1.0, 0.95], [1.0, 1.5, 2.0], [0.1, 0.25], [1, 2, 3]):
            fp, dl = evaluate(W, q, fac, floor, k)
            n6 = sum(r[0] is not None and r[0] <= 200 for r in dl); n18 = sum(r[2] is not None and r[2] <= 200 for r in dl)
            n12 = sum(r[1] is not None and r[1] <= 200 for r in dl)
            print(f"W={W} q={q} fac={fac} floor={floor} k={k} fp/10k={fp:.2f} 6h<=200:{n6}/{len(dl)} 12h:{n12} 18h:{n18} d6={[r[0] for r in dl]} d18={[r[2] for r in dl]}")
