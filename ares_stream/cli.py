"""``ares-stream`` subcommands: argument parsing only; the work lives in the modules they call.

A user's mistake (a missing file, a bad config key, a malformed row) ends with a one-line reason on
stderr and exit code 2, never a traceback; an interrupted run exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ares_stream import __version__
from ares_stream.config import Config, load_config, replace_values
from ares_stream.errors import AresError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ares-stream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ares-stream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="backtest recorded feeds through the engine")
    replay.add_argument("paths", nargs="+", metavar="PATH",
                        help="recordings (.gz/.txt), data.binance.vision CSV/ZIP, globs, dirs")
    _common(replay)
    replay.add_argument("--db", type=Path, help="run database (default: state/runs/replay-*.db)")
    replay.add_argument("--symbols", help="comma-separated symbols to process (default: all)")
    replay.add_argument("--skip-bad", action="store_true",
                        help="skip and count malformed rows instead of stopping")
    replay.add_argument("--interval", help="bar interval for bars built from trades (e.g. 1s)")
    replay.add_argument("--quiet", action="store_true", help="no progress line, warnings only")
    sim = sub.add_parser("simulate", help="write a seeded simulated recording (for the demo)")
    sim.add_argument("--out", type=Path, required=True, help="recording file to write (.gz)")
    sim.add_argument("--seconds", type=int, default=86_400, help="simulated seconds")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--symbol", default="SIMUSDT")
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    p.add_argument("--log-json", action="store_true", help="JSON logs even on a terminal")


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    overrides: dict[str, dict[str, object]] = {}
    if getattr(args, "symbols", None):
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        overrides.setdefault("feed", {})["symbols"] = symbols
    if getattr(args, "skip_bad", False):
        overrides.setdefault("feed", {})["skip_bad"] = True
    if getattr(args, "interval", None):
        overrides.setdefault("bars", {})["interval"] = args.interval
    return replace_values(cfg, overrides, source="command line") if overrides else cfg


def cmd_replay(args: argparse.Namespace) -> int:
    from ares_stream import logs, replay

    logs.configure(json=True if args.log_json else None,
                   level="warning" if args.quiet else "info")
    cfg = _config(args)
    progress = None if args.quiet else replay.progress_stream()
    result = replay.run_replay(args.paths, cfg, db_path=args.db, progress=progress)
    print(replay.format_summary(result))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from ares_stream.feed.simulator import write_recording

    if args.seconds < 1:
        raise AresError("--seconds must be at least 1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sched = write_recording(args.out, seconds=args.seconds, seed=args.seed, symbol=args.symbol)
    print(f"wrote {sched.frames:,} frames ({args.seconds:,} simulated seconds) to {args.out}; "
          f"concept drift planted at +{args.seconds // 2:,} s")
    return 0


COMMANDS = {"replay": cmd_replay, "simulate": cmd_simulate}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AresError as exc:
        print(f"ares-stream {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"ares-stream {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
