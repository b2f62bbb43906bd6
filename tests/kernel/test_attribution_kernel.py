"""Fault attribution follows mappings as they move and shrink (traced in this process)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gmemtrace.events import Kind
from gmemtrace.kernel import headers
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_MMAP as MMAP
from gmemtrace.kernel.kvm import PAGE_SIZE
from gmemtrace.probes.tracepoints import TracepointSource
from gmemtrace.probes.vmas import blocks
from gmemtrace.workload import Workload

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]


@pytest.fixture
def source() -> Iterator[TracepointSource]:
    src = TracepointSource(headers.resolve(), Btf.load(), pids=[os.getpid()])
    yield src
    src.close()


def trie_blocks(src: TracepointSource, asid: int) -> set[tuple[int, int]]:
    out = set()
    for key, _ in src.bpf[b"gmem_vmas"].items():
        if int.from_bytes(key.asid_be.to_bytes(4, "little"), "big") == asid:
            addr = int.from_bytes(key.addr_be.to_bytes(8, "little"), "big")
            out.add((addr, 96 - key.prefixlen))
    return out


def faults_by_page(events: np.ndarray, ino: int) -> dict[int, int]:
    chosen = events[(events["kind"] == Kind.HOST_FAULT) & (events["ino"] == ino)]
    pages, counts = np.unique(chosen["first"], return_counts=True)
    return dict(zip(pages.tolist(), counts.tolist(), strict=True))


def test_kernel_trie_holds_exactly_the_canonical_blocks(source: TracepointSource) -> None:
    wl = Workload("trie")
    try:
        gmem = wl.guest_memfd(48, MMAP | INIT_SHARED)
        mapping = wl.map(gmem, 3, 37)
        expected = set(blocks(mapping.addr, mapping.addr + 37 * PAGE_SIZE))
        assert trie_blocks(source, os.getpid()) == expected
        wl.unmap_pages(mapping, 3, 5)  # cut the front: the kernel puts back the rest
        assert trie_blocks(source, os.getpid()) == set(
            blocks(mapping.addr, mapping.addr + 32 * PAGE_SIZE)
        )
    finally:
        wl.close()
    assert trie_blocks(source, os.getpid()) == set(), "munmap at close removed every block"


def test_faults_follow_mremap_and_partial_munmap(source: TracepointSource) -> None:
    wl = Workload("remap")
    try:
        gmem = wl.guest_memfd(64, MMAP | INIT_SHARED)
        mapping = wl.map(gmem, 16, 32)  # pages 16..47
        wl.host_touch(mapping, 16, 8)
        wl.move(mapping)
        wl.host_touch(mapping, 16, 16)  # 16..23 moved with their PTEs: only 24..31 fault
        wl.unmap_pages(mapping, 40, 8)  # drop the tail 40..47
        wl.host_touch(mapping, 32, 8)  # 32..39 still mapped: they fault, attributed
        events = source.poll()
    finally:
        wl.close()
    got = faults_by_page(events, gmem.ino)
    assert got == dict.fromkeys(range(16, 40), 1)
    assert wl.truth[gmem.ino].counts["host_faults"] == 24


def test_conversion_and_punch_latencies_land_in_kernel_histograms(
    source: TracepointSource,
) -> None:
    wl = Workload("latency")
    try:
        gmem = wl.guest_memfd(16, MMAP | INIT_SHARED)
        wl.fallocate(gmem, 0, 4)
        wl.punch(gmem, 0, 4)
        wl.convert(gmem, 0, 2, to_private=True)
    finally:
        wl.close()
    histograms = source.latency_histograms()
    assert sum(histograms["punch"].values()) == 1
    assert sum(histograms["fallocate"].values()) == 1
    assert sum(histograms["convert"].values()) == 1  # one interface: the range is unbound
    assert all(0 < slot < 40 for h in histograms.values() for slot in h)


def test_aggregated_mode_counts_in_the_kernel_per_inode_and_page() -> None:
    src = TracepointSource(headers.resolve(), Btf.load(), pids=[os.getpid()], stream_hot=False)
    wl = Workload("aggregated")
    try:
        shared = wl.guest_memfd(32, MMAP | INIT_SHARED)
        host = wl.map(shared)
        wl.host_touch(host, 0, 16)
        wl.zap(host, 4, 4)
        wl.host_touch(host, 0, 8)  # pages 4..7 fault a second time
        wl.punch(shared, 0, 2)
        private = wl.guest_memfd(4, MMAP)
        wl.touch_in_child(wl.map(private), 1)
        streamed = src.poll()
        counters = src.inode_counters()
        pages = src.page_fault_counts()
    finally:
        wl.close()
        src.close()
    hot = (Kind.HOST_FAULT, Kind.ALLOC, Kind.FREE, Kind.GUEST_FAULT)
    assert not np.isin(streamed["kind"], hot).any(), "nothing hot was streamed"
    truth = wl.truth[shared.ino].counts
    assert counters[shared.ino]["host_faults"] == truth["host_faults"] == 20
    assert counters[shared.ino]["pages_allocated"] == 16
    assert counters[shared.ino]["pages_freed"] == 2
    assert pages[shared.ino] == {p: 2 if 4 <= p < 8 else 1 for p in range(16)}
    assert counters[private.ino]["host_faults_refused"] == 1
    assert counters[private.ino]["host_faults"] == 0 and private.ino not in pages


def test_overflow_with_a_slow_consumer_is_counted_stored_and_marked(tmp_path: Path) -> None:
    from gmemtrace.collector import Collector
    from gmemtrace.report import build_report, report_file
    from gmemtrace.tracefile import TraceHeader, TraceWriter

    # One page of ring buffer (46 records) and a consumer that does not poll
    # while 2,000 pages are faulted in: most events cannot be kept.
    src = TracepointSource(headers.resolve(), Btf.load(), pids=[os.getpid()], ringbuf_pages=1)
    path = tmp_path / "lossy.trace"
    header = TraceHeader("test", 0, 0.0, {}, [os.getpid()])
    collector = Collector(src, writer=TraceWriter(path, header))
    collector.pump()
    wl = Workload("overflow")
    try:
        gmem = wl.guest_memfd(2000, MMAP | INIT_SHARED)
        wl.host_touch(wl.map(gmem), 0, 2000)
        collector.pump()
    finally:
        wl.close()
        collector.pump()
        lost = src.lost()
        collector.finish()
    assert lost > 1000
    model = collector.model
    assert model.lost_events == lost
    assert model.lost_windows and sum(n for *_, n in model.lost_windows) == lost
    seen = model.inodes[gmem.ino].counts["host_faults"]
    assert seen + lost >= 2000 > seen, "what arrived plus what was lost covers the storm"
    report = report_file(path)
    assert report["trace"]["lost_events"] == lost
    assert (
        report["trace"]["lost_windows"]
        == build_report(model, "test", {}, 0)["trace"]["lost_windows"]
    )
