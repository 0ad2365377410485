"""Stop signals during start-up: raised while nothing is open, remembered once held."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from ares_stream.daemon import startup


@pytest.fixture(autouse=True)
def _defaults() -> Iterator[None]:
    startup._reset_for_test()
    yield
    startup.restore_defaults()
    startup._reset_for_test()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_abortable_raises_startup_interrupted(sig: signal.Signals) -> None:
    startup.install()
    with pytest.raises(startup.StartupInterrupted) as stop:
        os.kill(os.getpid(), sig)
    assert stop.value.signal == sig.name and startup.requested() == sig.name


def test_once_held_a_signal_is_only_remembered() -> None:
    startup.install()
    startup.hold()
    os.kill(os.getpid(), signal.SIGTERM)
    assert startup.requested() == "SIGTERM"


def test_hold_raises_for_a_signal_that_came_before() -> None:
    startup.install()
    startup._state["abortable"] = False  # as if it came between two statements of hold()
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(startup.StartupInterrupted):
        startup.hold()


def test_hold_without_install_catches_from_then_on() -> None:
    startup.hold()
    os.kill(os.getpid(), signal.SIGTERM)  # the default handler would end the test run
    assert startup.requested() == "SIGTERM"


def test_process_age_is_the_age_of_this_process() -> None:
    """Older than the import of the module (the interpreter started first), and not absurd."""
    assert 0.0 < startup.process_age() < 24 * 3600


def test_after_the_daemon_stopped_stop_signals_are_ignored() -> None:
    startup.install()
    startup.stopped()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGINT)  # the default handler would raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGTERM)  # ... and this one would end the test run
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
