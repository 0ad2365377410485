"""Per-bar cost against the number of symbols: ``python bench/scale.py`` prints a table.

The input is the real BTCUSDT trade tape of ``../shared/data/ws/binance-spot-btcusdt-20240808.gz``
(its 9,757 trade frames, the depth diffs dropped), copied end to end later in time until it holds
``--frames`` frames, then **relabelled round-robin** into N symbols (frame i goes to symbol
``i mod N``: every symbol trades across the whole span) with each symbol's trade ids renumbered
1, 2, 3 … so no symbol sees a gap. The same frames, the same count, at every N.

For N = 1, 10, 100, 1,000 symbols, 1 s and 1 m bars, batch learning off and on, each replay runs in
its own process (``ares-stream replay``'s own ``run_replay`` into a fresh SQLite file) and reports
frames/s of wall time and of the process's CPU time, and its RSS at the end (peak, ``ru_maxrss``).
Beside them: the bare decode loop, a plain ``msgspec`` typed-Struct decode of the same frames.

``--against DIR [DIR …]`` measures other checkouts of the package (e.g. ``git worktree add
/tmp/before HEAD`` taken before a change) in the same run, each of their replays right after the
same replay of this tree, so the machine's drift hits them alike. ``--quick``: 20,000 frames,
1 and 100 symbols.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "ws" / "binance-spot-btcusdt-20240808.gz"
SYMBOLS = (1, 10, 100, 1000)


class _Trade(msgspec.Struct):
    e: str  # event type, "trade"
    E: int  # event time, ms
    s: str  # symbol
    t: int  # trade id
    p: str  # price, decimal string
    q: str  # quantity, decimal string
    T: int  # trade time, ms
    m: bool  # buyer is the maker


class _Frame(msgspec.Struct):
    stream: str  # "<symbol>@trade"
    data: _Trade


def tape(path: Path) -> list[tuple[int, dict]]:
    """The trade frames of a recording: (receive time ns, parsed frame)."""
    out = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            ts, _, frame = line.rstrip(b"\n").partition(b" ")
            if b"@trade" in frame[:40]:
                out.append((int(ts), json.loads(frame)))
    return out


def relabel(frames: list[tuple[int, dict]], count: int, n: int) -> list[bytes]:
    """``count`` recording lines: the tape repeated later in time, frame i to symbol ``i mod n``,
    each symbol's trade ids 1, 2, 3 …"""
    first, last = frames[0][1]["data"], frames[-1][1]["data"]
    ms_span = last["T"] - first["T"] + 1000
    ids = [0] * n
    lines = []
    for i in range(count):
        k, at = divmod(i, len(frames))
        ts, msg = frames[at]
        d, j = dict(msg["data"]), i % n
        ids[j] += 1
        sym = f"S{j:04d}USDT"
        d.update(s=sym, t=ids[j], T=d["T"] + k * ms_span, E=d["E"] + k * ms_span)
        frame = json.dumps({"stream": f"{sym.lower()}@trade", "data": d}, separators=(",", ":"))
        lines.append(f"{ts + k * ms_span * 1_000_000} {frame}\n".encode())
    return lines


def write_feed(lines: list[bytes], path: Path) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.writelines(lines)
    return path


def bare_decode(lines: list[bytes]) -> tuple[float, float]:
    """Frames/s (wall, CPU) of the plainest typed decode of the same frames."""
    frames = [line.partition(b" ")[2] for line in lines]
    decode = msgspec.json.Decoder(_Frame).decode
    wall, cpu = time.perf_counter(), time.process_time()
    for f in frames:
        decode(f)
    return len(frames) / (time.perf_counter() - wall), len(frames) / (time.process_time() - cpu)


def one_replay(feed: str, interval: str, batch: bool, db: str) -> dict:
    """In the child process: one replay; frames/s of wall and CPU time, RSS after."""
    from ares_stream import logs
    from ares_stream.config import Config, replace_values
    from ares_stream.replay import run_replay

    logs.configure(level="error")
    cfg = replace_values(Config(), {"bars": {"interval": interval}, "labels": {"horizon": 10},
                                    "batch": {"enabled": batch}})
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_replay([feed], cfg, db_path=Path(db))  # the whole replay, set-up and close
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    bars = result.summary["bars"]
    return {"frames": result.frames, "wall": result.frames / wall,
            "cpu": result.frames / cpu, "bars": bars, "us_bar": cpu / max(bars, 1) * 1e6,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spawn(tree: Path, feed: Path, interval: str, batch: bool, db: Path) -> dict:
    """Run :func:`one_replay` in a fresh process importing ``ares_stream`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(feed), interval,
           str(int(batch)), str(db)]
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"bench/scale.py: replay failed ({tree}, {feed.name}, {interval}, "
                 f"batch={batch}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(r: dict) -> str:
    return (f"{r['wall']:>7,.0f} {r['cpu']:>7,.0f} {r['bars']:>7,} {r['us_bar']:>6,.0f} "
            f"{r['rss_mb']:>5,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000, help="frames per replay")
    parser.add_argument("--symbols", type=int, nargs="+", default=list(SYMBOLS))
    parser.add_argument("--quick", action="store_true", help="20,000 frames; 1 and 100 symbols")
    parser.add_argument("--against", type=Path, nargs="+", default=[],
                        help="other checkouts, measured alongside")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        feed, interval, batch, db = args.child
        print(json.dumps(one_replay(feed, interval, batch == "1", db)))
        return
    if not SOURCE.exists():
        print(f"bench/scale.py: skipped: the recording {SOURCE} is missing")
        return
    if args.quick:
        args.frames, args.symbols = 20_000, [1, 100]
    trees = [("this", ROOT)] + [(p.resolve().name, p.resolve()) for p in args.against]
    frames = tape(SOURCE)
    print(f"{args.frames:,} trade frames from {SOURCE.name} ({len(frames):,} trades, repeated "
          f"later in time), relabelled round-robin into N symbols. Per tree: frames/s of wall "
          f"and of the replay process's CPU time, bars, CPU us per bar (all of it over the "
          f"bars), peak RSS MB")
    cols = "  ".join(f"{t + ': wall/s  cpu/s    bars us/bar   RSS':>37}" for t, _ in trees)
    print(f"{'N':>5} {'bar':>4} {'batch':>5} {'bare decode wall/cpu':>19}  {cols}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.symbols:
            lines = relabel(frames, args.frames, n)
            feed = write_feed(lines, Path(tmp) / f"n{n}.gz")
            dw, dc = bare_decode(lines)
            for interval in ("1s", "1m"):
                for batch in (False, True):
                    cells = []
                    for tag, tree in trees:
                        db = Path(tmp) / f"{tag}-{n}-{interval}-{int(batch)}.db"
                        cells.append(fmt(spawn(tree, feed, interval, batch, db)))
                    print(f"{n:>5} {interval:>4} {'on' if batch else 'off':>5} "
                          f"{dw:>9,.0f}/{dc:>9,.0f}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
