"""Fault attribution follows mappings as they move and shrink (traced in this process)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gmemtrace.events import Kind
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED
from gmemtrace.kernel.kvm import GUEST_MEMFD_FLAG_MMAP as MMAP
from gmemtrace.kernel.kvm import PAGE_SIZE
from gmemtrace.model.state import Model
from gmemtrace.probes.program import ProbeProgram
from gmemtrace.probes.vmas import blocks
from gmemtrace.tracer import load
from gmemtrace.workload import Workload
from gmemtrace.workload.scenarios import Params, mixed

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]


@pytest.fixture
def source() -> Iterator[ProbeProgram]:
    src = load().source([os.getpid()])
    yield src
    src.close()


def trie_blocks(src: ProbeProgram, asid: int) -> set[tuple[int, int]]:
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


def test_kernel_trie_holds_exactly_the_canonical_blocks(source: ProbeProgram) -> None:
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


def test_faults_follow_mremap_and_partial_munmap(source: ProbeProgram) -> None:
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


def test_a_new_mapping_where_an_old_one_was_is_attributed_to_its_own_inode(
    source: ProbeProgram,
) -> None:
    """Each CPU caches the last mapping it resolved a fault in; an unmap must void it."""
    wl = Workload("reuse")
    try:
        old = wl.guest_memfd(16, MMAP | INIT_SHARED)
        old_map = wl.map(old)
        wl.host_touch(old_map, 0, 4)
        where = old_map.addr
        wl.unmap_pages(old_map, 0, 16)
        new = wl.guest_memfd(16, MMAP | INIT_SHARED)
        new_map = wl.map(new)
        assert new_map.addr == where, "the kernel put the new mapping elsewhere"
        wl.host_touch(new_map, 0, 4)
        events = source.poll()
    finally:
        wl.close()
    assert faults_by_page(events, old.ino) == dict.fromkeys(range(4), 1)
    assert faults_by_page(events, new.ino) == dict.fromkeys(range(4), 1)


def test_conversion_and_punch_latencies_land_in_the_histograms(
    source: ProbeProgram,
) -> None:
    """One histogram, the model's, from the latencies the events carry."""
    wl = Workload("latency")
    try:
        gmem = wl.guest_memfd(16, MMAP | INIT_SHARED)
        wl.fallocate(gmem, 0, 4)
        wl.punch(gmem, 0, 4)
        wl.convert(gmem, 0, 2, to_private=True)
    finally:
        wl.close()
    model = Model()
    model.apply(source.poll())
    histograms = model.latency
    assert sum(histograms["punch"].values()) == 1
    assert sum(histograms["fallocate"].values()) == 1
    assert sum(histograms["convert"].values()) == 1  # one interface: the range is unbound
    assert all(0 < slot < 40 for h in histograms.values() for slot in h)


def faulted_pages(model: Model, ino: int) -> set[int]:
    return {p for f, e, ns in model.inodes[ino].last_fault_ns.runs() if ns for p in range(f, e)}


HOT = (Kind.HOST_FAULT, Kind.ALLOC, Kind.FREE, Kind.GUEST_FAULT)


def test_counting_tells_the_model_what_one_record_per_event_does() -> None:
    """The live view's mode (counted in the kernel) and a recording's (one record per
    event), attached side by side to the same real work, leave the model in the same
    state; the counting side puts no hot event in the ring buffer, whatever the order."""
    # Both loaded before either traces this process: the second load's loader child is not
    # a descendant only the first one saw.
    streamed = load().source([])
    counted = load().source([], stream_hot=False)
    for source in (streamed, counted):
        source.add_targets([os.getpid()])
    wl = Workload("counted")
    try:
        gmem = wl.guest_memfd(256, MMAP | INIT_SHARED)
        host = wl.map(gmem)
        wl.host_touch(host, 0, 16)
        first = counted.poll()
        mixed(wl, Params())  # this thread enters and leaves KVM_RUN (guest faults)
        wl.host_touch(host, 16, 16)  # allocations outside KVM_RUN again: not guest faults
        wl.host_touch(host, 32, 200, "random")
        wl.punch(gmem, 40, 100)
        wl.host_touch(host, 60, 30, "random")
        events = {"streamed": streamed.poll(), "counted": np.concatenate([first, counted.poll()])}
        truth = {ino: dict(t.counts) for ino, t in wl.truth.items()}  # before close frees
    finally:
        wl.close()
        streamed.close()
        counted.close()
    faults = first[(first["kind"] == Kind.COUNTED) & (first["arg"] == Kind.HOST_FAULT)]
    assert faults[["ino", "count"]].tolist() == [(gmem.ino, 16)]
    assert not np.isin(events["counted"]["kind"], HOT).any(), "no hot event in the ring"
    models = {name: Model() for name in events}
    for name, batch in events.items():
        models[name].apply(batch)
    a, b = models["streamed"], models["counted"]
    assert a.inodes.keys() == b.inodes.keys() and len(a.inodes) == 4
    for ino, state in a.inodes.items():
        assert b.inodes[ino].counts == state.counts
        assert list(b.inodes[ino].resident.runs()) == list(state.resident.runs())
        assert list(b.inodes[ino].shareability.runs()) == list(state.shareability.runs())
        assert faulted_pages(b, ino) == faulted_pages(a, ino)
        assert state.counts == truth[ino]
    assert b.per_thread == a.per_thread
    assert b.events_applied == a.events_applied, "a count stands for its events"
    assert [r.page for r in b.refused] == [r.page for r in a.refused] != []


def test_counting_fills_no_ring_whatever_the_order() -> None:
    """One page of ring buffer (46 records), not drained while 3,000 pages are faulted
    in random order and allocated: counted in the kernel, none is lost; read once,
    every count is exact."""
    src = load(ringbuf_pages=1).source([os.getpid()], stream_hot=False)
    wl = Workload("random-counted")
    try:
        gmem = wl.guest_memfd(3000, MMAP | INIT_SHARED)
        host = wl.map(gmem)
        wl.host_touch(host, 0, 3000, "random")
        wl.host_touch(host, 0, 3000, "random")  # mapped already: faults without allocation
        events = src.poll()
        lost = src.lost()
        truth = dict(wl.truth[gmem.ino].counts)
    finally:
        wl.close()
        src.close()
    model = Model()
    model.apply(events)
    counts = model.inodes[gmem.ino].counts
    assert lost == 0
    assert (counts["host_faults"], counts["pages_allocated"]) == (3000, 3000) == (
        truth["host_faults"], truth["pages_allocated"])  # fmt: skip
    assert list(model.inodes[gmem.ino].resident.runs()) == [(0, 3000, True)]


def test_overflow_with_a_slow_consumer_is_counted_stored_and_marked(tmp_path: Path) -> None:
    from gmemtrace.collector import Collector
    from gmemtrace.report import build_report, report_file
    from gmemtrace.tracefile import TraceHeader, TraceWriter

    # One page of ring buffer (46 records) and a consumer that does not poll
    # while 2,000 pages are faulted in: most events cannot be kept.
    src = load(ringbuf_pages=1).source([os.getpid()])
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


@pytest.mark.parametrize("pattern", ["sequential", "random"])
def test_reads_landing_mid_storm_lose_and_double_nothing(tmp_path: Path, pattern: str) -> None:
    """The counts and page bits are read while the storm's programs update them, on
    every CPU, a thousand times a second: what the model adds up is exact."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from gmemtrace.kernel.procfs import gmem_mappings
    from tests.tracing import wait_until

    truth_path = tmp_path / "truth.json"
    workload = subprocess.Popen(
        [
            *(sys.executable, "-m", "gmemtrace", "workload", "fault-storm"),
            *("--pages", "4096", "--rounds", "12", "--pattern", pattern),
            *("--wait-signal", "--quiet"),
            *("-o", str(truth_path)),
        ]
    )
    wait_until(lambda: gmem_mappings(workload.pid), "the storm mapped its memory")
    src = load().source([workload.pid], stream_hot=False)
    batches, reads = [], 0
    try:
        os.kill(workload.pid, signal.SIGUSR1)
        while workload.poll() is None:
            batches.append(src.poll())
            reads += 1
            time.sleep(0.001)
        batches.append(src.poll())
        lost = src.lost()
    finally:
        src.close()
    model = Model()
    for batch in batches:
        model.apply(batch)
    (truth,) = json.loads(truth_path.read_text())["inodes"]
    counts = model.inodes[truth["ino"]].counts
    assert lost == 0 and reads > 50
    assert {k: counts[k] for k in truth["counts"]} == truth["counts"]
