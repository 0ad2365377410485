"""Shards on one machine: a stable hash split of the symbols, one daemon per shard with its own
database and ports, and ``status`` summing them up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ares_stream import shards
from ares_stream.cli import main
from ares_stream.config import Config, replace_values
from ares_stream.sim.exchange import Faults, Tape
from tests.conftest import wait_until
from tests.daemon.test_ingest import exchange_in_thread
from tests.paper import (
    NO_BATCH,
    ROOT,
    paper_daemon,
    query,
    recordings,
    symbols_in,
    write_config,
)

SYMBOLS = ["SIMAUSDT", "SIMBUSDT", "SIMCUSDT", "SIMDUSDT", "SIMEUSDT"]


def test_the_split_is_stable_complete_and_even() -> None:
    """Pinned shards (a symbol never moves between releases or machines); every symbol in
    exactly one shard; 2,000 names spread evenly; adding symbols moves none."""
    assert [shards.shard_of(s, 4) for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT")] == \
        [shards.shard_of(s.lower(), 4) for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT")]
    assert [shards.shard_of(s, 2) for s in SYMBOLS] == [2, 1, 1, 2, 1]  # pinned
    names = [f"S{i:04d}USDT" for i in range(2000)]
    parts = [shards.select(names, shards.Shard(k, 8)) for k in range(1, 9)]
    assert sorted(s for p in parts for s in p) == sorted(names)
    assert all(200 <= len(p) <= 300 for p in parts), [len(p) for p in parts]  # 250 expected
    more = shards.select([*names, "NEWUSDT"], shards.Shard(3, 8))
    assert [s for s in more if s != "NEWUSDT"] == parts[2]


def test_a_shard_config_moves_its_ports_and_refuses_what_cannot_stand_alone() -> None:
    cfg = replace_values(Config(), {"feed": {"symbols": SYMBOLS},
                                    "metrics": {"port": 9464}, "monitor": {"port": 8080}})
    two = shards.apply(cfg, shards.parse("2-of-2"))
    assert list(two.feed.symbols) == ["SIMAUSDT", "SIMDUSDT"]
    assert (two.metrics.port, two.monitor.port) == (9465, 8081)
    assert shards.apply(replace_values(cfg, {"metrics": {"port": 0}}),
                        shards.parse("2/2")).metrics.port == 0
    with pytest.raises(shards.ShardError, match="share one account"):
        shards.apply(cfg, shards.parse("1/2"), live=True)
    with pytest.raises(shards.ShardError, match="has none of the 1 symbols"):
        shards.apply(replace_values(cfg, {"feed": {"symbols": ["SIMAUSDT"]}}),
                     shards.parse("1/2"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--shard", "3/2"], "K must be 1..N"),
    (["--shard", "x"], "expected K/N"),
    (["--shard", "1/2", "--live"], "share one account"),
])
def test_bad_shards_are_one_line(argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    mode = [] if "--live" in argv else ["--paper"]
    assert main(["run", *mode, "--symbols", ",".join(SYMBOLS), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


SHARDS = NO_BATCH + """
[store]
dir = "{tmp}"
"""


def test_two_shards_serve_disjoint_halves_and_status_sums_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two paper daemons on one exchange, ``--shard 1/2`` and ``2/2``: each subscribes to and
    stores only its own symbols in its own database; ``status --shards`` shows both and their
    totals."""
    tape = Tape.from_recording(recordings(tmp_path, SYMBOLS, seconds=600, seed=30))
    write_config(tmp_path, SHARDS.format(tmp=tmp_path))
    with exchange_in_thread(tape, rate=3000, faults=Faults()) as urls:
        procs = [paper_daemon(urls, tmp_path, "--shard", f"{k}/2", symbols=",".join(SYMBOLS),
                              log=f"d{k}.log") for k in (1, 2)]
        dbs = [tmp_path / f"paper-shard{k}of2.db" for k in (1, 2)]
        expected = [set(shards.select(SYMBOLS, shards.Shard(k, 2))) for k in (1, 2)]
        try:
            for db, want, proc in zip(dbs, expected, procs, strict=True):
                wait_until(lambda db=db, want=want, proc=proc: symbols_in(db) == want
                           or proc.poll() is not None, what=f"every symbol of {db.name}")
            assert [p.poll() for p in procs] == [None, None]
            assert [symbols_in(db) for db in dbs] == expected
            assert main(["status", "--shards", str(tmp_path)]) == 0
            out = capsys.readouterr().out
            assert out.startswith("ares-stream status: 2 databases")
            assert "paper-shard1of2.db" in out and "paper-shard2of2.db" in out
            assert "healthy 2/2" in out
            assert main(["status", "--db", str(dbs[0]), "--db", str(dbs[1]), "--json"]) == 0
            agg = json.loads(capsys.readouterr().out)
            assert agg["total"]["databases"] == 2 and len(agg["shards"]) == 2
        finally:
            for p in procs:
                p.terminate()
            assert [p.wait(timeout=120) for p in procs] == [0, 0]
    logs = [(tmp_path / f"d{k}.log").read_text() for k in (1, 2)]
    assert all("Traceback" not in log for log in logs)


def test_a_replay_split_in_shards_predicts_what_the_whole_replay_predicts(tmp_path: Path) -> None:
    """``replay --shard K/N`` keeps its shard's symbols; the two halves' predictions are the
    whole replay's, row for row (symbols learn independently without cross-asset features)."""
    paths = recordings(tmp_path, SYMBOLS, seconds=900, seed=50)
    base = ["replay", *map(str, paths), "--interval", "10s", "--quiet", "--no-report",
            "--config", str(ROOT / "configs" / "quick.toml")]

    def rows(db: Path) -> list[tuple[object, ...]]:
        return query(db, "select symbol, ts_event, model, proba, value, label from "
                         "predictions order by symbol, ts_event")
    assert main([*base, "--db", str(tmp_path / "all.db")]) == 0
    for k in (1, 2):
        assert main([*base, "--db", str(tmp_path / f"s{k}.db"), "--shard", f"{k}/2"]) == 0
    whole, halves = rows(tmp_path / "all.db"), [rows(tmp_path / f"s{k}.db") for k in (1, 2)]
    for k, half in enumerate(halves, 1):
        assert {r[0] for r in half} == set(shards.select(SYMBOLS, shards.Shard(k, 2)))
    assert sorted(halves[0] + halves[1]) == whole and whole


def test_a_universe_from_a_file_is_cut_to_the_shard_once_resolved(tmp_path: Path) -> None:
    """With ``feed.symbols_file`` the shard is chosen when the daemon resolves the universe at
    start (the ports at once): the same split as a list's."""
    import asyncio

    from ares_stream.feed import universe

    (tmp_path / "symbols.txt").write_text("# the market\n" + "\n".join(SYMBOLS) + "\n")
    cfg = replace_values(Config(), {"feed": {"symbols_file": str(tmp_path / "symbols.txt")},
                                    "metrics": {"port": 9464}})
    two = shards.apply(cfg, shards.parse("2/2"))
    assert (two.feed.symbols, two.feed.shard, two.metrics.port) == ((), "2/2", 9465)
    resolved = shards.narrow(asyncio.run(universe.resolve(two)))
    assert list(resolved.feed.symbols) == shards.select(SYMBOLS, shards.Shard(2, 2))
