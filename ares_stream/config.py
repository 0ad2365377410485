"""Typed, frozen configuration loaded from TOML; unknown keys and wrong types are errors.

The dataclass defaults below are the source of truth; ``configs/default.toml`` mirrors them with a
one-line comment per setting (a test keeps the two equal). A user file only needs the keys it
changes.

>>> cfg = load_config(None)
>>> cfg.labels.horizon, cfg.learner.model
(10, 'logreg')
>>> replace_values(cfg, {"labels": {"horizon": 3}}).labels.horizon
3
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ares_stream.errors import ConfigError

ENDPOINTS = {  # name: (websocket base URL, REST base URL, market)
    "spot": ("wss://stream.binance.com:9443", "https://api.binance.com", "spot"),
    "spot-data": ("wss://data-stream.binance.vision", "https://data-api.binance.vision", "spot"),
    "testnet": ("wss://stream.testnet.binance.vision", "https://testnet.binance.vision", "spot"),
    "usdm": ("wss://fstream.binance.com", "https://fapi.binance.com", "usdm"),
}


@dataclass(frozen=True)
class FeedConfig:
    """``[feed]``: where market data comes from: symbols, streams, endpoint, reconnection."""
    symbols: tuple[str, ...] = ()  # empty: every symbol the source carries
    symbols_file: str = ""  # or: a file of symbols, one a line, # comments (read at start)
    symbols_quote: str = ""  # or: every TRADING symbol quoted in this asset (exchangeInfo)
    skip_bad: bool = False  # replay: skip and count malformed rows instead of stopping
    endpoint: str = "spot"  # spot | spot-data | testnet | usdm: default URLs and REST market
    ws_url: str = ""  # websocket base URL; empty: the endpoint's
    rest_url: str = ""  # REST base URL; empty: the endpoint's
    streams: tuple[str, ...] = ("aggTrade", "bookTicker")  # per symbol: trade, kline_1m, ...
    time_unit: str = ""  # "" (milliseconds) or "MICROSECOND"
    silence_timeout_s: float = 30.0  # no frame for this long: reconnect
    rotate_hours: float = 23.5  # open a fresh connection before Binance's 24 h cut
    queue_size: int = 100_000  # frames buffered between socket and engine (never dropped)
    streams_per_connection: int = 1024  # at most (Binance's cap): more streams, more connections
    shard: str = ""  # "K/N": only the symbols of shard K of N (stable hash; run/replay --shard)
    backfill: bool = True  # fill gaps over REST before live frames resume
    warmup_trades: int = 20_000  # cold start: trades fetched over REST before the first live one
    warmup_klines: int = 500  # cold start: klines fetched over REST before the first closed one
    backfill_max_seconds: float = 600.0  # one backfill (or catch-up) pages on for at most this
    backfill_checkpoint_items: int = 20_000  # checkpoint during a backfill every this many items
    backfill_checkpoint_seconds: float = 5.0  # ... or this many seconds
    backfill_concurrency: int = 4  # REST fills (gaps, cold-start warm-ups) running at once
    record: bool = True  # live: record every raw frame under recordings_dir
    recordings_dir: str = "state/recordings"  # hourly gzip recordings

    def urls(self) -> tuple[str, str, str]:
        """(websocket base, REST base, market) after the overrides."""
        ws, rest, market = ENDPOINTS[self.endpoint]
        return self.ws_url or ws, self.rest_url or rest, market


@dataclass(frozen=True)
class BarsConfig:
    """``[bars]``: how bars are built: their interval, and from trades or from klines."""
    interval: str = "1m"  # time-bar length for bars built from trades: 1s, 10s, 1m, 1h ...
    source: str = "auto"  # auto | trades | klines: what becomes a bar (auto: first seen per symbol)


@dataclass(frozen=True)
class FeaturesConfig:
    """``[features]``: the lookbacks of the bar features, in bars, and the families beyond one
    symbol's own bars (the order book, higher timeframes, a reference symbol)."""
    return_horizons: tuple[int, ...] = (1, 5, 15)
    vol_span: int = 20
    rsi_period: int = 14
    macd: tuple[int, int, int] = (12, 26, 9)
    boll_window: int = 20
    vwap_window: int = 20
    flow_window: int = 20
    intensity_span: int = 20
    volume_window: int = 20
    book: bool = False  # order-book features from the depth diff stream and REST snapshots
    book_levels: int = 10  # ... depth imbalance over this many levels a side
    book_bps: float = 10.0  # ... and within this many bps of the mid
    timeframes: tuple[str, ...] = ()  # higher timeframes, e.g. ["15m", "1h"]: their last closed bar
    cross_asset: bool = False  # features of the reference symbol (same shard) for every symbol
    reference: str = "BTCUSDT"  # ... the market leader
    reference_max_lag_bars: int = 2  # ... older than this many bars: stale, no features


@dataclass(frozen=True)
class LabelsConfig:
    """``[labels]``: a label is whether the return ``horizon`` bars ahead beats the threshold."""
    horizon: int = 10  # bars between a prediction and its label
    threshold_bps: float = 20.0  # label 1 when the forward return beats this (round-trip fees)


@dataclass(frozen=True)
class LearnerConfig:
    """``[learner]``: the online River model, its task, seed and options (``bench/online.py``)."""
    model: str = "logreg"  # logreg | hat | arf (classification); linreg | hatr | arfr (regression)
    task: str = "classification"  # classification | regression
    seed: int = 0
    rolling_window: int = 1000  # samples in the rolling prequential metrics
    lr: float = 0.002  # logreg: SGD learning rate of the weights (bench/online.py)
    intercept_lr: float = 0.01  # logreg: SGD learning rate of the intercept
    l2: float = 0.0  # logreg: L2 penalty on the weights
    clip: float = 5.0  # logreg, linreg: scaled features clipped to +-clip running deviations; 0: no
    warmup: int = 20  # logreg, linreg: a feature scales to 0 until it has this many observations
    shrink: bool = True  # classifiers: mixed with the label frequency, weighted by recent log loss
    discount: float = 0.9999  # shrink: per-sample discount of the log losses that weigh the mix
    handicap: float = 2.0  # shrink: nats the model must win by, over the memory, for half weight


@dataclass(frozen=True)
class DriftConfig:
    """``[drift]``: ADWIN on the online loss, and when the online learner starts again."""
    enabled: bool = True
    delta: float = 0.1  # ADWIN confidence
    warm_samples: int = 500  # recent samples a fresh learner is warmed on after an upward drift
    policy: str = "adwin"  # adwin: restart on an upward ADWIN drift | timer | never
    timer_bars: int = 200  # policy = "timer": restart every this many labelled bars
    feature_every: str = "1h"  # feature drift check period (event time); "0s": no check
    feature_window: int = 150  # recent labelled rows compared with the champion's training rows
    psi_threshold: float = 0.25  # a feature drifted when its PSI is above this (docs/drift.md)
    features_drifted: int = 4  # drifted features that make a "features" drift event
    psi_null_factor: float = 1.5  # ... and above this x the reference's own largest window PSI
    reference_windows: int = 4  # no feature judged before the reference holds this many windows


@dataclass(frozen=True)
class BatchConfig:
    """``[batch]``: the sample buffer, XGBoost training, walk-forward validation, promotion."""
    enabled: bool = True  # buffer labelled samples, train XGBoost boosters, re-validate, promote
    buffer_rows: int = 200_000  # samples kept per symbol
    buffer_days: float = 90.0  # ... and no older than this (event time)
    min_rows: int = 2_000  # no fit or validation before this many labelled samples
    update_rows: int = 2_000  # warm-start the booster every this many new samples ...
    update_every: str = "6h"  # ... or every this much event time
    rounds_refit: int = 100  # trees of a fresh fit
    rounds_update: int = 10  # trees added per warm start
    max_trees: int = 300  # cap: past it (or on an upward drift) refit from scratch
    mode: str = "warm_start"  # warm_start | refresh
    validate_every: str = "1d"  # walk-forward re-validation period (event time) ...
    validate_rows: int = 1_000  # ... once at least this many new samples have come
    folds: int = 5  # walk-forward folds
    window: str = "expanding"  # expanding | rolling
    embargo: int = 0  # extra rows between train and test beyond the label horizon
    margin: float = 0.001  # relative log-loss improvement a challenger needs
    bootstrap: int = 2_000  # paired bootstrap resamples over folds
    apply_delay: str = "0s"  # replay: a result applies at the first bar this long after submission
    edge_confidence: float = 0.9  # a signal trades only while this CI of its fold PnL is above 0
    champion_max_validations: int = 3  # a champion not re-measured in this many stops trading
    champion_max_age: str = "7d"  # ... or not re-measured for this much event time
    keep_models: int = 20  # boosters kept per symbol besides every model ever champion
    executor: str = "process"  # process: the daemon's worker process | ray: Ray tasks (cluster)
    ray_address: str = ""  # executor = "ray": the cluster ("": RAY_ADDRESS, else a local Ray)


@dataclass(frozen=True)
class TuningConfig:
    """``[tuning]``: the periodic hyperparameter search of the booster recipe (docs/tuning.md)."""
    enabled: bool = False  # search on the batch worker every ``every``; the best tries to promote
    every: str = "7d"  # search period (event time)
    trials: int = 50  # configurations tried per search, at most ...
    seconds: float = 600.0  # ... and for at most this long (live only: replay counts trials)
    seed: int = 0  # TPE sampler seed: the same window gives the same search
    min_dsr: float = 0.95  # a tuned challenger's deflated Sharpe must reach this to be promoted


@dataclass(frozen=True)
class SelectionConfig:
    """``[selection]``: feature selection by permutation importance on the walk-forward folds
    (:mod:`ares_stream.validation.selection`); the kept features' booster competes as
    ``xgb_selected``."""
    enabled: bool = False  # select at every validation (in the worker); costs a fit per fold
    repeats: int = 3  # shuffles of each feature on each fold's test rows
    confidence: float = 0.9  # a feature is kept when this t interval of its importance is > 0


@dataclass(frozen=True)
class TradingConfig:
    """``[trading]``: paper fills, entry and exit thresholds, risk limits and live orders."""
    starting_cash: float = 10_000.0  # quote asset (e.g. USDT) of a fresh paper account
    fee_bps: float = 10.0  # per side, Binance spot taker 0.10 %
    latency_ms: float = 50.0  # fills at the first later trade this long after the decision
    slippage: str = "book"  # book: pay the spread from the book top | bps: slippage_bps
    slippage_bps: float = 1.0  # used when slippage = "bps" or no book top is known
    candle_slippage_bps: float = 2.0  # no trade tape: fill at the next open, this much worse
    book_max_age_ms: float = 1000.0  # book tops older than this are not used for slippage
    require_edge: bool = True  # trade a model's signal only while its walk-forward shows edge
    enter: float = 0.55  # go long when the traded probability is above this
    exit: float = 0.5  # go flat when it falls below this
    order_notional: float = 1_000.0  # quote per entry
    max_position_notional: float = 2_000.0  # largest position per symbol, quote
    max_daily_loss: float = 500.0  # quote; past it the kill switch flattens and stops trading
    max_drawdown: float = 0.2  # fraction of peak equity; past it the kill switch trips
    stale_feed_s: float = 60.0  # no trade for this long: no new orders (stale-feed switch)
    live: bool = False  # live orders need this, --live, keys in the environment
    testnet: bool = True  # live orders go to the testnet unless this is false
    rest_url: str = ""  # order API base URL; empty: the testnet, or api.binance.com if not testnet
    keys_file: str = ""  # KEY=value file (mode 0600, ours) with the API key; empty: environment
    max_slippage_bps: float = 20.0  # live orders are IOC limits this far past the last price


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: the daemon's Prometheus endpoint."""
    enabled: bool = True  # the daemon serves Prometheus metrics
    host: str = "127.0.0.1"  # loopback only unless allow_remote
    port: int = 9464  # the paper unit uses another port (two daemons on one host)
    allow_remote: bool = False  # bind a non-loopback address


@dataclass(frozen=True)
class MonitorConfig:
    """``[monitor]``: the live dashboard (``ares-stream monitor``) served beside the daemon, in a
    process of its own that reads the database read-only (it never slows the daemon's loop)."""
    enabled: bool = False  # the daemon starts the dashboard on its database, and stops it
    host: str = "127.0.0.1"  # this machine only, unless told otherwise
    port: int = 8080  # the paper unit uses another port (two daemons on one host); 0: any


@dataclass(frozen=True)
class AlertsConfig:
    """``[alerts]``: webhooks told of drift, promotions, kill switches, unfilled gaps, lag
    episodes and (re)starts (:mod:`ares_stream.daemon.alerts`)."""
    webhooks: tuple[Any, ...] = ()  # each "https://..." (generic JSON) or a table: url or url_env,
    # format ("json", "telegram", "slack", "discord"), chat_id or chat_id_env (telegram)
    min_interval_s: float = 1.0  # least time between two POSTs to one webhook
    dedup_s: float = 300.0  # the same kind and symbol within this is sent once (then counted)
    max_per_minute: int = 6  # alerts of one kind sent per minute at most
    timeout_s: float = 5.0  # a webhook's answer is awaited this long


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: where run databases live and how often rows are written."""
    dir: str = "state"  # where run databases live (relative to the working directory)
    flush_rows: int = 2000  # rows buffered before a write transaction
    flush_seconds: float = 1.0  # live: predictions and drift events reach the file this often
    # (what a restart writes again identically; the rest at each checkpoint); 0: at checkpoints
    watchdog_failures: int = 3  # checkpoints failed in a row before the systemd watchdog starves
    memory_limit_gb: float = 0.0  # memory a shard may use (0: MemAvailable); a config needing
    # more is refused at start (ares_stream.learners.memory)


@dataclass(frozen=True)
class ReportConfig:
    """``[report]``: the daemon's periodic HTML reports."""
    every_hours: float = 24.0  # the daemon writes a report of the last period this often; 0: off
    dir: str = ""  # where the daemon's reports go (empty: <store.dir>/reports)
    rolling: int = 500  # predictions in the rolling log loss and accuracy


@dataclass(frozen=True)
class StressConfig:
    """``[stress]``: ``ares-stream stress`` — the champions and the trading rule through crash,
    volatility, illiquidity and the worst historical windows; a scenario fails past these."""
    max_loss: float = 0.05  # a scenario FAILS when it loses more than this fraction of equity
    max_drawdown: float = 0.1  # ... or its equity falls more than this below its peak
    warmup_bars: int = 100  # bars replayed before a scenario trades, so the features warm up
    windows: int = 3  # historical: the worst peak-to-trough windows of the candles replayed
    window_days: float = 30.0  # ... each at most this long from peak to trough
    seed: int = 0  # simulated scenarios: the simulator's seed


@dataclass(frozen=True)
class Config:
    """The whole configuration: one frozen section per TOML table."""
    feed: FeedConfig = field(default_factory=FeedConfig)
    bars: BarsConfig = field(default_factory=BarsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    trading: TradingConfig = field(default_factory=TradingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    stress: StressConfig = field(default_factory=StressConfig)


_INTERVAL = re.compile(r"[1-9][0-9]*[smhd]")
_CHOICES = {
    ("feed", "endpoint"): set(ENDPOINTS),
    ("batch", "mode"): {"warm_start", "refresh"},
    ("trading", "slippage"): {"book", "bps"},
    ("batch", "window"): {"expanding", "rolling"},
    ("feed", "time_unit"): {"", "MICROSECOND"},
    ("bars", "source"): {"auto", "trades", "klines"},
    ("learner", "task"): {"classification", "regression"},
    ("drift", "policy"): {"adwin", "timer", "never"},
    ("learner", "model"): {"logreg", "hat", "arf", "linreg", "hatr", "arfr"},
}


PROFILES = ("quick", "dev", "production")  # configs/<name>.toml: overlays over the defaults
PROFILE_DIR = Path(__file__).resolve().parents[1] / "configs"


def load_config(path: str | Path | None, profile: str | None = None) -> Config:
    """Defaults, then the ``profile`` overlay (configs/<profile>.toml), then the TOML file at
    ``path``: defaults < profile < file (command-line flags go on top, in the CLI)."""
    cfg = Config()
    if profile is not None:
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r} (valid: {', '.join(PROFILES)})")
        cfg = _load_file(cfg, PROFILE_DIR / f"{profile}.toml")
    return cfg if path is None else _load_file(cfg, path)


def _load_file(base: Config, path: str | Path) -> Config:
    """``base`` overlaid with the TOML file at ``path``."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    return replace_values(base, data, source=str(p))


def replace_values(cfg: Config, data: dict[str, Any], source: str = "<override>") -> Config:
    """Return ``cfg`` with the sections and keys of ``data`` replaced, all checked."""
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for name, table in data.items():
        if name not in hints:
            raise ConfigError(f"{source}: unknown section [{name}] (valid: {', '.join(hints)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _section(getattr(cfg, name), name, table, source)
    config = dataclasses.replace(cfg, **sections)
    _validate(config, source)
    return config


_REMOVED = {  # keys of earlier versions: what replaced them
    ("batch", "fee_bps"): "validation trades the broker's rule: set [trading] fee_bps",
}


def from_stored(data: dict[str, Any], source: str) -> Config:
    """A config a run database recorded (an earlier version's, perhaps): the keys this version
    removed are dropped, everything else is checked as in a file.

    >>> from_stored({"batch": {"fee_bps": 1.0, "folds": 4}}, "run 1").batch.folds
    4
    """
    tables = {name: {k: v for k, v in table.items() if (name, k) not in _REMOVED}
              for name, table in data.items() if isinstance(table, dict)}
    return replace_values(Config(), tables, source=source)


def _section(current: Any, name: str, table: dict[str, Any], source: str) -> Any:
    hints = typing.get_type_hints(type(current))
    values = {}
    for key, value in table.items():
        if (name, key) in _REMOVED:
            raise ConfigError(f"{source}: {name}.{key} was removed: {_REMOVED[(name, key)]}")
        if key not in hints:
            raise ConfigError(
                f"{source}: unknown key {name}.{key} (valid: {', '.join(hints)})"
            )
        values[key] = _coerce(value, hints[key], f"{name}.{key}", source)
        if (name, key) in _CHOICES and values[key] not in _CHOICES[(name, key)]:
            allowed = ", ".join(sorted(_CHOICES[(name, key)]))
            raise ConfigError(f"{source}: {name}.{key} = {value!r}: must be one of {allowed}")
    return dataclasses.replace(current, **values)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    if hint is Any:  # checked by its section's own rules (alerts.webhooks)
        return value
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ConfigError(f"{source}: {key} must have {len(item_types)} items")
        return tuple(_coerce(v, t, key, source) for v, t in zip(value, item_types, strict=True))
    if origin in (types.UnionType, typing.Union):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: {key} must be {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _validate(cfg: Config, source: str) -> None:
    checks = [
        (_INTERVAL.fullmatch(cfg.bars.interval) is not None,
         f"bars.interval = {cfg.bars.interval!r}: use a number and s, m, h or d (1s, 10s, 1m)"),
        (cfg.labels.horizon >= 1, "labels.horizon must be >= 1"),
        (cfg.feed.silence_timeout_s > 0, "feed.silence_timeout_s must be > 0"),
        (all(_INTERVAL.fullmatch(v) for v in (cfg.batch.update_every, cfg.batch.validate_every))
         and (_INTERVAL.fullmatch(cfg.batch.apply_delay) or cfg.batch.apply_delay == "0s"),
         "batch.update_every / validate_every (and apply_delay, which may be 0s): a positive "
         "number and s, m, h or d"),
        (cfg.batch.folds >= 2, "batch.folds must be >= 2"),
        (cfg.batch.rounds_update >= 1 and cfg.batch.rounds_refit >= 1, "batch rounds must be >= 1"),
        (cfg.batch.max_trees >= cfg.batch.rounds_refit, "batch.max_trees must be >= rounds_refit"),
        (cfg.batch.min_rows >= 10 * cfg.batch.folds, "batch.min_rows must be >= 10 x folds"),
        (cfg.batch.keep_models >= 1, "batch.keep_models must be >= 1 (the newest booster)"),
        (cfg.learner.lr > 0 and cfg.learner.intercept_lr >= 0,
         "learner.lr must be > 0 and learner.intercept_lr >= 0"),
        (cfg.learner.l2 >= 0 and cfg.learner.clip >= 0 and cfg.learner.warmup >= 0,
         "learner.l2, learner.clip and learner.warmup must be >= 0"),
        (0 < cfg.learner.discount <= 1, "learner.discount must be in (0, 1]"),
        (0.5 <= cfg.batch.edge_confidence < 1.0, "batch.edge_confidence must be in [0.5, 1)"),
        (_INTERVAL.fullmatch(cfg.tuning.every) is not None,
         "tuning.every: a positive number and s, m, h or d"),
        (cfg.tuning.trials >= 1 and cfg.tuning.seconds > 0,
         "tuning.trials must be >= 1 and tuning.seconds > 0"),
        (0 < cfg.tuning.min_dsr < 1, "tuning.min_dsr must be in (0, 1)"),
        (cfg.selection.repeats >= 1 and 0.5 <= cfg.selection.confidence < 1.0,
         "selection.repeats must be >= 1 and selection.confidence in [0.5, 1)"),
        (cfg.batch.champion_max_validations >= 1, "batch.champion_max_validations must be >= 1"),
        (_INTERVAL.fullmatch(cfg.batch.champion_max_age) is not None,
         "batch.champion_max_age: a positive number and s, m, h or d"),
        (cfg.trading.candle_slippage_bps >= 0 and cfg.trading.book_max_age_ms >= 0,
         "trading.candle_slippage_bps and book_max_age_ms must be >= 0"),
        (cfg.feed.rotate_hours > 0, "feed.rotate_hours must be > 0"),
        (cfg.feed.queue_size >= 1, "feed.queue_size must be >= 1"),
        *_universe_checks(cfg.feed),
        (cfg.feed.warmup_trades >= 0 and cfg.feed.warmup_klines >= 0,
         "feed.warmup_trades / warmup_klines must be >= 0"),
        (cfg.feed.backfill_max_seconds > 0 and cfg.feed.backfill_checkpoint_items >= 1
         and cfg.feed.backfill_checkpoint_seconds > 0,
         "feed.backfill_max_seconds and backfill_checkpoint_seconds must be > 0, "
         "backfill_checkpoint_items >= 1"),
        (all(u == "" or u.split("://")[0] in {"ws", "wss", "http", "https"}
             for u in (cfg.feed.ws_url, cfg.feed.rest_url)),
         "feed.ws_url / feed.rest_url must start with ws://, wss://, http:// or https://"),
        (cfg.labels.threshold_bps >= 0, "labels.threshold_bps must be >= 0"),
        (cfg.drift.delta > 0, "drift.delta must be > 0"),
        (cfg.drift.timer_bars >= 1, "drift.timer_bars must be >= 1"),
        (cfg.drift.feature_every == "0s" or _INTERVAL.fullmatch(cfg.drift.feature_every)
         is not None, "drift.feature_every: \"0s\" or a positive number and s, m, h or d"),
        (cfg.drift.feature_window >= 50, "drift.feature_window must be >= 50"),
        (cfg.drift.psi_threshold > 0, "drift.psi_threshold must be > 0"),
        (cfg.drift.features_drifted >= 1, "drift.features_drifted must be >= 1"),
        (cfg.drift.psi_null_factor >= 0, "drift.psi_null_factor must be >= 0"),
        (cfg.drift.reference_windows >= 2, "drift.reference_windows must be >= 2"),
        (cfg.store.flush_rows >= 1, "store.flush_rows must be >= 1"),
        (cfg.store.watchdog_failures >= 1, "store.watchdog_failures must be >= 1"),
        (cfg.store.memory_limit_gb >= 0, "store.memory_limit_gb must be >= 0 (0: MemAvailable)"),
        (cfg.learner.rolling_window >= 1, "learner.rolling_window must be >= 1"),
        (cfg.report.every_hours >= 0, "report.every_hours must be >= 0 (0: no daily report)"),
        (cfg.report.rolling >= 2, "report.rolling must be >= 2"),
        (all(h >= 1 for h in cfg.features.return_horizons), "features.return_horizons >= 1"),
        (cfg.features.book_levels >= 1, "features.book_levels must be >= 1"),
        (cfg.features.book_bps > 0, "features.book_bps must be > 0"),
        (cfg.features.reference_max_lag_bars >= 1, "features.reference_max_lag_bars must be >= 1"),
        (bool(cfg.features.reference.strip()), "features.reference: a symbol, e.g. \"BTCUSDT\""),
        *_timeframe_checks(cfg),
        *_alert_checks(cfg.alerts),
        (0 <= cfg.monitor.port <= 65535, "monitor.port must be 0-65535"),
        (cfg.feed.backfill_concurrency >= 1, "feed.backfill_concurrency must be >= 1"),
        (cfg.batch.executor in ("process", "ray"), "batch.executor must be \"process\" or \"ray\""),
        (not cfg.feed.shard
         or re.fullmatch(r"\s*\d+\s*(/|-of-)\s*\d+\s*", cfg.feed.shard) is not None,
         "feed.shard must be \"K/N\", e.g. \"1/4\""),
        (0 < cfg.stress.max_loss <= 1 and 0 < cfg.stress.max_drawdown <= 1,
         "stress.max_loss and stress.max_drawdown must be fractions in (0, 1]"),
        (cfg.stress.warmup_bars >= 1 and cfg.stress.windows >= 1,
         "stress.warmup_bars and stress.windows must be >= 1"),
        (cfg.stress.window_days > 0, "stress.window_days must be > 0"),
        (not cfg.features.cross_asset or not cfg.feed.symbols
         or cfg.features.reference.upper() in {s.upper() for s in cfg.feed.symbols},
         f"features.reference = {cfg.features.reference!r} is not in feed.symbols "
         f"{list(cfg.feed.symbols)}: the cross-asset features would never warm up"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{source}: {message}")
    _check_task_model(cfg, source)
    klines = [s.removeprefix("kline_") for s in cfg.feed.streams if s.startswith("kline_")]
    for interval in ([] if cfg.bars.source == "klines" else [cfg.bars.interval]) + klines:
        problem = buffer_shortfall(cfg, interval)
        if problem:
            raise ConfigError(f"{source}: {problem}")


def _universe_checks(f: FeedConfig) -> list[tuple[bool, str]]:
    """The symbols named one way, a well-formed quote, a stream cap Binance allows and that
    holds one symbol's streams."""
    ways = [k for k, v in (("symbols", f.symbols), ("symbols_file", f.symbols_file),
                           ("symbols_quote", f.symbols_quote)) if v]
    per_symbol = len(set(f.streams))
    return [
        (len(ways) <= 1, f"feed.{' and feed.'.join(ways)} both name the symbols: set one of "
         "feed.symbols, feed.symbols_file, feed.symbols_quote"),
        (not f.symbols_quote or re.fullmatch(r"[A-Z0-9]{2,10}", f.symbols_quote) is not None,
         f"feed.symbols_quote = {f.symbols_quote!r}: an asset in capitals, e.g. \"USDT\""),
        (1 <= f.streams_per_connection <= 1024,
         f"feed.streams_per_connection = {f.streams_per_connection}: must be 1-1024 (Binance "
         "allows 1,024 streams per connection)"),
        (f.streams_per_connection >= per_symbol,
         f"feed.streams_per_connection = {f.streams_per_connection} is below the {per_symbol} "
         "streams of one symbol (feed.streams): a symbol's streams share a connection"),
    ]


ALERT_FORMATS = ("json", "telegram", "slack", "discord")
_WEBHOOK_KEYS = {"url", "url_env", "format", "chat_id", "chat_id_env"}


def _alert_checks(a: AlertsConfig) -> list[tuple[bool, str]]:
    checks = [(a.min_interval_s >= 0 and a.dedup_s >= 0, "alerts.min_interval_s and dedup_s >= 0"),
              (a.max_per_minute >= 1, "alerts.max_per_minute must be >= 1"),
              (a.timeout_s > 0, "alerts.timeout_s must be > 0")]
    for i, hook in enumerate(a.webhooks):
        checks.append((_webhook_ok(hook), f"alerts.webhooks[{i}]: a URL string or a table of "
                       f"url or url_env, format (one of {', '.join(ALERT_FORMATS)}), chat_id or "
                       "chat_id_env (telegram needs one)"))
    return checks


def _webhook_ok(hook: Any) -> bool:
    """A URL (masked in a stored config), or a table naming one and a known format."""
    if isinstance(hook, str):
        return hook == "***" or hook.startswith(("http://", "https://"))
    if not isinstance(hook, dict) or not set(hook) <= _WEBHOOK_KEYS:
        return False
    url, fmt = hook.get("url"), hook.get("format", "json")
    has_url = _webhook_ok(url) if url is not None else bool(hook.get("url_env"))
    chat = hook.get("chat_id") or hook.get("chat_id_env")
    return has_url and fmt in ALERT_FORMATS and (fmt != "telegram" or bool(chat))


_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _seconds(interval: str) -> int:
    return int(interval[:-1]) * _UNIT_S[interval[-1]]


def _timeframe_checks(cfg: Config) -> list[tuple[bool, str]]:
    """Each higher timeframe: an interval, a multiple of the bar interval, longer, once."""
    base, tfs = cfg.bars.interval, cfg.features.timeframes
    out = [(len(set(tfs)) == len(tfs), f"features.timeframes: each once, not {list(tfs)}")]
    for tf in tfs:
        ok = _INTERVAL.fullmatch(tf) is not None and _INTERVAL.fullmatch(base) is not None
        out.append((ok and _seconds(tf) > _seconds(base) and _seconds(tf) % _seconds(base) == 0,
                    f"features.timeframes: {tf!r} must be an interval (e.g. \"15m\") longer "
                    f"than and a multiple of bars.interval = {base!r}"))
    return out


def buffer_shortfall(cfg: Config, interval: str) -> str:
    """Why the sample buffer can never hold ``batch.min_rows`` samples of ``interval`` bars
    ("" when it can): then no booster would ever be trained, silently.

    >>> buffer_shortfall(Config(), "1m")
    ''
    >>> buffer_shortfall(Config(), "1h")  # 90 days: 2160 bars
    ''
    >>> msg = buffer_shortfall(Config(), "4h")
    >>> msg[:55], "raise batch.buffer_days to at least 334" in msg
    ('batch.buffer_days = 90.0 holds at most 540 bars of 4h, ', True)
    """
    b = cfg.batch
    if not b.enabled or not _INTERVAL.fullmatch(interval):
        return ""
    seconds = int(interval[:-1]) * _UNIT_S[interval[-1]]
    by_age = int(b.buffer_days * 86_400 // seconds)
    if b.buffer_rows < b.min_rows:
        return (f"batch.buffer_rows = {b.buffer_rows} is below batch.min_rows = {b.min_rows}: "
                "no booster would ever be trained")
    if by_age < b.min_rows:
        days = -(-b.min_rows * seconds // 86_400)
        return (f"batch.buffer_days = {b.buffer_days} holds at most {by_age} bars of {interval}, "
                f"fewer than batch.min_rows = {b.min_rows}: no booster would ever be trained "
                f"(raise batch.buffer_days to at least {days}, lower batch.min_rows, or set "
                "batch.enabled = false)")
    return ""


def _check_task_model(cfg: Config, source: str) -> None:
    regression = cfg.learner.model in {"linreg", "hatr", "arfr"}
    if regression != (cfg.learner.task == "regression"):
        raise ConfigError(
            f"{source}: learner.model = {cfg.learner.model!r} does not fit "
            f"learner.task = {cfg.learner.task!r}"
        )


def as_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain data (for the ``runs`` table); webhook URLs masked (secrets)."""
    data = dataclasses.asdict(cfg)
    data["alerts"]["webhooks"] = [
        "***" if isinstance(h, str) else {**h, **({"url": "***"} if "url" in h else {})}
        for h in cfg.alerts.webhooks]
    return data


STATE_KEYS = ("bars", "features", "labels", "learner", "drift.enabled", "drift.delta",
              "drift.warm_samples", "drift.policy", "drift.timer_bars", "feed.streams",
              "feed.endpoint", "feed.time_unit")  # what shapes the engine's learned state
# (a checkpoint's); the feature drift check's settings (drift.feature_*, psi_threshold) do not


def state_changes(stored: Any, cfg: Config) -> list[str]:
    """The settings among :data:`STATE_KEYS` on which ``stored`` (a checkpoint's
    :func:`as_dict`) and ``cfg`` differ: the checkpoint's engine state (bar builders, features,
    labels, learner) cannot be resumed under them. A key ``stored`` lacks — one a newer version
    added — counts only when ``cfg`` moves it from its default; one only ``stored`` has — a
    removed option — does not. Trading limits, metrics, the store, the batch learner's own
    settings do not touch that state, so changing them keeps it.

    >>> stored = as_dict(Config())
    >>> del stored["learner"]["shrink"]  # a checkpoint from before the key existed
    >>> stored["trading"]["fee_bps"] = 99.0
    >>> state_changes(stored, Config())
    []
    >>> state_changes(stored, replace_values(Config(), {"learner": {"lr": 0.5}}))
    ['learner.lr']
    >>> state_changes(None, Config())
    ['(no config in the checkpoint)']
    """
    if not isinstance(stored, dict):
        return ["(no config in the checkpoint)"]
    now, default = as_dict(cfg), as_dict(Config())
    changed = []
    for key in STATE_KEYS:
        section, _, name = key.partition(".")
        new = now[section] if not name else {name: now[section][name]}
        old = stored.get(section)
        if not isinstance(old, dict):
            changed.append(key)
            continue
        for k, value in new.items():
            was = old[k] if k in old else default[section][k]
            if _plain(was) != _plain(value):
                changed.append(f"{section}.{k}")
    return changed


def _plain(value: Any) -> Any:
    """Tuples and lists alike (a stored config went through JSON or the codec)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value
