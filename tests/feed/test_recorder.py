"""The recorder: hourly gzip files that the recording reader replays, crash safety, restarts."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from ares_stream.events import Gap
from ares_stream.feed import RawFrame
from ares_stream.feed.recorder import RecordingWriter
from ares_stream.feed.recording import RecordingSource
from tests.conftest import shared_path

HOUR = 3_600_000_000_000
T0 = 1723161253937085768  # 2024-08-08 23:54:13 UTC, the first line of the 08-08 capture


class FakeClock:
    """A clock the test moves by hand (ns)."""

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _noisy(count: int, start: int = T0, seed: int = 0) -> list[RawFrame]:
    """Frames with incompressible payloads, so a cut file really loses data."""
    rng = random.Random(seed)
    return [RawFrame(start + i, b'{"x":"%032x"}' % rng.getrandbits(128)) for i in range(count)]


def _read(paths: list[Path]) -> list[RawFrame | Gap]:
    return list(RecordingSource(paths))


def test_real_captures_round_trip_into_hourly_files(tmp_path: Path) -> None:
    """The two real captures (23:54–00:05 UTC) come back byte for byte from two hourly files."""
    frames = list(RecordingSource([shared_path("ws/binance-spot-btcusdt-20240808.gz"),
                                   shared_path("ws/binance-spot-btcusdt-20240809.gz")]))
    with RecordingWriter(tmp_path / "rec") as writer:
        for ts, data in frames:
            writer.write(ts, data)
    assert [p.name for p in writer.files] == ["ares-20240808-23.gz", "ares-20240809-00.gz"]
    assert _read([tmp_path / "rec"]) == frames
    assert writer.stats["lines"] == len(frames) == 99_574 and writer.stats["files"] == 2
    assert writer.stats["bytes"] == sum(len(b"%d %s\n" % f) for f in frames)


def test_restart_within_the_hour_opens_a_new_file_that_sorts_after(tmp_path: Path) -> None:
    """A second writer in the same hour never appends: it opens `.r001.gz`, then `.r002.gz`."""
    batches = [_noisy(5, T0 + k * 10, seed=k) for k in range(3)]
    for batch in batches:
        with RecordingWriter(tmp_path, prefix="btc") as writer:
            for ts, data in batch:
                writer.write(ts, data)
    with RecordingWriter(tmp_path, prefix="btc") as writer:
        writer.write(T0 + HOUR, b"{}")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["btc-20240808-23.gz", "btc-20240808-23.r001.gz", "btc-20240808-23.r002.gz",
                     "btc-20240809-00.gz"]
    items = _read([tmp_path / n for n in names])
    assert items == [f for batch in batches for f in batch] + [RawFrame(T0 + HOUR, b"{}")]


def test_flushed_lines_survive_a_crash(tmp_path: Path) -> None:
    """A copy taken while the writer is open (a SIGKILL) reads every line up to the last flush."""
    frames = _noisy(3_000)
    writer = RecordingWriter(tmp_path / "rec", clock=FakeClock())
    for ts, data in frames[:2_000]:
        writer.write(ts, data)
    writer.flush()
    for ts, data in frames[2_000:2_500]:  # after the flush: may be lost, never garbled
        writer.write(ts, data)
    crashed = shutil.copy(writer.files[0], tmp_path / "crashed.gz")
    source = RecordingSource([crashed])
    assert list(source) == frames[:2_000]
    assert source.stats["truncated_lines"] == 1  # the gzip stream has no end marker
    writer.close()


def test_sync_makes_every_line_written_so_far_readable_and_durable(tmp_path: Path) -> None:
    """``sync`` (before each daemon checkpoint) flushes the pending lines to the file and fsyncs
    it, however recently the interval flush ran: a copy taken right after reads them all."""
    frames = _noisy(1_500)
    writer = RecordingWriter(tmp_path / "rec", clock=FakeClock())  # the interval never passes
    for ts, data in frames:
        writer.write(ts, data)
    writer.sync()
    crashed = shutil.copy(writer.files[0], tmp_path / "crashed.gz")
    assert list(RecordingSource([crashed])) == frames
    assert writer.stats["syncs"] == 1 and writer.stats["flushes"] == 1
    writer.close()


def test_a_cut_file_reads_as_a_prefix_of_what_was_written(tmp_path: Path) -> None:
    """Cut at any of 300 random byte offsets, a file (several sync points) reads as a prefix."""
    frames = _noisy(4_000)
    clock = FakeClock()
    with RecordingWriter(tmp_path / "rec", clock=clock, flush_interval_ns=100) as writer:
        for i, (ts, data) in enumerate(frames):
            clock.now = i // 7  # a sync flush every 700 lines
            writer.write(ts, data)
    whole = writer.files[0].read_bytes()
    rng = random.Random(3)
    cut = tmp_path / "cut.gz"
    lengths = []
    for size in [0, 1, 2, 10, len(whole) - 1, *(rng.randrange(len(whole)) for _ in range(295))]:
        cut.write_bytes(whole[:size])
        items = _read([cut])
        assert items == frames[: len(items)], size
        lengths.append(len(items))
    assert max(lengths) == len(frames) and min(lengths) == 0
    assert len(set(lengths)) > 5  # the cuts kept different numbers of lines


def test_the_interval_flush_happens_on_write_and_on_maybe_flush(tmp_path: Path) -> None:
    """Lines are readable from the open file once flush_interval_ns has passed, not before."""
    clock = FakeClock(1_000)
    writer = RecordingWriter(tmp_path, clock=clock, flush_interval_ns=500)
    writer.write(T0, b"{}")
    writer.maybe_flush()
    assert writer.stats["flushes"] == 0 and _read(writer.files) == []
    clock.now += 500
    writer.maybe_flush()
    assert writer.stats["flushes"] == 1 and _read(writer.files) == [RawFrame(T0, b"{}")]
    clock.now += 500
    writer.write(T0 + 1, b"[]")  # the write itself notices the interval
    assert writer.stats["flushes"] == 2 and len(_read(writer.files)) == 2
    writer.close()


def test_gap_markers_replay_as_gaps_in_order(tmp_path: Path) -> None:
    """write_gap writes the reader's #GAP marker: it replays as the same Gap, between frames."""
    gap = Gap("BTCUSDT", T0 - 5, T0 + 1, "agg_id", 100, 250)
    with RecordingWriter(tmp_path) as writer:
        writer.write(T0, b"{}")
        writer.write_gap(gap)
        writer.write(T0 + 2, b"[]")
    assert _read(writer.files) == [RawFrame(T0, b"{}"), gap, RawFrame(T0 + 2, b"[]")]
    assert writer.stats["lines"] == 3


def test_line_breaks_inside_a_frame_become_spaces(tmp_path: Path) -> None:
    """A frame carrying LF or CR stays one line (the breaks become spaces) and is counted."""
    with RecordingWriter(tmp_path) as writer:
        writer.write(T0, b'{"a":\n1,\r\n"b":2}\r')
        writer.write(T0 + 1, b'{"c":3}')
    assert _read(writer.files) == [RawFrame(T0, b'{"a": 1,  "b":2} '), RawFrame(T0 + 1, b'{"c":3}')]
    assert writer.stats["newline_fixes"] == 1


def test_a_clock_stepping_back_stays_in_the_open_file(tmp_path: Path) -> None:
    """A line timed in an earlier hour than the open file goes into that file, not an old one."""
    with RecordingWriter(tmp_path) as writer:
        writer.write(T0 + HOUR, b"1")
        writer.write(T0, b"2")
    assert [p.name for p in writer.files] == ["ares-20240809-00.gz"]
    assert [f.data for f in _read(writer.files) if isinstance(f, RawFrame)] == [b"1", b"2"]


def test_closed_writer_refuses_writes_and_closes_twice(tmp_path: Path) -> None:
    """close() is idempotent and a write after it raises instead of being silently dropped."""
    writer = RecordingWriter(tmp_path)
    writer.write(T0, b"{}")
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(T0 + 1, b"{}")
    assert _read(writer.files) == [RawFrame(T0, b"{}")]


def test_an_unused_writer_creates_no_file(tmp_path: Path) -> None:
    """Opening and closing a writer without lines leaves the directory empty (but created)."""
    with RecordingWriter(tmp_path / "new" / "dir") as writer:
        writer.flush()
    assert writer.files == [] and list((tmp_path / "new" / "dir").iterdir()) == []
