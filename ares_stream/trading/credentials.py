"""API credentials for live trading: from the environment, else from a private keys file.

``ARES_API_KEY`` / ``ARES_API_SECRET`` come from the environment (what systemd's
``EnvironmentFile=`` sets); a value missing there is read from ``trading.keys_file``, ``KEY=value``
lines (``#`` comments, blank lines and an ``export`` prefix allowed). The file must belong to the
current user and be closed to group and others (``chmod 600``), or it is refused. Both values are
registered with :func:`~ares_stream.redact.register_secret`, so no log line can carry them, and
neither is ever logged or shown by ``repr``.

>>> from structlog.testing import capture_logs
>>> from ares_stream.config import TradingConfig
>>> with capture_logs() as logs:
...     creds = load_credentials(TradingConfig(), {"ARES_API_KEY": "k" * 64,
...                                                "ARES_API_SECRET": "s" * 64})
>>> logs
[{'source': 'environment', 'keys_file': None, 'event': 'credentials_loaded', 'log_level': 'info'}]
>>> creds
Credentials(api_key='***', api_secret='***')
>>> load_credentials(TradingConfig(), {})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ares_stream.errors.AresError: live trading needs ARES_API_KEY and ARES_API_SECRET: set them ...
>>> from ares_stream.redact import clear_secrets
>>> clear_secrets()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import structlog

from ares_stream.config import TradingConfig
from ares_stream.errors import AresError
from ares_stream.redact import register_secret

__all__ = ["KEY_VAR", "SECRET_VAR", "Credentials", "load_credentials"]

KEY_VAR, SECRET_VAR = "ARES_API_KEY", "ARES_API_SECRET"
log = structlog.get_logger("ares_stream.trading")


class Credentials(NamedTuple):
    """An API key and secret; ``repr`` (and so any log or traceback) shows neither."""

    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return "Credentials(api_key='***', api_secret='***')"


def load_credentials(cfg: TradingConfig,
                     environ: Mapping[str, str] = os.environ) -> Credentials:
    """The key and secret from ``environ``, completed from ``cfg.keys_file``; an
    :class:`AresError` naming what to set (or the file to fix) when they cannot be had."""
    values = {name: environ.get(name, "") for name in (KEY_VAR, SECRET_VAR)}
    source = "environment"
    if not all(values.values()) and cfg.keys_file:
        from_file = _read_keys_file(Path(cfg.keys_file))
        values = {name: value or from_file.get(name, "") for name, value in values.items()}
        source = "keys_file"
    missing = [name for name, value in values.items() if not value]
    if missing:
        where = f"in {cfg.keys_file}" if cfg.keys_file else "in the file named by trading.keys_file"
        them = "it" if len(missing) == 1 else "them"
        raise AresError(f"live trading needs {' and '.join(missing)}: set {them} in the "
                        f"environment (systemd EnvironmentFile=) or {where}")
    for value in values.values():
        register_secret(value)
    log.info("credentials_loaded", source=source, keys_file=cfg.keys_file or None)
    return Credentials(values[KEY_VAR], values[SECRET_VAR])


def _read_keys_file(path: Path) -> dict[str, str]:
    """``KEY=value`` pairs of a file that only its owner — us — can read."""
    try:
        st = path.stat()
    except OSError as exc:
        raise AresError(f"{path}: cannot read the keys file: {exc.strerror}") from None
    if st.st_uid != os.getuid():
        raise AresError(f"{path}: the keys file must be owned by the user running ares-stream "
                        f"(uid {os.getuid()}), not uid {st.st_uid}")
    if st.st_mode & 0o077:
        raise AresError(f"{path}: the keys file is open to group or others (mode "
                        f"{st.st_mode & 0o777:04o}); chmod 600 it")
    pairs: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep:  # a line without "=" is skipped, never echoed: it may hold a secret
            pairs[name.strip()] = value.strip().strip("'\"")
    return pairs
