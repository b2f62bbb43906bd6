"""Trace files: written and read back, and every kind of bad file is one clear error."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmemtrace import cli
from gmemtrace.events import EVENT_DTYPE, Kind, Probe, Tier
from gmemtrace.tracefile import (
    TraceFileError,
    TraceHeader,
    TraceWriter,
    collector_records,
    read_trace_file,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def header() -> TraceHeader:
    return TraceHeader("6.18.0", 1000, 1.5, {"host_fault": Probe(Tier.TRACEPOINT, "x")}, [42])


def events(n: int, kind: Kind = Kind.ALLOC) -> np.ndarray:
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["ts_ns"] = 2000 + np.arange(n)
    ev["kind"] = kind
    ev["ino"] = 7
    ev["first"] = np.arange(n)
    ev["count"] = 1
    ev["comm"] = b"qemu-system-x86"
    return ev


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    writer = TraceWriter(path, header())
    writer.write(events(10))
    writer.write(events(5, Kind.FREE))
    writer.close(collector_records(3, 0, 0, end=True))
    data = read_trace_file(path)
    assert data.complete and data.problem == ""
    assert data.header == header()
    assert data.lost_events == 3
    body = data.events[:15]
    assert body["first"].tolist() == list(range(10)) + list(range(5))
    assert set(body["comm"].tolist()) == {b"qemu-system-x86"}
    assert data.events["kind"][-1] == Kind.END


def test_files_are_private_and_never_follow_symlinks(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    TraceWriter(path, header()).close(collector_records(0, 0, 0, end=True))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    target = tmp_path / "victim"
    target.write_text("keep")
    link = tmp_path / "link.trace"
    link.symlink_to(target)
    with pytest.raises(cli.UsageError, match="cannot create"):
        TraceWriter(link, header())
    assert target.read_text() == "keep"


def test_cut_short_recording_reads_its_prefix(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    writer = TraceWriter(path, header())
    writer.write(events(10))
    writer.write(events(10))
    # The process dies here: no close, no end marker.
    data = read_trace_file(path)
    assert not data.complete
    assert "cut short" in data.problem
    assert data.events.size == 20


def test_every_truncation_reads_a_prefix_or_fails_cleanly(tmp_path: Path) -> None:
    whole = tmp_path / "whole.trace"
    writer = TraceWriter(whole, header())
    for _ in range(3):
        writer.write(events(4))
    writer.close(collector_records(0, 0, 0, end=True))
    raw = whole.read_bytes()
    cut = tmp_path / "cut.trace"
    sizes = set()
    for n in range(len(raw)):
        cut.write_bytes(raw[:n])
        try:
            data = read_trace_file(cut)
        except TraceFileError:
            continue  # too short to hold even the header: one clear error
        if data.complete:  # only Arrow's end-of-stream marker was cut: nothing is missing
            assert n >= len(raw) - 8 and data.events.size == 14
            continue
        assert data.events.size in (0, 4, 8, 12, 14)
        assert data.events.size < 14 or n >= len(raw) - 8  # all there, the stream end cut
        sizes.add(data.events.size)
    assert sizes >= {0, 4, 8}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no Arrow stream header"),
        (b"hello, not a trace at all\n" * 10, "no Arrow stream header"),
    ],
)
def test_not_a_trace_is_one_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.trace"
    path.write_bytes(content)
    with pytest.raises(TraceFileError, match=message):
        read_trace_file(path)


def test_newer_format_version_is_refused_with_advice(tmp_path: Path) -> None:
    import pyarrow as pa

    path = tmp_path / "new.trace"
    doc = {**json.loads(header().to_metadata()[b"gmemtrace"]), "version": 99}
    schema = pa.schema([("x", pa.int8())], metadata={b"gmemtrace": json.dumps(doc).encode()})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema):
        pass
    with pytest.raises(TraceFileError, match="version 99 is newer"):
        read_trace_file(path)


def test_missing_file_via_cli_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path / "nope.trace")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmemtrace: error: cannot open") and err.count("\n") == 1


def test_damaged_bytes_never_raise_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = bytearray((DATA / "mixed.trace").read_bytes())
    for position in range(0, len(raw), max(1, len(raw) // 64)):
        flipped = bytearray(raw)
        flipped[position] ^= 0xFF
        path = tmp_path / "flipped.trace"
        path.write_bytes(bytes(flipped))
        code = cli.main(["report", str(path), "--format", "json"])
        assert code in (0, 2)
    capsys.readouterr()
    os.sync()


# Deterministic in make test (CI must not fail at random); explore more with
# a larger max_examples and derandomize=False by hand.
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.binary(max_size=4096), st.integers(0, 20000))
def test_fuzzed_files_read_or_fail_with_one_clear_error(junk: bytes, cut: int) -> None:
    """Random bytes, and a real trace with random bytes spliced in: never a traceback."""
    import tempfile

    raw = (DATA / "mixed.trace").read_bytes()
    for content in (junk, raw[:cut] + junk + raw[cut + len(junk) :]):
        with tempfile.NamedTemporaryFile(suffix=".trace") as f:
            f.write(content)
            f.flush()
            try:
                data = read_trace_file(Path(f.name))
            except TraceFileError as err:
                assert str(err) and "\n" not in str(err)
            else:
                assert data.events.dtype == EVENT_DTYPE


def test_infinite_numbers_in_metadata_are_damage(tmp_path: Path) -> None:
    import pyarrow as pa

    doc = {**json.loads(header().to_metadata()[b"gmemtrace"]), "start_ns": float("inf")}
    path = tmp_path / "inf.trace"
    schema = pa.schema([("x", pa.int8())], metadata={b"gmemtrace": json.dumps(doc).encode()})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema):
        pass
    with pytest.raises(TraceFileError, match="trace metadata is damaged"):
        read_trace_file(path)
