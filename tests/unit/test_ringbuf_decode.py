"""Decoding framed ring-buffer records in bulk, as the kernel lays them out."""

import re

import numpy as np
import pytest

from gmemtrace.errors import GmemtraceError
from gmemtrace.events import EVENT_DTYPE, FIELDS, Kind, c_event_size, make_events
from gmemtrace.paths import bpf_source
from gmemtrace.probes.ringbuf import BUSY_BIT, DISCARD_BIT, decode, framed_dtype

FRAMED = framed_dtype(EVENT_DTYPE)


def frames(lengths: list[int]) -> np.ndarray:
    buf = np.zeros(len(lengths), dtype=FRAMED)
    buf["len"] = lengths
    buf["event"]["kind"] = Kind.ALLOC
    buf["event"]["first"] = np.arange(len(lengths))
    return buf


def test_c_header_and_python_layout_agree() -> None:
    assert EVENT_DTYPE.itemsize == c_event_size() == 80
    assert FRAMED.itemsize == 88  # 8-byte header + 80, already 8-aligned


def test_all_committed_records_decode_in_order() -> None:
    size = EVENT_DTYPE.itemsize
    events, consumed = decode(frames([size] * 5).tobytes(), 0, 5, FRAMED)
    assert consumed == 5
    assert events["first"].tolist() == [0, 1, 2, 3, 4]


def test_decoding_stops_at_a_record_still_being_written() -> None:
    size = EVENT_DTYPE.itemsize
    buf = frames([size, size, size | BUSY_BIT, size]).tobytes()
    events, consumed = decode(buf, 0, 4, FRAMED)
    assert consumed == 2
    assert events["first"].tolist() == [0, 1]


def test_discarded_records_are_consumed_but_not_returned() -> None:
    size = EVENT_DTYPE.itemsize
    events, consumed = decode(frames([size, size | DISCARD_BIT, size]).tobytes(), 0, 3, FRAMED)
    assert consumed == 3
    assert events["first"].tolist() == [0, 2]


def test_a_foreign_record_size_is_an_error_not_garbage() -> None:
    with pytest.raises(GmemtraceError, match="unexpected size"):
        decode(frames([EVENT_DTYPE.itemsize, 24]).tobytes(), 0, 2, FRAMED)


def test_offset_into_the_data_area() -> None:
    size = EVENT_DTYPE.itemsize
    buf = b"\xff" * 4096 + frames([size] * 3).tobytes()
    events, consumed = decode(buf, 4096, 3, FRAMED)
    assert (consumed, events["first"].tolist()) == (3, [0, 1, 2])


def test_the_c_header_names_each_kinds_fields_as_the_table_does() -> None:
    """bpf/gmem_event.h says beside each kind what its generic fields hold ("arg = gpa");
    events.FIELDS is the table Python reads them by: the two must say the same."""
    header = bpf_source("gmem_event.h").read_text()
    comments = {
        name: " ".join(text.split())
        for name, text in re.findall(r"EV_(\w+) = \d+,\s*/\*(.*?)\*/", header, re.DOTALL)
    }
    for kind, fields in FIELDS.items():
        said = comments[kind.name]
        for name, column_name in fields.items():
            assert f"{column_name} = {name}" in said, (kind.name, name, said)


def test_records_are_built_by_name() -> None:
    (lost,) = make_events({"kind": Kind.LOST, "ts_ns": 5, "lost_total": 7, "since_ns": 3})
    assert (lost["count"], lost["arg"], lost["ts_ns"]) == (7, 3, 5)
    with pytest.raises(KeyError):
        make_events({"kind": Kind.BIND, "latency_ns": 1})
