"""Continuity checks: duplicates dropped, gaps counted exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ares_stream.feed.sequence import DUPLICATE, OK, IdSequence


def test_restored_cursor_reports_the_gap_since_the_checkpoint() -> None:
    """A sequence restored at id 100 reports ids 101..104 missing when 105 arrives."""
    assert IdSequence(last=100).check(105) == 4


def test_time_sequence_counts_missing_intervals() -> None:
    """Kline open times one hour apart with 3 hours missing report 3."""
    h = 3600 * 10**9
    s = IdSequence(step=h)
    assert [s.check(0), s.check(h), s.check(5 * h)] == [OK, OK, 3]


@given(st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=200))
def test_accepted_plus_missing_spans_the_range(ids: list[int]) -> None:
    """Accepted ids plus reported missing ids cover exactly first..max, each once."""
    s = IdSequence()
    accepted, missing = 0, 0
    for i in ids:
        r = s.check(i)
        if r != DUPLICATE:
            accepted += 1
            missing += r
    assert accepted + missing == max(ids) - ids[0] + 1
