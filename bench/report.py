"""How long a report takes: ``python bench/report.py`` prints a table.

The run reported on is **a day of 1-second bars**: 24 simulated hours (aggTrade + bookTicker,
seed 0) replayed by ``ares-stream replay --interval 1s`` with the paper broker and batch learning
on (configs/demo.toml's batch and trading settings), which leaves 86,400 bars of predictions and
equity marks, thousands of fills, boosters, validations and drift events in the database. The
replay is made once and kept under ``--work`` (default: the system temp directory).

Then the report is timed in its stages — load (SQLite → arrays + summary), each figure, the page —
and end to end (``write_report``, files included), best of ``--repeat``. Target: a few seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ares_stream.report import data as report_data  # noqa: E402  (after the path is set)
from ares_stream.report import figures, html, write_report  # noqa: E402

TARGET_S = 5.0  # "a report of a day of 1-second bars renders in seconds"
CONFIG = """\
[bars]
interval = "1s"
[features]
flow_window = 10
[labels]
horizon = 10
threshold_bps = 2.0
[batch]
min_rows = 3000
update_rows = 3000
validate_every = "1s"
validate_rows = 6000
folds = 3
bootstrap = 200
rounds_refit = 50
max_trees = 150
fee_bps = 1.0
[trading]
fee_bps = 1.0
enter = 0.6
exit = 0.5
"""


def day_of_1s_bars(work: Path) -> Path:
    """The database of a replayed simulated day at 1-second bars (made once)."""
    db = work / "day-1s.db"
    if db.exists():
        return db
    work.mkdir(parents=True, exist_ok=True)
    rec, cfg = work / "day.gz", work / "day.toml"
    cfg.write_text(CONFIG)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ares_stream.cli", "simulate", "--out", str(rec),
                    "--seconds", "86400", "--seed", "0"], check=True, cwd=work)
    subprocess.run([sys.executable, "-m", "ares_stream.cli", "replay", str(rec), "--config",
                    str(cfg), "--db", str(db), "--quiet", "--no-report"], check=True, cwd=work)
    print(f"(made the replay in {time.perf_counter() - started:.0f} s: {db})", file=sys.stderr)
    return db


def best(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ares-bench")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    db = day_of_1s_bars(args.work)
    load_s, data = best(lambda: report_data.load(db), args.repeat)
    rows = [("load: SQLite → arrays + summary", load_s)]
    figures_s, images = best(lambda: figures.render(data), args.repeat)
    rows.append(("figures: all four PNGs (matplotlib Agg)", figures_s))
    page_s, page = best(lambda: html.page(data, images), args.repeat)  # type: ignore[arg-type]
    rows.append(("page: HTML + base64", page_s))
    total_s, path = best(lambda: write_report(db, args.work / "report"), args.repeat)
    rows.append(("write_report end to end (files included)", total_s))
    print(f"\nreport of {db.name}: {data.prices[0].time.size:,} bars, "  # type: ignore[attr-defined]
          f"{data.equity.time.size:,} equity marks, {data.fills.time.size:,} fills, "  # type: ignore[attr-defined]
          f"{data.scores.time.size:,} labelled predictions, "  # type: ignore[attr-defined]
          f"{data.drifts.time.size} drift events, {len(data.validations)} validations shown; "  # type: ignore[attr-defined]
          f"page {len(page) / 1e6:.2f} MB\n")  # type: ignore[arg-type]
    print(f"| stage | seconds (best of {args.repeat}) |\n|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} |")
    verdict = "PASS" if total_s <= TARGET_S else "FAIL"
    print(f"\nend to end {total_s:.2f} s vs target <= {TARGET_S:.0f} s: {verdict} ({path})")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
