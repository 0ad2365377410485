"""Checkpoint codec vs pickle: ``python bench/codec.py [--candles N]`` prints a table.

For each learner model (``logreg``, ``hat``, ``arf`` by default; ``--models``), the engine replays
the first ``--candles`` (20,000) one-minute BTCUSDT candles of ``../shared/data/klines`` (skipped,
naming the path, when absent) exactly as ``ares-stream replay`` does, with batch learning off;
then the checkpoint's dict (``state``, ``counts``) is written and read back with
:mod:`ares_stream.codec` and with pickle: best of ``--repeat`` times, and sizes. Every codec round
trip is checked: the decoded state encodes to the same bytes.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ares_stream import codec, logs
from ares_stream.config import load_config, replace_values
from ares_stream.replay import open_sources
from ares_stream.runtime import build_engine
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KLINES = DATA / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
REGRESSORS = ("linreg", "hatr", "arfr")


def engine_state(model: str, candles: int) -> dict[str, Any]:
    """The checkpoint dict after replaying ``candles`` candles with learner ``model``."""
    task = "regression" if model in REGRESSORS else "classification"
    cfg = replace_values(load_config(None), {"learner": {"model": model, "task": task},
                                             "batch": {"enabled": False}})
    stream, _ = open_sources([str(KLINES)], symbol="BTCUSDT")
    store = RunStore(open_db(":memory:"), mode="replay", config={}, sources=[], flush_rows=10_000)
    engine = build_engine(cfg, store, replay=True)
    for item in itertools.islice(stream, candles):
        engine.feed(item)
    return {"state": engine.state, "counts": dict(engine.counts)}


def best(f: Callable[[], Any], repeat: int) -> float:
    """Fewest seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def row(model: str, state: dict[str, Any], repeat: int) -> tuple[str, ...]:
    blob, pickled = codec.dumps(state), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    assert codec.dumps(codec.loads(blob)) == blob, f"{model}: the codec round trip differs"
    cells = [best(lambda: codec.dumps(state), repeat), best(lambda: codec.loads(blob), repeat),
             best(lambda: pickle.dumps(state, protocol=5), repeat),
             best(lambda: pickle.loads(pickled), repeat)]
    ms = [f"{1000 * s:,.0f}" for s in cells]
    return (model, *ms, f"{len(blob) / 1e6:.2f}", f"{len(pickled) / 1e6:.2f}",
            f"{(cells[0] + cells[1]) / (cells[2] + cells[3]):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=20_000)
    parser.add_argument("--models", default="logreg,hat,arf")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not KLINES.exists():
        print(f"skipped: no candles at {KLINES}")
        return
    logs.configure(level="error")
    header = ("model", "codec dump ms", "codec load ms", "pickle dump ms", "pickle load ms",
              "codec MB", "pickle MB", "codec/pickle time")
    rows = [header]
    for model in args.models.split(","):
        rows.append(row(model, engine_state(model, args.candles), args.repeat))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"checkpoint state after {args.candles:,} one-minute BTCUSDT candles")
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
