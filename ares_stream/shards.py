"""Shards: the market split into N parts by a stable hash of each symbol's name.

A shard is ``K/N`` (or ``K-of-N``, the form a systemd instance name can carry): the symbols
whose hash falls in part K of N, 1 <= K <= N. The hash is BLAKE2b of the upper-cased name — the
same in every process, Python version and machine (Python's own ``hash`` is salted per process)
— so a symbol always lands in the same shard, and adding a symbol moves no other. Each shard is
its own process with its own database (``<mode>-shard<K>of<N>.db``), metrics port (the
configured one + K − 1) and dashboard port (the same).

>>> s = parse("2/4")
>>> s, s.suffix, parse("2-of-4") == s
(Shard(k=2, n=4), 'shard2of4', True)
>>> shard_of("BTCUSDT", 4) == shard_of("btcusdt", 4)
True
>>> parts = [select(["BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT", "SOLUSDT"], Shard(k, 3))
...          for k in (1, 2, 3)]
>>> sorted(sum(parts, []))
['BNBUSDT', 'BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT']
>>> parse("5/4")
Traceback (most recent call last):
...
ares_stream.shards.ShardError: --shard 5/4: K must be 1..N (a shard is K/N, e.g. 1/4)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ares_stream.config import Config, replace_values
from ares_stream.errors import AresError

__all__ = ["Shard", "ShardError", "apply", "narrow", "parse", "select", "shard_of"]

_SPEC = re.compile(r"^\s*(\d+)\s*(?:/|-of-|of)\s*(\d+)\s*$")


class ShardError(AresError):
    """A shard spec that is not K/N, or a shard with nothing to serve."""


@dataclass(frozen=True)
class Shard:
    """Part ``k`` (1-based) of ``n``."""

    k: int
    n: int

    @property
    def suffix(self) -> str:
        """``shard<K>of<N>``: the shard's part of file names."""
        return f"shard{self.k}of{self.n}"

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    def port(self, base: int) -> int:
        """The shard's port from a configured one (0 stays 0: any free port)."""
        return base + self.k - 1 if base else 0


def parse(spec: str) -> Shard:
    """``K/N`` or ``K-of-N`` as a :class:`Shard`; anything else is a :class:`ShardError`."""
    m = _SPEC.match(spec)
    if m is None:
        raise ShardError(f"--shard {spec}: expected K/N, e.g. 1/4 (or 1-of-4)")
    k, n = int(m[1]), int(m[2])
    if n < 1 or not 1 <= k <= n:
        raise ShardError(f"--shard {spec}: K must be 1..N (a shard is K/N, e.g. 1/4)")
    return Shard(k, n)


def shard_of(symbol: str, n: int) -> int:
    """The shard (1..n) of ``symbol``: stable across processes and machines."""
    digest = hashlib.blake2b(symbol.strip().upper().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n + 1


def select(symbols: Iterable[str], shard: Shard) -> list[str]:
    """The symbols of ``shard``, in their given order."""
    return [s for s in symbols if shard_of(s, shard.n) == shard.k]


def apply(cfg: Config, shard: Shard, *, live: bool = False) -> Config:
    """``cfg`` for one shard: its symbols only, and the metrics and dashboard ports moved by
    K − 1 (two shards on one host never collide). Refused where a shard cannot stand alone."""
    if live:
        raise ShardError("--shard with --live: the shards would share one account's balance "
                         "between processes, each believing it owns it; run shards on paper")
    if cfg.features.cross_asset:
        raise ShardError("--shard with features.cross_asset: every shard would need the "
                         f"reference {cfg.features.reference}'s feed; not supported yet")
    f = cfg.feed
    if not (f.symbols or f.symbols_file or f.symbols_quote):
        raise ShardError("--shard needs symbols to split: feed.symbols (or --symbols), "
                         "feed.symbols_file or feed.symbols_quote")
    cfg = replace_values(cfg, {
        "feed": {"shard": str(shard)},
        "metrics": {"port": shard.port(cfg.metrics.port)},
        "monitor": {"port": shard.port(cfg.monitor.port)},
    }, source=f"--shard {shard}")
    return narrow(cfg) if f.symbols else cfg  # a file's or a quote's: once resolved, at start


def narrow(cfg: Config) -> Config:
    """With ``feed.shard``: ``feed.symbols`` cut to the shard's (the universe resolved); an
    empty shard is a :class:`ShardError`."""
    if not cfg.feed.shard:
        return cfg
    shard = parse(cfg.feed.shard)
    mine = select(cfg.feed.symbols, shard)
    if not mine:
        raise ShardError(f"shard {shard} has none of the {len(cfg.feed.symbols)} symbols "
                         f"configured: use fewer shards")
    if len(mine) == len(cfg.feed.symbols):
        return cfg
    return replace_values(cfg, {"feed": {"symbols": mine}}, source=f"--shard {shard}")
