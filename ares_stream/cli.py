"""``ares-stream`` subcommands: argument parsing only; the work lives in the modules they call.

A user's mistake (a missing file, a bad config key, a malformed row) ends with a one-line reason on
stderr and exit code 2, never a traceback; an interrupted run exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ares_stream import __version__
from ares_stream.config import Config, from_stored, load_config, replace_values
from ares_stream.daemon import startup
from ares_stream.errors import AresError, StorageError
from ares_stream.store.failures import STORAGE_ERRORS, storage_failure

if TYPE_CHECKING:
    from ares_stream.learners.registry import Registry

EXIT_STORAGE = 1  # the machine cannot store what must be kept (a full disk)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The ``ares-stream`` argument parser: every subcommand and its flags."""
    parser = argparse.ArgumentParser(prog="ares-stream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ares-stream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="backtest recorded feeds through the engine")
    replay.add_argument("paths", nargs="+", metavar="PATH",
                        help="recordings (.gz/.txt), data.binance.vision CSV/ZIP, globs, dirs")
    _common(replay)
    replay.add_argument("--db", type=Path, help="run database (default: state/runs/replay-*.db)")
    replay.add_argument("--symbols", help="comma-separated symbols to process (default: all)")
    replay.add_argument("--shard", metavar="K/N", help="only the symbols of shard K of N "
                        "(the stable hash split of run --shard)")
    replay.add_argument("--skip-bad", action="store_true",
                        help="skip and count malformed rows instead of stopping")
    replay.add_argument("--interval", help="bar interval for bars built from trades (e.g. 1s)")
    replay.add_argument("--quiet", action="store_true", help="no progress line, warnings only")
    replay.add_argument("--report", type=Path, metavar="DIR",
                        help="where to write the run's report (default: <db>-run<ID>-report)")
    replay.add_argument("--no-report", action="store_true", help="do not write a report")
    record = sub.add_parser("record", help="record the live websocket feed without learning")
    record.add_argument("--symbols", help="comma-separated symbols (or feed.symbols in config)")
    record.add_argument("--streams", help="comma-separated streams per symbol, e.g. "
                        "aggTrade,bookTicker,kline_1m (default: feed.streams)")
    record.add_argument("--out", type=Path, default=Path("state/recordings"),
                        help="directory of the hourly recordings and record.db")
    record.add_argument("--duration", type=float, help="stop after this many seconds")
    _common(record)
    _endpoints(record)
    run = sub.add_parser("run", help="the daemon: live feed, learning, paper (or live) trading")
    mode = run.add_mutually_exclusive_group(required=True)
    mode.add_argument("--paper", action="store_true", help="paper trading (no keys, no orders)")
    mode.add_argument("--live", action="store_true", help="live orders (needs keys; see docs)")
    run.add_argument("--db", type=Path, help="state database (default: state/<mode>.db)")
    run.add_argument("--symbols", help="comma-separated symbols (or feed.symbols in config)")
    run.add_argument("--streams", help="comma-separated streams per symbol")
    run.add_argument("--shard", metavar="K/N", help="serve only shard K of N of the symbols "
                     "(a stable hash split): its own database state/<mode>-shardKofN.db, metrics "
                     "and dashboard ports + K-1 (docs/deploy.md: shards)")
    run.add_argument("--checkpoint-every", type=float, default=5.0, help="seconds")
    run.add_argument("--duration", type=float, help="stop after this many (wall) seconds")
    run.add_argument("--quiet", action="store_true", help="log warnings only")
    run.add_argument("--feed", choices=["binance", "sim"], default="binance",
                     help="binance (default), or sim: the simulated exchange in-process, "
                     "stopping when its tape is consumed")
    sim_run = run.add_argument_group("--feed sim")
    _sim_source(sim_run, seconds_flag="--sim-seconds")
    sim_run.add_argument("--report", type=Path,
                         help="directory of the report (default: the database's)")
    _common(run)
    _endpoints(run)
    _models(sub.add_parser("models", help="list (the default) or prune the model registry of "
                           "a database"))
    status = sub.add_parser("status", help="heartbeat, feed health, models, positions, PnL")
    status.add_argument("--db", type=Path, action="append", help="database (default: "
                        "state/live.db or paper.db); repeat it for several (shards): each one's "
                        "line and their totals")
    status.add_argument("--shards", type=Path, nargs="?", const=Path("state"), metavar="DIR",
                        help="every shard database (<mode>-shard<K>of<N>.db) in DIR (default "
                        "state/): each one's line and their totals")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    monitor = sub.add_parser("monitor", help="a read-only live dashboard of a database in the "
                             "browser: equity, models' log loss, drift, decisions, feed health")
    monitor.add_argument("--db", type=Path, help="database (default: state/live.db or paper.db)")
    monitor.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                         "127.0.0.1, this machine only)")
    monitor.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0: any)")
    monitor.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # the daemon's
    explain = sub.add_parser("explain", help="what a model uses: its features ranked by mean "
                             "|SHAP| and gain share, and their ranks across its last versions")
    explain.add_argument("--db", type=Path, help="database (default: the newest under state/)")
    which = explain.add_mutually_exclusive_group()
    which.add_argument("--model", type=int, help="this model id (default: each symbol's champion "
                       "booster, else its newest)")
    which.add_argument("--symbol", help="only this symbol")
    explain.add_argument("--last", type=int, default=5, help="versions of the lineage whose "
                         "ranks are shown (default: 5)")
    compare = sub.add_parser("compare", help="two runs (PATH or PATH:RUN_ID) or two models "
                             "(--db DB ID_A ID_B) side by side: loss, trading, fold tables")
    compare.add_argument("a", metavar="A", help="a run database (its newest run), PATH:RUN_ID, "
                         "or a model id with --db")
    compare.add_argument("b", metavar="B", help="the other run or model id")
    compare.add_argument("--db", type=Path, help="the database of two model ids")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    validate = sub.add_parser("validate", help="re-validate the models of a database now")
    validate.add_argument("--db", type=Path, help="database (default: the newest under state/)")
    validate.add_argument("--symbol", help="only this symbol")
    validate.add_argument("--config", type=Path,
                          help="config (default: the one of the database's latest run)")
    _profile(validate)  # with --profile: defaults < profile < --config, not the run's config
    tune = sub.add_parser("tune", help="search the booster's hyperparameters on a database's "
                          "buffered samples, scored by the promotion gate's walk-forward")
    tune.add_argument("--db", type=Path, help="database (default: the newest under state/)")
    tune.add_argument("--symbol", help="only this symbol")
    tune.add_argument("--trials", type=int, help="configurations to try (default: tuning.trials)")
    tune.add_argument("--seconds", type=float, help="time limit (default: tuning.seconds)")
    tune.add_argument("--config", type=Path,
                      help="TOML config (default: the one of the database's latest run)")
    rep = sub.add_parser("report", help="an HTML report (and PNG figures) of a run, to open "
                         "offline")
    rep.add_argument("target", metavar="RUN_OR_DB",
                     help="a run database (its newest run), DB:RUN_ID, or a run id with --db")
    rep.add_argument("--db", type=Path, help="the database, when RUN_OR_DB is a run id")
    rep.add_argument("--out", type=Path,
                     help="directory to write into (default: <db>-run<ID>-report beside it)")
    window = rep.add_mutually_exclusive_group()
    window.add_argument("--last", help="only this much event time before the run's newest bar, "
                        "e.g. 24h or 7d (default: the whole run)")
    window.add_argument("--since", metavar="TIME", help="only event times from TIME (UTC, ISO "
                        "8601, e.g. 2026-11-20T00:00)")
    rep.add_argument("--rolling", type=int, default=500,
                     help="window of the rolling log loss and accuracy, in predictions")
    stress = sub.add_parser("stress", help="the champions and the trading rule through crash, "
                            "volatility, illiquidity and the worst historical windows")
    stress.add_argument("--db", type=Path, help="database (default: the newest under state/)")
    stress.add_argument("--scenario", nargs="+", metavar="NAME", help="crash, vol_spike, "
                        "liquidity, historical (default: all)")
    stress.add_argument("--config", type=Path, help="config of the limits and the rule "
                        "(default: the one of the database's latest run)")
    stress.add_argument("--candles", type=Path, help="historical: candle CSV (default: the "
                        "hourly BTCUSDT file under /work/shared/data/klines when present)")
    cl = sub.add_parser("cluster", help="the shards as Ray actors (restarted from their "
                        "checkpoints when they die), supervised until Ctrl-C: cluster --shards N "
                        "[--address A] -- RUN ARGS")
    cl.add_argument("--shards", type=int, required=True, metavar="N", help="number of shards")
    cl.add_argument("--address", help="a running Ray cluster (default: a local Ray, started)")
    cl.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    cl.add_argument("--workdir", type=Path, default=Path("."),
                    help="the shards' working directory: their databases and logs (default: .)")
    cl.add_argument("--every", type=float, default=2.0, help="seconds between checks")
    cl.add_argument("--pin", action="store_true", help="keep each shard on the node it was "
                    "first placed on (its state stays there)")
    cl.add_argument("run_args", nargs=argparse.REMAINDER,
                    help="after --: the shards' run arguments, e.g. -- --paper --config F")
    sim = sub.add_parser("simulate", help="write a seeded simulated recording and its schedule")
    sim.add_argument("--out", type=Path, required=True, help="recording file to write (.gz)")
    sim.add_argument("--seconds", type=int, default=86_400, help="simulated seconds")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--symbol", default="SIMUSDT")
    sim.add_argument("--streams", default="aggTrade,bookTicker",
                     help="comma-separated: trade, aggTrade, bookTicker, kline_1s, kline_1m")
    ex = sub.add_parser("sim-exchange", help="serve the simulator (or recordings) as a local "
                        "Binance websocket + REST endpoint")
    _sim_source(ex, seconds_flag="--seconds")
    ex.add_argument("--symbol", default="SIMUSDT", help="the simulated symbol")
    ex.add_argument("--streams", default="aggTrade,bookTicker",
                    help="comma-separated streams the simulator formats")
    ex.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ex.add_argument("--port", type=int, default=0, help="websocket port (default: a free one)")
    ex.add_argument("--rest-port", type=int, default=0, help="REST port (default: a free one)")
    ex.add_argument("--schedule", type=Path,
                    help="where to write the simulator's schedule (default: "
                    "state/sim/schedule-seed<N>.json)")
    ex.add_argument("--exit-at-end", action="store_true",
                    help="exit when the tape is over (default: keep serving until Ctrl-C)")
    return parser


def _models(models: argparse.ArgumentParser) -> None:
    """``models [list]`` and ``models prune``; ``--db``/``--symbol`` before or after the action."""
    _models_target(models, None)
    action = models.add_subparsers(dest="models_command",
                                   metavar="{list,prune,promote,rollback}")
    _models_target(action.add_parser("list", help="every model, oldest first (the default)"),
                   argparse.SUPPRESS)
    prune = action.add_parser("prune", help="delete the bytes of the boosters beyond the --keep "
                              "newest of each symbol; models ever champion and every record stay")
    _models_target(prune, argparse.SUPPRESS)
    prune.add_argument("--keep", type=_count, metavar="N",
                       help="boosters kept per symbol besides every one ever champion (default: "
                       "batch.keep_models)")
    prune.add_argument("--config", type=Path,
                       help="config of batch.keep_models (default: the database's latest run's)")
    for name, target, what in (
            ("promote", "model_id", "make model ID its symbol's champion"),
            ("rollback", "rollback_symbol", "put back the champion the current one replaced")):
        act = action.add_parser(name, help=f"{what}; recorded in validations with who and why; "
                                "a running daemon applies it without a restart")
        _models_target(act, argparse.SUPPRESS)
        if name == "promote":
            act.add_argument(target, type=int, metavar="ID", help="the booster's model id")
        else:
            act.add_argument(target, metavar="SYMBOL", help="the symbol to roll back")
        act.add_argument("--why", required=True, help="the reason, recorded with the decision")
        act.add_argument("--by", help="who decides (default: the user running the command)")
        act.add_argument("--wait", type=float, default=30.0, metavar="S",
                         help="seconds to wait for a running daemon's answer (default 30)")
    once = prune.add_mutually_exclusive_group()
    once.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    once.add_argument("--vacuum", action="store_true", help="then shrink the file (VACUUM): "
                      "blocks a daemon writing the database while it runs")


def _models_target(p: argparse.ArgumentParser, default: Any) -> None:
    """A subcommand's copy has ``default=SUPPRESS``, or it would reset the parent's value."""
    p.add_argument("--db", type=Path, default=default,
                   help="database (default: the newest under state/)")
    p.add_argument("--symbol", default=default, help="only this symbol")


def _count(text: str) -> int:
    """A whole number >= 0 (``--keep``)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _sim_source(p: argparse.ArgumentParser | Any, *, seconds_flag: str) -> None:
    """What the simulated exchange plays, and how fast."""
    p.add_argument("--speed", type=float, default=1.0,
                   help="multiple of real time (default 1; the demo uses 720)")
    p.add_argument(seconds_flag, dest="sim_seconds", type=int, default=86_400,
                   help="simulated seconds (default 86400)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--recording", nargs="+", metavar="PATH",
                   help="serve these recordings instead of the simulator")


def _endpoints(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ws-url", help="websocket base URL (default: the endpoint's, e.g. "
                   "wss://stream.binance.com:9443)")
    p.add_argument("--rest-url", help="REST base URL (default: https://api.binance.com)")
    p.add_argument("--endpoint", choices=["spot", "spot-data", "testnet", "usdm"],
                   help="Binance endpoint preset")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    _profile(p)
    p.add_argument("--log-json", action="store_true", help="JSON logs even on a terminal")


def _profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", metavar="NAME", help="quick | dev | production: an overlay "
                   "(configs/NAME.toml) over the defaults, under --config and the flags")


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, args.profile)
    overrides: dict[str, dict[str, object]] = {}
    if getattr(args, "symbols", None):
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        overrides.setdefault("feed", {}).update(symbols=symbols, symbols_file="", symbols_quote="")
    if getattr(args, "shard", None) and args.command == "replay":
        from ares_stream import shards

        overrides.setdefault("feed", {})["shard"] = str(shards.parse(args.shard))
    if getattr(args, "skip_bad", False):
        overrides.setdefault("feed", {})["skip_bad"] = True
    if getattr(args, "interval", None):
        overrides.setdefault("bars", {})["interval"] = args.interval
    if getattr(args, "streams", None):
        streams = [s.strip() for s in args.streams.split(",") if s.strip()]
        overrides.setdefault("feed", {})["streams"] = streams
    for flag, key in (("ws_url", "ws_url"), ("rest_url", "rest_url"), ("endpoint", "endpoint")):
        if getattr(args, flag, None):
            overrides.setdefault("feed", {})[key] = getattr(args, flag)
    return replace_values(cfg, overrides, source="command line") if overrides else cfg


def _needs_symbols(cfg: Config, command: str) -> Config:
    """A command that connects needs to know what to subscribe to."""
    if not (cfg.feed.symbols or cfg.feed.symbols_file or cfg.feed.symbols_quote):
        raise AresError(f"{command} needs symbols: --symbols BTCUSDT,ETHUSDT (or feed.symbols, "
                        "feed.symbols_file or feed.symbols_quote in the config)")
    return cfg


def cmd_replay(args: argparse.Namespace) -> int:
    """``ares-stream replay``: replay the sources into a run database and print its summary.
    Writes the run's HTML report too, unless ``--no-report``."""
    from ares_stream import logs, replay

    logs.configure(json=True if args.log_json else None,
                   level="warning" if args.quiet else "info")
    cfg = _config(args)
    progress = None if args.quiet else replay.progress_stream()
    result = replay.run_replay(args.paths, cfg, db_path=args.db, progress=progress)
    print(replay.format_summary(result), flush=True)
    if not args.no_report:
        from ares_stream.report import write_report

        print(f"report: {write_report(result.db_path, args.report, run_id=result.run_id)}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """``ares-stream record``: record the live feed without learning, then print what it got."""
    import asyncio

    from ares_stream import logs
    from ares_stream.daemon import ingest as live

    logs.configure(json=True if args.log_json else None)
    cfg = _needs_symbols(_config(args), "record")
    summary = asyncio.run(live.run_record(cfg, str(args.out), duration=args.duration))
    counts, gate = summary["counts"], summary["gate"]
    print(f"recorded {counts.get('frames', 0):,} frames into {len(summary['files'])} file(s) "
          f"under {args.out}; gaps {gate['gaps']:,} (backfilled items {gate['backfilled']:,}, "
          f"unfilled {gate['unfilled']:,}); connects {summary['feed'].get('connects', 0)}; "
          f"lag p50 {summary['lag_p50_ms']:.2f} ms, p99 {summary['lag_p99_ms']:.2f} ms")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``ares-stream run``: the daemon, paper or live (``--feed sim``: against the simulator).
    Live trading is checked first (``--live``, ``trading.live``, keys); returns the exit code."""
    startup.install()  # (daemon.py did already) a stop signal from here on ends start-up: exit 0
    from ares_stream import logs
    from ares_stream.daemon import lifecycle as daemon

    logs.configure(json=True if args.log_json else None,
                   level="warning" if args.quiet else "info")
    if args.feed == "sim":
        return _run_sim(args)
    cfg = _needs_symbols(_config(args), "run")
    mode = "live" if args.live else "paper"
    cfg, db_name = _shard(cfg, args, mode)
    if mode == "live" and not cfg.trading.live:
        raise AresError("live trading needs three things: --live, `live = true` under [trading] "
                        "in the config file, and the API key in ARES_API_KEY / ARES_API_SECRET "
                        "(or [trading] keys_file); orders go to the testnet unless "
                        "`testnet = false`")
    if mode == "live":
        from ares_stream.trading.credentials import load_credentials

        load_credentials(cfg.trading)  # missing keys: say so before anything starts
    options = daemon.DaemonOptions(mode=mode, db_path=args.db or Path(cfg.store.dir) / db_name,
                                   config_path=args.config,
                                   checkpoint_every=args.checkpoint_every,
                                   duration=args.duration)
    return daemon.run_daemon(cfg, options)


def _shard(cfg: Config, args: argparse.Namespace, mode: str) -> tuple[Config, str]:
    """``--shard K/N``: the shard's config and database name (else ``<mode>.db``)."""
    if not getattr(args, "shard", None):
        return cfg, f"{mode}.db"
    from ares_stream import shards

    shard = shards.parse(args.shard)
    return shards.apply(cfg, shard, live=mode == "live"), f"{mode}-{shard.suffix}.db"


def _run_sim(args: argparse.Namespace) -> int:
    """``run --paper --feed sim``: the daemon against the simulated exchange, in-process."""
    from ares_stream.daemon import lifecycle as daemon
    from ares_stream.sim import harness

    if args.live:
        raise AresError("--feed sim trades on paper only: use --paper")
    if args.ws_url or args.rest_url or args.endpoint:
        raise AresError("--feed sim serves its own exchange: drop --ws-url, --rest-url and "
                        "--endpoint")
    if args.shard:
        raise AresError("--shard splits a live feed's symbols; --feed sim plays its own")
    cfg = _config(args)
    feed = _sim_feed(args, cfg.feed.symbols, cfg.feed.streams)
    name = "recording" if args.recording else f"seed{args.seed}"
    db = harness.fresh_db(args.db, Path(cfg.store.dir) / "sim" / f"paper-{name}.db")
    db.parent.mkdir(parents=True, exist_ok=True)
    options = daemon.DaemonOptions(mode="paper", db_path=db, config_path=args.config,
                                   checkpoint_every=args.checkpoint_every,
                                   duration=args.duration)
    return harness.run_daemon(cfg, options, feed, args.report or db.parent)


def _sim_feed(args: argparse.Namespace, symbols: Sequence[str],
              streams: Sequence[str]) -> Any:
    """The simulator (one symbol) or the recordings of ``--recording``, at ``--speed``."""
    from ares_stream.sim import harness

    if not args.speed > 0:
        raise AresError(f"--speed must be > 0, got {args.speed:g}")
    if args.recording:
        return harness.recorded(args.recording, speed=args.speed)
    if len(symbols) > 1:
        raise AresError("the simulator makes one market: name one symbol (or none: SIMUSDT)")
    return harness.simulated(seconds=args.sim_seconds, seed=args.seed,
                                 symbol=symbols[0] if symbols else "SIMUSDT",
                                 streams=streams, speed=args.speed)


def cmd_sim_exchange(args: argparse.Namespace) -> int:
    """``ares-stream sim-exchange``: serve the simulator (or recordings) as a local exchange."""
    import asyncio

    from ares_stream import logs
    from ares_stream.sim import harness

    logs.configure(level="warning")
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    feed = _sim_feed(args, [args.symbol.upper()], streams)
    path = None
    if not args.recording:
        path = args.schedule or Path("state/sim") / f"schedule-seed{args.seed}.json"
    return asyncio.run(harness.serve(
        feed, host=args.host, ws_port=args.port, rest_port=args.rest_port,
        exit_at_end=args.exit_at_end, schedule_path=path, streams=streams))


def _database(path: Path | None) -> Path:
    """The --db path, or the newest database under state/ (what a user just ran)."""
    if path is not None:
        if not path.exists():
            raise AresError(f"{path}: no such database")
        return path
    found = sorted(Path("state").rglob("*.db"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise AresError("no database under state/: pass --db FILE")
    return found[-1]


def cmd_status(args: argparse.Namespace) -> int:
    """``ares-stream status``: what a daemon's database says, as text or JSON."""
    from ares_stream.status import main_status, shard_databases

    dbs = [*(args.db or []), *(shard_databases(args.shards) if args.shards else [])]
    return main_status(dbs or None, args.json)


def cmd_cluster(args: argparse.Namespace) -> int:
    """``ares-stream cluster``: the shards on Ray until Ctrl-C (ares_stream/cluster/)."""
    from ares_stream import logs
    from ares_stream.cluster.runner import run_cluster

    logs.configure(level="warning")
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    if not run_args:
        raise AresError("cluster needs the shards' run arguments after --, e.g. "
                        "cluster --shards 2 -- --paper --config shards.toml")
    return run_cluster(run_args, args.shards, address=args.address, num_cpus=args.num_cpus,
                       workdir=args.workdir, every=args.every, pin=args.pin)


def cmd_monitor(args: argparse.Namespace) -> int:
    """``ares-stream monitor``: serve the live dashboard of a database until Ctrl-C."""
    from ares_stream.monitor.server import main_monitor
    from ares_stream.status import default_db

    return main_monitor(default_db() if args.db is None else args.db, args.host, args.port,
                        args.parent_pid)


def cmd_explain(args: argparse.Namespace) -> int:
    """``ares-stream explain``: the importance ranking of a model (or each symbol's champion)."""
    from ares_stream.report.explain import explain
    from ares_stream.store.db import open_db

    db = open_db(_database(args.db))
    symbol = args.symbol.upper() if args.symbol else None
    print(explain(db, model_id=args.model, symbol=symbol, last=args.last))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``ares-stream compare``: two runs or two models side by side, as text or JSON."""
    from ares_stream.report.compare import main_compare

    return main_compare(args.a, args.b, args.db, args.json)


def cmd_models(args: argparse.Namespace) -> int:
    """``ares-stream models [list]``: print the model registry of a database (or of one symbol);
    ``models prune``: delete the bytes of the boosters past the newest of each symbol."""
    from ares_stream import logs
    from ares_stream.learners.registry import Registry
    from ares_stream.store.db import open_db
    from ares_stream.store.lock import DatabaseLock

    logs.configure(level="warning")
    db_path = _database(args.db)
    symbol = args.symbol.upper() if args.symbol else None
    if args.models_command in ("promote", "rollback"):
        return _decide(args, db_path)
    if args.models_command == "prune":  # it writes: not while a daemon owns the database
        with DatabaseLock(db_path):
            return _prune_models(args, Registry(open_db(db_path)), symbol)
    registry = Registry(open_db(db_path))
    if not registry.list(symbol):
        print(f"{db_path}: no models yet")
        return 0
    print(registry.table(symbol))
    return 0


def _decide(args: argparse.Namespace, db_path: Path) -> int:
    """``models promote ID`` / ``models rollback SYMBOL``: by this process, or by the daemon
    that owns the database (batch/manual.py); 1 when the daemon did not answer in time."""
    import getpass

    from ares_stream.batch import manual
    from ares_stream.features.families import feature_names
    from ares_stream.store.lock import holder

    rollback = args.models_command == "rollback"
    d = manual.ManualDecision(
        args.models_command, by=args.by or getpass.getuser(), why=args.why,
        model_id=None if rollback else args.model_id,
        symbol=args.rollback_symbol.upper() if rollback else None)
    result = manual.decide(db_path, d, features=lambda db: set(feature_names(_run_config(db))),
                           wait=args.wait)
    if result is None:
        print(f"queued: the daemon (pid {holder(db_path)}) owning {db_path} did not answer within"
              f" {args.wait:g} s; it applies the request when it reads it", file=sys.stderr)
        return 1
    if not result.ok:
        raise AresError(result.message)
    print(result.message)
    return 0


def _prune_models(args: argparse.Namespace, registry: Registry, symbol: str | None) -> int:
    """``models prune``: ``--keep``, else ``batch.keep_models`` of ``--config`` or of the run."""
    keep = args.keep
    if keep is None:
        cfg = load_config(args.config) if args.config else _run_config(registry.db)
        keep = cfg.batch.keep_models
    print(registry.prune(symbol, keep, dry_run=args.dry_run).text())
    if args.vacuum:
        print(f"vacuum: the file shrank by {registry.vacuum():,} bytes")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """``ares-stream validate``: re-validate each symbol's models now and print the decisions.
    The config is ``--config``'s, else the one the database's latest run used."""
    from ares_stream import logs
    from ares_stream.batch.revalidate import revalidate
    from ares_stream.features.families import feature_names
    from ares_stream.store.db import open_db

    logs.configure(level="warning")
    db_path = _database(args.db)
    db = open_db(db_path)
    cfg = (load_config(args.config, args.profile) if args.config or args.profile
           else _run_config(db))
    features = feature_names(cfg)
    results = revalidate(db, cfg, features, args.symbol.upper() if args.symbol else None)
    if not results:
        print(f"{db_path}: no buffered samples to validate")
    for r in results:
        if r.outcome is None:
            print(f"{r.symbol}: {r.rows:,} samples, fewer than batch.min_rows = "
                  f"{cfg.batch.min_rows:,}: nothing to validate")
            continue
        d = r.outcome.decision
        edges = "\n".join(f"  {name:<12} {'EDGE' if e.ok else 'none'} — {e.reason}"
                          for name, e in r.outcome.edges.items())
        print(f"{r.symbol}: walk-forward over {r.rows:,} samples\n{r.outcome.table}\n"
              f"edge after costs (trading the broker's rule):\n{edges}\n"
              f"decision: {'PROMOTE' if d.promote else 'keep'} — {d.reason}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """``ares-stream tune``: the periodic hyperparameter search, now, on the buffered samples;
    prints the best trials, the deflated Sharpe and the tuned candidate against the champion."""
    from ares_stream import logs
    from ares_stream.store.lock import DatabaseLock

    logs.configure(level="warning")
    db_path = _database(args.db)
    with DatabaseLock(db_path):  # it writes the search: not while a daemon owns the database
        return _tune(args, db_path)


def _tune(args: argparse.Namespace, db_path: Path) -> int:
    from ares_stream.batch import tuning
    from ares_stream.batch.revalidate import retune
    from ares_stream.features.families import feature_names
    from ares_stream.store.db import open_db
    from ares_stream.store.tuning import optuna_path

    db = open_db(db_path)
    cfg = load_config(args.config) if args.config else _run_config(db)
    trials = cfg.tuning.trials if args.trials is None else args.trials
    seconds = cfg.tuning.seconds if args.seconds is None else args.seconds
    if trials < 1 or not seconds > 0:
        raise AresError(f"--trials must be >= 1 and --seconds > 0, got {trials} and {seconds}")
    how = tuning.SearchSpec(trials, seconds, cfg.tuning.seed, optuna_path(db))
    bar = _TuneProgress(trials) if sys.stderr.isatty() else None
    results = retune(db, cfg, feature_names(cfg), args.symbol.upper() if args.symbol else None,
                     how, bar)
    if not results:
        raise AresError(f"{db_path}: no buffered samples to tune on")
    for r in results:
        print(_tuned_text(r, cfg.batch.min_rows))
    return 0


class _TuneProgress:
    """The search's progress line on stderr (a terminal): trials done, best value, elapsed."""

    def __init__(self, trials: int) -> None:
        import time

        self.trials, self.clock, self.started = trials, time.monotonic, time.monotonic()

    def __call__(self, symbol: str, done: int, best: float) -> None:
        print(f"\rtune {symbol}: trial {done}/{self.trials}, best log loss {best:.4f}, "
              f"{self.clock() - self.started:.0f} s", end="\n" if done >= self.trials else "",
              file=sys.stderr, flush=True)


def _tuned_text(r: Any, min_rows: int) -> str:
    from ares_stream.batch import tuning

    if r.search is None:
        return (f"{r.symbol}: {r.rows:,} samples, fewer than batch.min_rows = {min_rows:,}: "
                "nothing to tune")
    text = f"{r.symbol}: search over {r.rows:,} samples\n{tuning.table(r.search)}"
    if r.verdict is not None:
        s = r.validation.summary
        text += (f"\nwalk-forward: xgb_tuned {s['xgb_tuned']['log_loss']:.4f}, default "
                 f"xgb_refit {s['xgb_refit']['log_loss']:.4f}, champion "
                 f"{s['champion']['log_loss']:.4f}\n"
                 f"against the champion: {'BEATS' if r.verdict.promote else 'does not beat'} — "
                 f"{r.verdict.reason}")
    return text


def _run_config(db: Any) -> Config:
    """The config the database's newest run recorded (the defaults when it has no run)."""
    from ares_stream.store.history import newest_run_config

    data = newest_run_config(db.conn)
    if data is None:
        return load_config(None)
    return from_stored(data, source="the database's latest run")


def cmd_stress(args: argparse.Namespace) -> int:
    """``ares-stream stress``: the champions through stress scenarios; 1 when any fails."""
    from ares_stream import logs
    from ares_stream.store.db import open_db
    from ares_stream.stress import main_stress

    logs.configure(level="warning")
    path = _database(args.db)
    db = open_db(path)
    cfg = load_config(args.config) if args.config else _run_config(db)
    return main_stress(db, cfg, args.scenario, args.candles,
                       out=lambda line: print(line, flush=True), db_path=Path(path))


def cmd_simulate(args: argparse.Namespace) -> int:
    """``ares-stream simulate``: write a seeded simulated recording, and its schedule beside it."""
    from ares_stream.sim.harness import describe
    from ares_stream.sim.simulator import write_recording

    if args.seconds < 1:
        raise AresError("--seconds must be at least 1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    streams = tuple(s.strip() for s in args.streams.split(",") if s.strip())
    sched = write_recording(args.out, seconds=args.seconds, seed=args.seed, symbol=args.symbol,
                            streams=streams)
    print(f"wrote {sched.frames:,} frames ({args.seconds:,} simulated seconds) to {args.out} "
          f"and its schedule to {args.out}.schedule.json: {describe(sched)}")
    return 0


def _utc_ns(text: str) -> int:
    """An ISO 8601 UTC time (``2026-11-20``, ``2026-11-20T06:30``, nanoseconds allowed) → ns."""
    import numpy as np

    try:
        return int(np.datetime64(text.removesuffix("Z"), "ns").astype(np.int64))
    except ValueError:
        raise AresError(f"--since {text!r}: expected an ISO 8601 UTC time such as "
                        "2026-11-20T06:30") from None


def cmd_report(args: argparse.Namespace) -> int:
    """``ares-stream report``: write a run's HTML report (all of it, or ``--last``/``--since``)."""
    from ares_stream.features.bars import parse_interval
    from ares_stream.report import parse_target, write_report

    db, run_id = parse_target(args.target)
    if args.target.isdigit():
        if args.db is None:
            raise AresError(f"a run id ({args.target}) needs --db FILE; or pass FILE.db:"
                            f"{args.target}")
        db, run_id = args.db, int(args.target)
    try:
        last = parse_interval(args.last) if args.last else None
    except ValueError as exc:
        raise AresError(f"--last: {exc}") from None
    since = _utc_ns(args.since) if args.since else None
    if args.rolling < 2:
        raise AresError(f"--rolling must be at least 2 predictions, got {args.rolling}")
    path = write_report(db, args.out, run_id=run_id, since=since, last=last,
                        rolling=args.rolling, warn=lambda line: print(
                            f"ares-stream report: warning: {line}", file=sys.stderr))
    print(f"report: {path}")
    return 0


COMMANDS = {"replay": cmd_replay, "record": cmd_record, "run": cmd_run, "models": cmd_models,
            "validate": cmd_validate, "explain": cmd_explain, "compare": cmd_compare,
            "status": cmd_status, "monitor": cmd_monitor, "cluster": cmd_cluster,
            "simulate": cmd_simulate, "sim-exchange": cmd_sim_exchange, "report": cmd_report,
            "stress": cmd_stress, "tune": cmd_tune}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the subcommand of ``argv``; returns 0, 2 on a user's error, 1 when the storage fails
    (a full disk), 130 when interrupted — with one line on stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except StorageError as exc:
        print(f"ares-stream {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except AresError as exc:
        print(f"ares-stream {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"ares-stream {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except startup.StartupInterrupted as stop:  # nothing was open yet: nothing to save
        return startup.interrupted(stop, args.command)
    except BrokenPipeError:
        return 0
    except STORAGE_ERRORS as exc:
        failure = storage_failure(exc)
        if failure is None:
            raise
        print(f"ares-stream {args.command}: error: {failure}", file=sys.stderr)
        return EXIT_STORAGE


if __name__ == "__main__":
    sys.exit(main())
