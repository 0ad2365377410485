"""Recordings: real captures, both line layouts, truncation, joining, gap markers."""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ares_stream.errors import SourceError
from ares_stream.events import Gap
from ares_stream.feed import RawFrame
from ares_stream.feed.recording import (
    RecordingSource,
    _seconds_to_ns,
    expand_paths,
    format_gap_marker,
)
from tests.conftest import shared_path

BTC_0808 = "ws/binance-spot-btcusdt-20240808.gz"
BTC_0809 = "ws/binance-spot-btcusdt-20240809.gz"
BTC_FRAMES = 99_574  # 41,249 + 58,325 lines; = 19,904 trades + 73,174 book tops + 6,495 depth + 1


def _frames(items: list[RawFrame | Gap]) -> list[RawFrame]:
    return [item for item in items if isinstance(item, RawFrame)]


def _write_lines(path: Path, lines: list[bytes], compress: bool = False) -> Path:
    data = b"".join(lines)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _noisy_lines(start: int, count: int, step: int = 10) -> list[bytes]:
    """Lines in our layout with incompressible payloads, so a cut gzip loses real data."""
    rng = random.Random(start)
    line = b'%d {"x":"%032x"}\n'
    return [line % (start + i * step, rng.getrandbits(128)) for i in range(count)]


def test_btcusdt_captures_join_into_one_time_ordered_stream() -> None:
    """The two real captures, given in reverse order, join into 99,574 frames in receive order."""
    source = RecordingSource([shared_path(BTC_0809), shared_path(BTC_0808)])
    items = list(source)
    times = [item.ts_init for item in items]
    assert len(items) == BTC_FRAMES == source.stats["frames"] == source.stats["lines"]
    assert times == sorted(times)
    assert (times[0], times[-1]) == (1723161253937085768, 1723161904535092233)
    assert sum(item.data.startswith(b'{"lastUpdateId"') for item in _frames(items)) == 1
    assert source.warnings == [] and source.stats["bad_lines"] == 0


def test_btcusdt_frames_are_the_unparsed_rest_of_the_line() -> None:
    """A frame is the line after the first space, byte for byte, without the newline."""
    first = next(iter(RecordingSource([shared_path(BTC_0808)])))
    assert first == RawFrame(1723161253937085768, first.data)
    assert first.data.startswith(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"')
    assert first.data.endswith(b"]]}}")


def test_cryptofeed_layout_skips_headers_and_converts_seconds_exactly() -> None:
    """cryptofeed's `<seconds>: <frame>` lines become ns without float rounding; headers count."""
    source = RecordingSource([shared_path("ws/cryptofeed-binance-spot.ws.txt")])
    frames = _frames(list(source))
    assert len(frames) == 265
    assert frames[0].ts_init == 1633998512063356900
    assert frames[0].data.startswith(b'{"stream":"nknusdt@depth@100ms"')
    assert source.stats["headers_skipped"] == 1 and source.stats["lines"] == 267


def test_both_cryptofeed_files_join() -> None:
    """The spot and USD-M samples (2021-10 and 2021-07) join, the older file first."""
    source = RecordingSource(
        [
            shared_path("ws/cryptofeed-binance-spot.ws.txt"),
            shared_path("ws/cryptofeed-binance-usdm.ws.txt"),
        ]
    )
    frames = _frames(list(source))
    assert len(frames) == 265 + 1535 and source.stats["headers_skipped"] == 2
    assert frames[0].ts_init == 1626992741062170000
    assert [f.ts_init for f in frames] == sorted(f.ts_init for f in frames)


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_seconds_to_ns_is_exact(ns: int) -> None:
    """Any ns time written as decimal seconds (9 fractional digits) converts back exactly."""
    text = b"%d.%09d" % divmod(ns, 10**9)
    assert _seconds_to_ns(text) == ns
    assert _seconds_to_ns(text.rstrip(b"0")) == ns  # cryptofeed drops trailing zeros


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**62), st.binary(max_size=300)), max_size=60))
def test_any_frames_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[int, bytes]]
) -> None:
    """Whatever the payload bytes (no line end, no marker), a frame reads back as written."""
    rows = sorted((ts, data.replace(b"\n", b"").rstrip(b"\r")) for ts, data in rows)
    rows = [(ts, data) for ts, data in rows if not data.startswith(b"#GAP ")]
    path = tmp_path_factory.mktemp("rt") / "r.gz"
    _write_lines(path, [b"%d %s\n" % row for row in rows], compress=True)
    assert list(RecordingSource([path])) == [RawFrame(ts, data) for ts, data in rows]


def test_gzip_cut_mid_stream_yields_every_whole_line_and_warns(tmp_path: Path) -> None:
    """A gzip file cut by a crash yields all whole lines, warns with file and line, goes on."""
    lines = _noisy_lines(1_000, 5_000)
    full = gzip.compress(b"".join(lines))
    cut = tmp_path / "a.gz"
    cut.write_bytes(full[: len(full) * 3 // 5])
    recovered = zlib.decompressobj(31).decompress(cut.read_bytes())
    whole = recovered.count(b"\n")
    assert 0 < whole < len(lines)
    after = _write_lines(tmp_path / "b.gz", _noisy_lines(10**9, 3), compress=True)
    source = RecordingSource([cut, after])
    with capture_logs() as logs:
        frames = list(source)
    assert [f.ts_init for f in frames[:whole]] == [1_000 + 10 * i for i in range(whole)]
    assert len(frames) == whole + 3 and source.stats["truncated_lines"] == 1
    warning = next(e for e in logs if e["event"] == "recording_truncated")
    assert warning["log_level"] == "warning"
    assert (warning["file"], warning["line"]) == (str(cut), whole + 1)
    assert source.warnings[0].startswith(f"{cut}:{whole + 1}: file cut off")


def test_gzip_cut_at_a_line_end_still_warns(tmp_path: Path) -> None:
    """A gzip file that lost only its trailer yields every line and still reports the cut."""
    path = tmp_path / "r.gz"
    path.write_bytes(gzip.compress(b"1 {}\n2 {}\n")[:-8])
    source = RecordingSource([path])
    assert [f.ts_init for f in source] == [1, 2]
    assert source.stats["truncated_lines"] == 1
    assert source.warnings[0].startswith(f"{path}:3: file cut off (EOFError")


def test_plain_text_last_line_without_newline_is_skipped(tmp_path: Path) -> None:
    """A plain file whose last line has no newline yields the lines before it, with a warning."""
    path = _write_lines(tmp_path / "r.txt", [b'1 {"a":1}\n', b'2 {"a":2}\n', b'3 {"a"'])
    source = RecordingSource([path])
    with capture_logs() as logs:
        assert [f.ts_init for f in source] == [1, 2]
    assert [(e["event"], e["line"]) for e in logs] == [("recording_truncated", 3)]
    assert source.stats["truncated_lines"] == 1 and source.stats["lines"] == 2


def test_file_with_no_whole_line_yields_nothing_but_warns(tmp_path: Path) -> None:
    """A file cut inside its first line contributes nothing and still says so."""
    path = _write_lines(tmp_path / "r.txt", [b"17231612539370"])
    source = RecordingSource([path])
    assert list(source) == []
    assert len(source.warnings) == 1 and source.stats["truncated_lines"] == 1


def test_expand_paths_takes_files_globs_and_directories(tmp_path: Path) -> None:
    """Directories give their recording files recursively, globs their matches, each file once."""
    (tmp_path / "2024" / "08").mkdir(parents=True)
    nested = _write_lines(tmp_path / "2024" / "08" / "h01.gz", [b"1 {}\n"], compress=True)
    log = _write_lines(tmp_path / "h00.log", [b"1 {}\n"])
    _write_lines(tmp_path / "notes.csv", [b"not a recording\n"])
    assert expand_paths([tmp_path]) == [nested, log]
    assert expand_paths([str(tmp_path / "*.log"), log, tmp_path / "2024"]) == [log, nested]
    assert expand_paths([str(tmp_path / "**" / "*.gz")]) == [nested]


def test_expand_paths_can_collect_other_suffixes(tmp_path: Path) -> None:
    """With `suffixes`, a directory also gives public-data files (replay mixes both)."""
    rec = _write_lines(tmp_path / "h00.gz", [b"1 {}\n"], compress=True)
    csv = _write_lines(tmp_path / "BTCUSDT-1m-2025-01.csv", [b"1,2,3,4,5,6\n"])
    assert expand_paths([tmp_path], suffixes={".gz", ".csv", ".zip"}) == [csv, rec]
    assert expand_paths([tmp_path]) == [rec]


def test_missing_path_or_empty_glob_is_a_source_error(tmp_path: Path) -> None:
    """A path that does not exist, or a glob without matches, is named in the error."""
    with pytest.raises(SourceError, match=r"no such recording: .*nope\.gz"):
        RecordingSource([tmp_path / "nope.gz"])
    with pytest.raises(SourceError, match=r"no recording matches .*\*.rec"):
        expand_paths([str(tmp_path / "*.rec")])
    with pytest.raises(SourceError, match="no recording files"):
        expand_paths([tmp_path])


def test_files_are_ordered_by_first_receive_time_not_by_name(tmp_path: Path) -> None:
    """Files named against their time order (and given in reverse) still replay in time order."""
    late = _write_lines(tmp_path / "a.gz", [b"300 {}\n", b"400 {}\n"], compress=True)
    early = _write_lines(tmp_path / "b.txt", [b"100 {}\n", b"200 {}\n"])
    assert [f.ts_init for f in RecordingSource([tmp_path])] == [100, 200, 300, 400]
    assert [f.ts_init for f in RecordingSource([late, early])] == [100, 200, 300, 400]


def test_overlapping_files_are_merged_by_receive_time(tmp_path: Path) -> None:
    """Files that overlap in time interleave; on equal times the file that started first wins."""
    a = _write_lines(tmp_path / "a.txt", [b"1 a\n", b"3 a\n", b"5 a\n", b"9 a\n"])
    b = _write_lines(tmp_path / "b.txt", [b"2 b\n", b"5 b\n", b"6 b\n"])
    c = _write_lines(tmp_path / "c.txt", [b"10 c\n", b"11 c\n"])
    items = [(f.ts_init, f.data) for f in RecordingSource([c, b, a])]
    assert items == [
        (1, b"a"),
        (2, b"b"),
        (3, b"a"),
        (5, b"a"),
        (5, b"b"),
        (6, b"b"),
        (9, b"a"),
        (10, b"c"),
        (11, b"c"),
    ]


def test_large_overlapping_gzip_files_merge_in_order(tmp_path: Path) -> None:
    """Two interleaved multi-chunk gzip files merge into one sorted stream of all their frames."""
    a = _write_lines(tmp_path / "a.gz", _noisy_lines(0, 20_000, step=2), compress=True)
    b = _write_lines(tmp_path / "b.gz", _noisy_lines(15_001, 20_000, step=2), compress=True)
    times = [f.ts_init for f in RecordingSource([b, a])]
    assert len(times) == 40_000 and times == sorted(times)


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    """A line without a numeric timestamp stops the replay with `path:line: reason`."""
    path = _write_lines(
        tmp_path / "r.gz", [b"1 {}\n", b"abc {}\n", b"3 {}\n", b'{"e":1}\n'], compress=True
    )
    with pytest.raises(SourceError, match=rf"^{path}:2: non-numeric timestamp"):
        list(RecordingSource([path]))
    source = RecordingSource([path], skip_bad=True)
    assert [f.ts_init for f in source] == [1, 3]
    assert source.stats["bad_lines"] == 2 and source.stats["lines"] == 4


def test_timestamp_without_frame_is_malformed(tmp_path: Path) -> None:
    """A line holding only a timestamp is a bad line, not an empty frame."""
    path = _write_lines(tmp_path / "r.txt", [b"1 {}\n", b"2\n"])
    with pytest.raises(SourceError, match=rf"{path}:2: no frame after the timestamp"):
        list(RecordingSource([path]))


def test_crlf_line_ends_are_not_part_of_the_frame(tmp_path: Path) -> None:
    """A recording with Windows line ends yields the same frames as one with LF."""
    path = _write_lines(tmp_path / "r.txt", [b"1 {}\r\n", b"2 {}\r\n"])
    assert list(RecordingSource([path])) == [RawFrame(1, b"{}"), RawFrame(2, b"{}")]


def test_empty_lines_are_ignored(tmp_path: Path) -> None:
    """Blank lines are neither frames nor errors."""
    path = _write_lines(tmp_path / "r.txt", [b"\n", b"1 {}\n", b"\n", b"2 {}\n"])
    assert [f.ts_init for f in RecordingSource([path])] == [1, 2]


def test_gap_marker_round_trips(tmp_path: Path) -> None:
    """A Gap written with format_gap_marker between frames replays as the same Gap, in place."""
    gap = Gap("BTCUSDT", 1723161255208000000, 150, "agg_id", 10, 20)
    lines = [b"100 {}\n", format_gap_marker(gap), b"200 {}\n"]
    source = RecordingSource([_write_lines(tmp_path / "r.gz", lines, compress=True)])
    items = list(source)
    assert items == [RawFrame(100, b"{}"), gap, RawFrame(200, b"{}")]
    assert source.stats["markers"] == 1 and source.stats["frames"] == 2


def test_bad_gap_marker_is_malformed(tmp_path: Path) -> None:
    """A marker whose JSON lacks a field is a bad line naming the marker."""
    path = _write_lines(tmp_path / "r.txt", [b'5 #GAP {"symbol":"BTCUSDT","kind":"agg_id"}\n'])
    with pytest.raises(SourceError, match=rf"{path}:1: bad gap marker"):
        list(RecordingSource([path]))


def test_frames_containing_hash_are_frames(tmp_path: Path) -> None:
    """A `#` inside a frame (not a `#GAP` marker) leaves the frame intact."""
    path = _write_lines(tmp_path / "r.txt", [b'1 {"msg":"#1"}\n', b"2 #GAPS\n"])
    assert list(RecordingSource([path])) == [RawFrame(1, b'{"msg":"#1"}'), RawFrame(2, b"#GAPS")]


def test_appended_gzip_members_are_read(tmp_path: Path) -> None:
    """A recording reopened in append mode (two gzip members) reads as one file."""
    path = tmp_path / "r.gz"
    path.write_bytes(gzip.compress(b"1 {}\n") + gzip.compress(b"2 {}\n"))
    assert [f.ts_init for f in RecordingSource([path])] == [1, 2]


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    """A gzip file named .txt and a plain file named .gz both read."""
    zipped = _write_lines(tmp_path / "a.txt", [b"1 {}\n"], compress=True)
    plain = _write_lines(tmp_path / "b.gz", [b"2 {}\n"])
    assert [f.ts_init for f in RecordingSource([zipped, plain])] == [1, 2]
