"""The gate: duplicates dropped, gaps reported or held for backfill, released in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.events import Gap, Kline, Trade
from ares_stream.feed.gate import DROP, GAP, HOLD, PASS, BackfillRequest, Gate

M = 60 * 10**9


def t(i: int, symbol: str = "X") -> Trade:
    return Trade(symbol, i * 1000, i * 1000 + 1, i, 1.0, 1.0, False, True)


def k(i: int) -> Kline:
    return Kline("X", (i + 1) * M, (i + 1) * M, "1m", i * M, (i + 1) * M - 10**6,
                 1.0, 1.0, 1.0, 1.0, 1.0)


def ids(items: list) -> list[int]:
    return [ev.trade_id for ev, _, _ in items if type(ev) is Trade]


def test_replay_mode_reports_the_exact_missing_range() -> None:
    """Without backfill a jump is GAP with the first and last missing id."""
    g = Gate()
    assert [g.admit(t(i)) for i in (10, 11, 15)] == [PASS, PASS, GAP]
    assert g.gap is not None and (g.gap.first_missing, g.gap.last_missing) == (12, 14)


def test_kline_gap_counts_intervals() -> None:
    """Closed klines jumping three intervals are a kline_time gap of two open times."""
    g = Gate()
    assert [g.admit(k(i)) for i in (0, 1, 4)] == [PASS, PASS, GAP]
    assert g.gap is not None and (g.gap.first_missing, g.gap.last_missing) == (2 * M, 3 * M)


def test_gap_marker_advances_the_cursor() -> None:
    """After a recorded gap marker the jump it describes is not reported again."""
    g = Gate()
    g.admit(t(1))
    assert g.admit(Gap("X", 0, 0, "agg_id", 2, 9)) == PASS
    assert g.admit(t(10)) == PASS


def test_restored_cursor_makes_the_first_item_a_gap() -> None:
    """A cursor from a checkpoint turns the first live id after it into a backfill request."""
    g = Gate(backfill=True, cursors={("X", "agg_id"): 100})
    assert g.admit(t(105)) == HOLD
    assert g.take_requests() == [BackfillRequest("X", "agg_id", 101, 104)]


def test_backfill_fills_then_releases_held_in_order() -> None:
    """Held items come out after the backfilled ones; duplicates among them are dropped."""
    g = Gate(backfill=True)
    g.admit(t(1))
    assert [g.admit(t(i)) for i in (4, 2, 5)] == [HOLD, HOLD, HOLD]
    (req,) = g.take_requests()
    out = g.resolve(req, [(t(2), 0, None), (t(3), 0, None)], complete=True)
    assert ids(out) == [2, 3, 4, 5]
    assert g.admit(t(6)) == PASS and g.admit(t(3)) == DROP


def test_partial_backfill_leaves_a_gap_for_the_rest() -> None:
    """When REST gives only a prefix, a Gap covers the rest, then held items follow."""
    g = Gate(backfill=True)
    g.admit(t(1))
    g.admit(t(10))
    (req,) = g.take_requests()
    out = g.resolve(req, [(t(2), 0, None), (t(3), 0, None)], complete=False)
    kinds = [type(ev).__name__ for ev, _, _ in out]
    assert kinds == ["Trade", "Trade", "Gap", "Trade"]
    gap = out[2][0]
    assert (gap.first_missing, gap.last_missing) == (4, 9)
    assert g.admit(t(11)) == PASS


def test_a_new_gap_among_held_items_is_held_again() -> None:
    """A second hole behind the first gets its own request; later items stay held behind it."""
    g = Gate(backfill=True)
    g.admit(t(1))
    for i in (3, 6, 7):
        g.admit(t(i))
    (req,) = g.take_requests()
    out = g.resolve(req, [(t(2), 0, None)], complete=True)
    assert ids(out) == [2, 3]
    (req2,) = g.take_requests()
    assert (req2.first_missing, req2.last_missing) == (4, 5)
    assert ids(g.resolve(req2, [(t(4), 0, None), (t(5), 0, None)], True)) == [4, 5, 6, 7]
    assert g.holding() == 0


def test_other_symbols_flow_while_one_is_held() -> None:
    """A hold on one symbol does not stop another."""
    g = Gate(backfill=True)
    g.admit(t(1))
    g.admit(t(5))
    assert g.admit(t(1, "Y")) == PASS and g.admit(t(2, "Y")) == PASS


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.data())
def test_perfect_backfill_gives_exactly_the_source(n: int, data: st.DataObject) -> None:
    """Any mix of losses, duplicates and swaps, with a REST that has everything, yields the
    source ids exactly: none lost, none duplicated, in order."""
    source = list(range(1, n + 1))
    received: list[int] = []
    for i in source:
        action = data.draw(st.sampled_from(["send", "send", "send", "lose", "dup"]))
        if action == "send" or (action == "lose" and i in (1, n)):
            received.append(i)
        elif action == "dup":
            received += [i, i]
    if len(received) > 2 and data.draw(st.booleans()):
        j = data.draw(st.integers(min_value=1, max_value=len(received) - 2))
        received[j], received[j + 1] = received[j + 1], received[j]
    g = Gate(backfill=True, cursors={("X", "agg_id"): 0})
    out: list[int] = []
    for i in received:
        if g.admit(t(i)) == PASS:
            out.append(i)
        for req in g.take_requests():
            rest = [(t(j), 0, None) for j in range(req.first_missing, req.last_missing + 1)]
            out += ids(g.resolve(req, rest, complete=True))
            while g.requests:  # holes found inside the released items
                r2 = g.take_requests()[0]
                fill = [(t(j), 0, None) for j in range(r2.first_missing, r2.last_missing + 1)]
                out += ids(g.resolve(r2, fill, complete=True))
    assert out == source


def test_cold_start_warms_kline_streams_too() -> None:
    """A kline-only feed's cold start fetches ``warmup_klines`` candles before the first closed
    one (never before time 0), then carries on live without a gap; trades keep their own count."""
    g = Gate(backfill=True, warmup=100, warmup_klines=5)
    assert g.admit(k(40)) == HOLD
    (req,) = g.take_requests()
    assert (req.kind, req.interval, req.first_missing, req.last_missing) == (
        "kline_time", "1m", 35 * M, 39 * M)
    out = g.resolve(req, [(k(i), 0, None) for i in range(35, 40)], complete=True)
    assert [ev.open_time // M for ev, _, _ in out] == [35, 36, 37, 38, 39, 40]
    assert g.admit(k(41)) == PASS
    early = Gate(backfill=True, warmup_klines=5)
    assert early.admit(k(2)) == HOLD
    assert early.take_requests()[0].first_missing == 0
    assert Gate(backfill=True).admit(k(40)) == PASS  # no warm-up asked for


def test_cold_start_warms_up_from_history_without_a_gap() -> None:
    """No cursor: the warm-up ids before the first live trade are fetched first; a partial
    history records no gap, and trading starts at the first live trade."""
    g = Gate(backfill=True, warmup=100)
    assert g.admit(t(1000)) == HOLD
    (req,) = g.take_requests()
    assert (req.first_missing, req.last_missing) == (900, 999)
    out = g.resolve(req, [(t(i), 0, None) for i in range(950, 1000)], complete=False)
    assert ids(out) == [*range(950, 1000), 1000]
    assert not any(type(ev) is Gap for ev, _, _ in out)
    assert g.live_from == {"X": t(1000).ts_event}
    assert g.admit(t(1001)) == PASS


def test_a_backfill_in_parts_moves_the_cursor_and_keeps_the_held_items() -> None:
    """Parts of a backfill pass at once (the cursor, what a checkpoint saves, moves through
    them; duplicates dropped) while the live items stay held; the last part releases them."""
    g = Gate(backfill=True, cursors={("X", "agg_id"): 0})
    assert g.admit(t(10)) == HOLD
    (req,) = g.take_requests()
    assert ids(g.advance(req, [(t(i), 0, None) for i in (1, 2, 3, 4)])) == [1, 2, 3, 4]
    assert g.cursors() == {("X", "agg_id"): 4} and g.holding() == 1
    assert ids(g.advance(req, [(t(3), 0, None), (t(5), 0, None)])) == [5]
    out = g.resolve(req, [(t(i), 0, None) for i in (6, 7, 8, 9)], complete=True)
    assert ids(out) == [6, 7, 8, 9, 10] and not any(type(ev) is Gap for ev, _, _ in out)
    assert g.holding() == 0 and g.admit(t(11)) == PASS


def test_ids_rest_skips_are_a_gap_of_exactly_those() -> None:
    """A backfill whose REST history begins later than asked: a Gap for the ids it skipped,
    then every item it has (none dropped), then the held item."""
    g = Gate(backfill=True, cursors={("X", "agg_id"): 0})
    g.admit(t(10))
    (req,) = g.take_requests()
    out = g.resolve(req, [(t(i), 0, None) for i in (4, 5, 6, 7, 8, 9)], complete=True)
    gap = out[0][0]
    assert type(gap) is Gap and (gap.first_missing, gap.last_missing) == (1, 3)
    assert ids(out) == [4, 5, 6, 7, 8, 9, 10]


def test_a_restored_kline_cursor_steps_by_its_interval() -> None:
    """After a restart the next closed kline passes (no gap of a ns-stepped cursor), and the
    catch-up asks from the next open time."""
    g = Gate(backfill=True, cursors={("X", "kline_time:1m"): 5 * M})
    assert g.catch_up_requests()[0].first_missing == 6 * M
    assert g.admit(k(6)) == PASS and g.admit(k(7)) == PASS
