"""Telling a failing storage (a full disk, an I/O error, a read-only file system) from other
errors, for the one line a command ends with (:class:`~ares_stream.errors.StorageError`).

Callers catch :data:`STORAGE_ERRORS` around what writes, and re-raise what
:func:`storage_failure` does not recognise.
"""

from __future__ import annotations

import errno
import sqlite3

from ares_stream.errors import StorageError

__all__ = ["STORAGE_ERRORS", "storage_failure"]

STORAGE_ERRORS = (sqlite3.Error, OSError)

_FULL, _IO, _RO = "is the disk full?", "a failing device?", "a read-only file system?"
_ERRNO_HINTS = {errno.ENOSPC: _FULL, errno.EDQUOT: _FULL, errno.EIO: _IO, errno.EROFS: _RO}
_SQLITE_HINTS = {13: _FULL, 10: _IO, 8: _RO}  # SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY


def storage_failure(exc: BaseException, what: str = "") -> StorageError | None:
    """``exc`` as a :class:`StorageError` if it is the storage failing (disk full, I/O error,
    read-only), else None. ``what`` names what was being written.

    >>> str(storage_failure(OSError(errno.ENOSPC, "No space left on device"), "the recording"))
    'cannot write the recording: No space left on device (is the disk full?)'
    >>> full = sqlite3.OperationalError("database or disk is full")
    >>> str(storage_failure(full, "state/paper.db"))
    'cannot write state/paper.db: database or disk is full (is the disk full?)'
    >>> storage_failure(ValueError("x")) is None, storage_failure(OSError(errno.ENOENT, "x"))
    (True, None)
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        code = getattr(exc, "sqlite_errorcode", None)
        hint = _SQLITE_HINTS.get(code & 0xFF) if code is not None else None
        if hint is None:
            hint = _FULL if "disk is full" in text else _IO if "disk I/O error" in text else None
        if hint is None:
            return None
        return StorageError(f"cannot write {what or 'the database'}: {text} ({hint})")
    if isinstance(exc, OSError) and exc.errno in _ERRNO_HINTS:
        target = what or (exc.filename and str(exc.filename)) or "a file"
        return StorageError(f"cannot write {target}: {exc.strerror} ({_ERRNO_HINTS[exc.errno]})")
    return None
