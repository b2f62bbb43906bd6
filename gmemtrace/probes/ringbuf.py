"""Bulk reader of a BPF ring buffer of fixed-size records, mmapped straight from the kernel.

bcc's ring buffer API calls Python once per record; at hundreds of thousands of
faults a second that is the bottleneck. Every gmemtrace record has the same
size, so the committed part of the buffer is an array: one numpy view decodes
it all, and one store hands the space back to the kernel.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np

from gmemtrace.errors import GmemtraceError

PAGE = mmap.PAGESIZE
RINGBUF_HDR = 8  # struct bpf_ringbuf_hdr { u32 len; u32 pg_off; }
BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
LENGTH_MASK = DISCARD_BIT - 1


def framed_dtype(record: np.dtype) -> np.dtype:
    """A ring buffer record: its 8-byte header, then the event, padded to 8 bytes."""
    stride = (RINGBUF_HDR + record.itemsize + 7) & ~7
    return np.dtype(
        {
            "names": ["len", "event"],
            "formats": ["<u4", record],
            "offsets": [0, RINGBUF_HDR],
            "itemsize": stride,
        }
    )


def decode(buffer: object, offset: int, available: int, framed: np.dtype) -> tuple[np.ndarray, int]:
    """(committed events, records consumed) from `available` framed records at `offset`.

    Stops at the first record still being written (busy bit); skips discarded ones.
    """
    if available <= 0:
        return np.empty(0, dtype=framed["event"]), 0
    records = np.frombuffer(buffer, dtype=framed, count=available, offset=offset)  # type: ignore[call-overload]
    lengths = records["len"]
    busy = np.flatnonzero(lengths & BUSY_BIT)
    ready = int(busy[0]) if busy.size else available
    committed = lengths[:ready]
    if np.any((committed & LENGTH_MASK) != framed["event"].itemsize):
        raise GmemtraceError("ring buffer holds a record of unexpected size")
    events: np.ndarray = records["event"][:ready][(committed & DISCARD_BIT) == 0].copy()
    return events, ready


class RingReader:
    """Drains a BPF_MAP_TYPE_RINGBUF whose records are all `record.itemsize` bytes."""

    def __init__(self, map_fd: int, size: int, record: np.dtype) -> None:
        if size & (size - 1) or size % PAGE:
            raise ValueError(f"ring buffer size {size} is not a power-of-two number of pages")
        self.size = size
        self.mask = size - 1
        self.record = record
        self._framed = framed_dtype(record)
        self.stride = self._framed.itemsize
        self._consumer = mmap.mmap(map_fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        # The producer page, then the data pages mapped twice so that a record
        # (or a run of them) that wraps around reads as one contiguous span.
        self._producer = mmap.mmap(
            map_fd, PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE
        )
        # The positions are read and written whole, in one aligned 8-byte access each, as
        # the kernel does. struct.pack_into() stores a byte at a time: a reservation that
        # read the consumer position halfway through saw the ring full and was refused.
        self._consumer_pos = ctypes.c_uint64.from_buffer(self._consumer)
        self._producer_pos = np.frombuffer(self._producer, dtype="<u8", count=1)

    def _positions(self) -> tuple[int, int]:
        return int(self._consumer_pos.value), int(self._producer_pos[0])

    def drain(self, limit: int | None = None) -> np.ndarray:
        """Every committed record, oldest first, as an array of `record` (a copy)."""
        consumer, producer = self._positions()
        available = (producer - consumer) // self.stride
        if limit is not None:
            available = min(available, limit)
        events, consumed = decode(
            self._producer, PAGE + (consumer & self.mask), available, self._framed
        )
        self._consumer_pos.value = consumer + consumed * self.stride
        return events

    def close(self) -> None:
        del self._consumer_pos, self._producer_pos  # views first: mmaps with exports won't close
        self._consumer.close()
        self._producer.close()
