"""Config loading: defaults, overrides, and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ares_stream.config import PROFILES, Config, load_config
from ares_stream.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_default_toml_mirrors_the_dataclass_defaults() -> None:
    """configs/default.toml holds exactly the built-in defaults."""
    assert load_config(ROOT / "configs" / "default.toml") == Config()


def test_default_toml_lists_every_setting() -> None:
    """Every setting of every section appears in configs/default.toml."""
    import tomllib
    from dataclasses import fields

    data = tomllib.loads((ROOT / "configs" / "default.toml").read_text())
    for section in fields(Config):
        assert set(data[section.name]) == {f.name for f in fields(getattr(Config(), section.name))}


def test_partial_file_overrides_only_its_keys(tmp_path: Path) -> None:
    """A file with one key changes that key and keeps the other defaults."""
    cfg = load_config(write(tmp_path, "[labels]\nhorizon = 3\n"))
    assert cfg.labels.horizon == 3
    assert cfg.labels.threshold_bps == Config().labels.threshold_bps


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    """An unknown key is an error naming the key and the file."""
    path = write(tmp_path, "[labels]\nhorizn = 3\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key labels\.horizn"):
        load_config(path)


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    """An unknown section is an error naming it."""
    with pytest.raises(ConfigError, match=r"unknown section \[lables\]"):
        load_config(write(tmp_path, "[lables]\nhorizon = 3\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[labels]\nhorizon = "ten"\n', r"labels\.horizon must be int"),
        ("[labels]\nhorizon = true\n", r"labels\.horizon must be int"),
        ("[labels]\nhorizon = 0\n", r"labels\.horizon must be >= 1"),
        ('[bars]\ninterval = "1 minute"\n', r"bars\.interval"),
        ('[learner]\nmodel = "svm"\n', r"learner\.model = 'svm': must be one of"),
        ('[learner]\nmodel = "linreg"\n', r"does not fit learner\.task"),
        ("[features]\nmacd = [12, 26]\n", r"features\.macd must have 3 items"),
        ("[learner]\nlr = 0.0\n", r"c\.toml: learner\.lr must be > 0"),
        ("[learner]\ndiscount = 1.5\n", r"learner\.discount must be in \(0, 1\]"),
        ("[batch]\nedge_confidence = 1.0\n", r"batch\.edge_confidence must be in"),
        ('[batch]\nchampion_max_age = "soon"\n', r"batch\.champion_max_age"),
        ("[feed]\nbackfill_checkpoint_items = 0\n", r"backfill_checkpoint_items >= 1"),
        ("[feed]\nbackfill_max_seconds = 0\n", r"feed\.backfill_max_seconds .*must be > 0"),
        ('[features]\ntimeframes = ["1m"]\n', r"'1m' must be an interval .* longer than"),
        ('[features]\ntimeframes = ["90s"]\n', r"multiple of bars\.interval = '1m'"),
        ('[features]\ntimeframes = ["15m", "15m"]\n', r"features\.timeframes: each once"),
        ('[features]\ntimeframes = ["soon"]\n', r"'soon' must be an interval"),
        ("[features]\nbook_levels = 0\n", r"features\.book_levels must be >= 1"),
        ('[features]\nreference = " "\n', r"features\.reference: a symbol"),
        ('[features]\ncross_asset = true\n[feed]\nsymbols = ["ETHUSDT"]\n',
         r"features\.reference = 'BTCUSDT' is not in feed\.symbols \['ETHUSDT'\]"),
        ("[labels\n", r"cannot read config"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    """Wrong types, bad values and broken TOML are ConfigErrors that say what is wrong."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_int_accepted_where_float_expected(tmp_path: Path) -> None:
    """threshold_bps = 5 is read as 5.0."""
    assert load_config(write(tmp_path, "[labels]\nthreshold_bps = 5\n")).labels.threshold_bps == 5.0


def test_a_buffer_that_can_never_reach_min_rows_is_refused(tmp_path: Path) -> None:
    """1h bars with 30 buffer days hold 720 rows < min_rows = 2000: no booster would ever train.
    The error names the keys to change. The default 90 days hold 2160."""
    p = tmp_path / "hourly.toml"
    p.write_text('[bars]\ninterval = "1h"\n[batch]\nbuffer_days = 30.0\n')
    with pytest.raises(ConfigError, match=r"batch\.buffer_days = 30\.0 .* batch\.min_rows = 2000"):
        load_config(p)
    p.write_text('[bars]\ninterval = "1h"\n')
    assert load_config(p).bars.interval == "1h"
    p.write_text('[feed]\nstreams = ["kline_1d"]\n[bars]\nsource = "klines"\n')
    with pytest.raises(ConfigError, match="bars of 1d"):
        load_config(p)
    p.write_text('[batch]\nbuffer_rows = 100\n')
    with pytest.raises(ConfigError, match=r"batch\.buffer_rows = 100 is below batch\.min_rows"):
        load_config(p)


def test_a_removed_key_says_what_replaced_it(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text("[batch]\nfee_bps = 1.0\n")
    with pytest.raises(ConfigError, match=r"old\.toml: batch\.fee_bps was removed: .*\[trading\]"):
        load_config(p)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[stress]\nmax_loss = 0.0\n", r"stress\.max_loss and stress\.max_drawdown must be"),
        ("[stress]\nmax_drawdown = 1.5\n", r"stress\.max_loss and stress\.max_drawdown must be"),
        ("[stress]\nwindows = 0\n", r"stress\.warmup_bars and stress\.windows must be >= 1"),
        ("[stress]\nwindow_days = 0\n", r"stress\.window_days must be > 0"),
        ("[stress]\nmax_loss = \"5%\"\n", r"stress\.max_loss must be float"),
    ],
)
def test_bad_stress_limits_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    """The [stress] limits are fractions in (0, 1]; counts and days are positive."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_stress_limits_load_from_a_file(tmp_path: Path) -> None:
    """A [stress] section overrides the pass/fail limits of ares-stream stress."""
    cfg = load_config(write(tmp_path, "[stress]\nmax_loss = 0.02\nmax_drawdown = 0.03\n"))
    assert (cfg.stress.max_loss, cfg.stress.max_drawdown) == (0.02, 0.03)


@pytest.mark.parametrize("profile", PROFILES)
def test_each_shipped_profile_loads_and_validates(profile: str) -> None:
    """configs/<profile>.toml is a valid overlay that changes something."""
    cfg = load_config(None, profile)
    assert cfg != Config()


def test_profile_precedence_defaults_profile_file(tmp_path: Path) -> None:
    """defaults < profile < --config file: the file wins where both set a key."""
    quick = load_config(None, "quick")
    assert quick.batch.folds == 3 and quick.batch.rounds_refit == 30
    path = tmp_path / "mine.toml"
    path.write_text("[batch]\nfolds = 4\n")
    cfg = load_config(path, "quick")
    assert cfg.batch.folds == 4  # the file over the profile
    assert cfg.batch.rounds_refit == 30  # the profile over the defaults
    assert cfg.labels == Config().labels  # the defaults under both


def test_unknown_profile_is_a_config_error() -> None:
    """An unknown profile names the valid ones."""
    with pytest.raises(ConfigError, match="unknown profile 'fast' \\(valid: quick, dev"):
        load_config(None, "fast")
