"""The trace file: an Arrow IPC stream of event batches with self-describing metadata.

Arrow's stream format, not Parquet: every batch is complete on its own, so a
recording cut short by a crash, a signal or a full disk still reads up to its
last flushed batch (Parquet needs its footer). The schema metadata says what
was traced; an END event marks a recording that finished cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gmemtrace.errors import GmemtraceError, UsageError
from gmemtrace.events import EVENT_DTYPE, Kind, Probe, make_events

FORMAT = "gmemtrace-trace"
VERSION = 1

if TYPE_CHECKING:
    import pyarrow as pa


def _pa() -> Any:
    """pyarrow, loaded by the first trace file written or read (about 40 MB resident: an
    exporter that writes none never pays it)."""
    import pyarrow

    return pyarrow


def schema_fields() -> list[pa.Field]:
    pa = _pa()
    return [
        pa.field(name, pa.binary(16) if name == "comm" else pa.from_numpy_dtype(EVENT_DTYPE[name]))
        for name in EVENT_DTYPE.names or ()
    ]


class TraceFileError(UsageError):
    """A trace file that cannot be read (exit code 2, like any bad input)."""


class TraceWriteError(GmemtraceError):
    """The recording could not be written (a full disk, a vanished mount): exit code 1."""


@dataclass
class TraceHeader:
    kernel: str
    start_ns: int  # CLOCK_MONOTONIC, the clock of every event
    start_unix: float
    probes: dict[str, Probe]  # event -> the probe that served it
    targets: list[int]
    command: list[str] = field(default_factory=list)

    def to_metadata(self) -> dict[bytes, bytes]:
        probes = {event: str(probe) for event, probe in self.probes.items()}
        doc = {"format": FORMAT, "version": VERSION, **self.__dict__, "probes": probes}
        return {b"gmemtrace": json.dumps(doc).encode()}

    @classmethod
    def from_metadata(cls, metadata: dict[bytes, bytes] | None) -> TraceHeader:
        try:
            doc = json.loads((metadata or {})[b"gmemtrace"])
        except (KeyError, ValueError):
            raise TraceFileError("not a gmemtrace trace (no gmemtrace metadata)") from None
        if doc.get("format") != FORMAT:
            raise TraceFileError("not a gmemtrace trace (wrong format name)")
        if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
            raise TraceFileError(
                f"trace format version {doc.get('version')} is newer than this gmemtrace "
                f"reads ({VERSION}); upgrade gmemtrace"
            )
        try:
            return cls(
                str(doc["kernel"]),
                int(doc["start_ns"]),
                float(doc["start_unix"]),
                {str(event): Probe.parse(str(p)) for event, p in doc["probes"].items()},
                [int(p) for p in doc["targets"]],
                list(doc.get("command", [])),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise TraceFileError(f"trace metadata is damaged ({err})") from None


def open_exclusive(path: Path) -> int:
    """Create the file 0600 (it reveals guest memory layout), never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except OSError as err:
        raise UsageError(f"cannot create {path}: {err.strerror}") from None


class TraceWriter:
    """Appends event batches; each `write` is one self-contained, flushed Arrow batch."""

    def __init__(self, path: Path, header: TraceHeader) -> None:
        self.path = path
        fd = open_exclusive(path)
        if stat.S_ISREG(os.fstat(fd).st_mode):  # never chmod a device such as /dev/null
            os.fchmod(fd, 0o600)  # O_TRUNC of an existing file keeps its old mode
        self._file = os.fdopen(fd, "wb")
        pa = _pa()
        self._schema = pa.schema(schema_fields(), metadata=header.to_metadata())
        self._writer = pa.ipc.new_stream(self._file, self._schema)
        self._file.flush()  # the header alone already makes a readable (empty) trace
        self.events_written = 0

    def write(self, events: np.ndarray) -> None:
        if events.size == 0:
            return
        arrays = [_column(events, name) for name in EVENT_DTYPE.names or ()]
        pa = _pa()
        try:
            self._writer.write_batch(pa.record_batch(arrays, schema=self._schema))
            self._file.flush()
        except (OSError, pa.ArrowException) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise TraceWriteError(
                f"writing {self.path} failed ({reason}); it holds the first "
                f"{self.events_written} events, readable, marked as cut short"
            ) from None
        self.events_written += events.size

    def abandon(self) -> None:
        """Stop after a write error: close without an end marker (the file says so)."""
        with contextlib.suppress(OSError):
            self._file.close()

    def close(self, tail: np.ndarray) -> None:
        """Write the recording's tail (collector_records()) and close the file."""
        self.write(tail)
        self._writer.close()
        self._file.close()


def collector_records(
    lost: int, refused: int, since_ns: int, end: bool = False, at_ns: int | None = None
) -> np.ndarray:
    """The collector's own records, at `at_ns` (now by default): the lost-event count so far
    (`refused`: of those, lost though the ring had room; `since_ns`: since when the latest
    went) and, with `end`, the END record of a clean stop, whose time closes the recording's
    window. A recording's tail is both."""
    me = {"ts_ns": at_ns or time.monotonic_ns(), "pid": os.getpid(), "tid": os.getpid()}
    records = [me | {"kind": Kind.LOST, "lost_total": lost, "refused_total": refused,
                     "since_ns": since_ns}]  # fmt: skip
    if end:
        records.append(me | {"kind": Kind.END})
    return make_events(*records)


def _column(events: np.ndarray, name: str) -> pa.Array:
    pa = _pa()
    if name == "comm":  # fixed width: numpy's S16 would drop trailing NUL bytes
        raw = np.ascontiguousarray(events["comm"]).view(np.uint8).tobytes()
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), len(events), [None, pa.py_buffer(raw)]
        )
    return pa.array(np.ascontiguousarray(events[name]))


@dataclass
class TraceData:
    header: TraceHeader
    events: np.ndarray
    complete: bool  # every batch read and the recording ended cleanly
    problem: str = ""  # why not complete

    @property
    def lost_events(self) -> int:
        lost = self.events["count"][self.events["kind"] == Kind.LOST]
        return int(lost.max()) if lost.size else 0


def read_trace_file(path: Path) -> TraceData:
    """Every readable event of a trace; a damaged tail is reported, not raised."""
    pa = _pa()
    try:
        source = pa.OSFile(str(path), "rb")
    except (OSError, pa.ArrowException) as err:
        raise TraceFileError(
            f"cannot open {path}: {getattr(err, 'strerror', None) or err}"
        ) from None
    with source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, pa.ArrowException, OSError):
            raise TraceFileError(
                f"{path} is not a gmemtrace trace (no Arrow stream header)"
            ) from None
        header = TraceHeader.from_metadata(reader.schema.metadata)
        if not reader.schema.remove_metadata().equals(pa.schema(schema_fields())):
            raise TraceFileError(f"{path}: not the columns and types of a gmemtrace trace")
        batches: list[Any] = []  # pyarrow RecordBatches
        problem = ""
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, pa.ArrowException, OSError) as err:
                problem = (
                    f"truncated or damaged after {sum(len(b) for b in batches)} events ({err})"
                )
                break
            if any(column.null_count for column in batch.columns):  # never written so
                problem = f"damaged after {sum(len(b) for b in batches)} events (null values)"
                break
            batches.append(batch)
    events = np.empty(sum(len(b) for b in batches), dtype=EVENT_DTYPE)
    at = 0
    for batch in batches:
        n = len(batch)
        for name in EVENT_DTYPE.names or ():
            column = batch.column(name)
            events[name][at : at + n] = column.to_numpy(zero_copy_only=False)
        at += n
    ended = bool(np.any(events["kind"] == Kind.END))
    if not problem and not ended:
        problem = "the recording was cut short (no end marker)"
    return TraceData(header, events, complete=not problem, problem=problem)
