"""The errors a user can cause, each with a message that names what to fix.

The CLI turns these into a one-line reason and a non-zero exit code; nothing else reaches a user
as a traceback.

>>> str(ParseError("bad price", b'{"p":"nan"}'))
'bad price: b\\'{"p":"nan"}\\''
"""

from __future__ import annotations


class AresError(Exception):
    """Base of every error meant for a user's eyes."""


class ParseError(AresError, ValueError):
    """The one error a decoder raises: the frame or row is malformed.

    ``head`` holds the first bytes of the offending input, for the log line.
    """

    def __init__(self, reason: str, head: bytes | str = b"") -> None:
        self.reason = reason
        self.head = head[:120]
        super().__init__(f"{reason}: {self.head!r}" if head else reason)


class ConfigError(AresError):
    """A config file is unreadable, has an unknown key or a value of the wrong type."""


class SourceError(AresError):
    """A replay source cannot be read: a missing path, a bad row (names file and line)."""


class UnsafeFormatError(AresError):
    """Stored data in a format that can run code when loaded (a pickle an earlier version wrote):
    refused, never loaded. The message names what it was and what happens instead."""


class StorageError(AresError):
    """The machine cannot store what must be kept: a full disk, a read-only or failing device.

    Not the user's mistake, but theirs to fix, so it ends a command with one line too (exit 1).
    :func:`ares_stream.store.failures.storage_failure` tells it from other errors.
    """
