"""The memory a shard's learners need, and the refusal of a config that cannot fit.

A symbol costs its full sample buffer (``batch.buffer_rows`` × :func:`~ares_stream.learners.
buffer.row_bytes`, when batch learning is on) and its engine state (features, labels, the River
learner, its warm samples and rolling windows: :func:`state_bytes`), and the process costs a
fixed :data:`PROCESS_BYTES` (the interpreter, numpy, River, XGBoost, the batch worker). A config
whose sum exceeds the memory there is (``store.memory_limit_gb``, else ``MemAvailable`` of
``/proc/meminfo``) is refused before anything starts, with the arithmetic on one line.
``bench/memory.py`` measures the figures used here.

>>> from ares_stream.config import Config, replace_values
>>> cfg = replace_values(Config(), {"feed": {"symbols": [f"S{i}USDT" for i in range(2000)]}})
>>> print(shortfall(cfg, 20.1e9))  # doctest: +NORMALIZE_WHITESPACE
2,000 symbols × 200,000 rows × 90 B = 36.1 GB of buffers + 2,000 × 192 KB state + 0.5 GB
process = 37.0 GB > 20.1 GB available: lower batch.buffer_rows or add shards (--shard), or raise
store.memory_limit_gb
>>> shortfall(cfg, 64e9)
''
"""

from __future__ import annotations

from ares_stream.config import Config
from ares_stream.errors import AresError
from ares_stream.features.families import feature_names
from ares_stream.learners.buffer import row_bytes

__all__ = ["PROCESS_BYTES", "MemoryShortfall", "available_bytes", "check", "need", "shortfall",
           "state_bytes"]

PROCESS_BYTES = 500 * 10**6  # interpreter + numpy/River/XGBoost + a batch worker (bench/memory.py)
_STATE_BASE = 70_000  # features, labels, bar builder, River model, counters, allocator slack
# (bench/memory.py: 154 KB deep size, ~190 KB of RSS per symbol at the defaults)
_SCORES = 4  # forecasters in the engine's rolling scores (river, booster, ensemble, baseline)


class MemoryShortfall(AresError):
    """A config whose symbols, buffers and state would not fit in the memory available."""


def state_bytes(cfg: Config) -> int:
    """One symbol's engine state: a fixed part, the warm samples (float64 values, label, loss,
    key order: ``8 × features + 20`` B each) and the rolling windows (16 B a label for the
    learner's, 9 B a label per forecaster for the engine's)."""
    d = len(feature_names(cfg))
    warm = cfg.drift.warm_samples * (8 * d + 20)
    rolling = cfg.learner.rolling_window * (16 + 9 * _SCORES)
    return _STATE_BASE + warm + rolling


def need(cfg: Config, symbols: int) -> tuple[float, float, float]:
    """Bytes of ``(buffers, state, process)`` for ``symbols`` symbols under ``cfg``."""
    rows = cfg.batch.buffer_rows if cfg.batch.enabled else 0
    buffers = symbols * rows * row_bytes(len(feature_names(cfg)))
    return buffers, float(symbols * state_bytes(cfg)), float(PROCESS_BYTES)


def shortfall(cfg: Config, available: float, symbols: int | None = None) -> str:
    """The refusal line when ``cfg`` needs more than ``available`` bytes; ``""`` when it fits.
    ``symbols``: how many (default: ``feed.symbols``; none named — every symbol a source
    carries, unknown beforehand — is not checked)."""
    n = len(cfg.feed.symbols) if symbols is None else symbols
    buffers, state, process = need(cfg, n)
    if not n or buffers + state + process <= available:
        return ""
    rows = cfg.batch.buffer_rows if cfg.batch.enabled else 0
    per_row = row_bytes(len(feature_names(cfg)))
    return (f"{n:,} symbols × {rows:,} rows × {per_row:.0f} B = {_gb(buffers)} of buffers + "
            f"{n:,} × {state_bytes(cfg) / 1e3:.0f} KB state + {_gb(process)} process = "
            f"{_gb(buffers + state + process)} > {_gb(available)} available: lower "
            "batch.buffer_rows or add shards (--shard), or raise store.memory_limit_gb")


def available_bytes(cfg: Config, meminfo: str = "/proc/meminfo") -> float | None:
    """``store.memory_limit_gb`` if set, else ``MemAvailable``; None where neither is known."""
    if cfg.store.memory_limit_gb > 0:
        return cfg.store.memory_limit_gb * 1e9
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def check(cfg: Config, symbols: int | None = None) -> None:
    """Raise :class:`MemoryShortfall` (one line, the arithmetic) if ``cfg`` cannot fit."""
    available = available_bytes(cfg)
    if available is not None and (line := shortfall(cfg, available, symbols)):
        raise MemoryShortfall(line)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"
