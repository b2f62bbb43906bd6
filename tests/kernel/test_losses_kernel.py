"""Every event accounted for: while the ring buffer has room, nothing is lost, at the
rates of a fault storm on both vCPUs, recording or counting in the kernel;
a consumer that stalls loses events, counted as "ring full".

The ring is the tools' (64 MiB): the producer laps it after a few seconds of storm, and
from then on the loss this guards against (the collector's byte-wise store of the
consumer position, read halfway by a reservation as 0) showed a few times a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gmemtrace.kernel.procfs import gmem_mappings
from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED
from gmemtrace.kernel.uapi import GUEST_MEMFD_FLAG_MMAP as MMAP
from gmemtrace.model.state import Model
from gmemtrace.tracer import load
from gmemtrace.workload import Workload
from tests.tracing import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_ready")]

PAGES, ROUNDS, RATE = 4096, 120, 20000  # each storm: about 25 s, 491,520 host faults
# Room for both storms whole (about 1M records of 88 bytes): the ring has room even when a
# busy machine starves the consumer, so any loss is one with room, the bug this hunts.
ROOMY_RING = 32768  # pages: 128 MiB


def storm(pattern: str, truth: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gmemtrace", "workload", "fault-storm",
         "--pages", str(PAGES), "--rounds", str(ROUNDS), "--rate", str(RATE),
         "--pattern", pattern, "--wait-signal", "-q", "-o", str(truth)],
    )  # fmt: skip


@pytest.mark.parametrize("stream_hot", [True, False], ids=["record", "counting"])
def test_nothing_is_lost_while_the_ring_has_room(tmp_path: Path, stream_hot: bool) -> None:
    source = load(ringbuf_pages=ROOMY_RING).source([], stream_hot)
    truths = {p: tmp_path / f"{p}.json" for p in ("random", "sequential")}
    storms = [storm(p, t) for p, t in truths.items()]
    model = Model()
    try:
        for s in storms:
            wait_until(lambda s=s: gmem_mappings(s.pid) or s.poll() is not None, "a mapping")
            assert s.poll() is None, "the storm ended before mapping its memory"
        source.add_targets([s.pid for s in storms])
        for s in storms:
            os.kill(s.pid, signal.SIGUSR1)
        while any(s.poll() is None for s in storms):
            model.apply(source.poll())
            time.sleep(0.02)
        model.apply(source.poll())
        lost, refused = source.lost(), source.lost_refused()
    finally:
        for s in storms:
            s.kill() if s.poll() is None else None
            s.wait()
        source.close()
    assert (lost, refused) == (0, 0)
    for truth_path in truths.values():
        (inode,) = json.loads(truth_path.read_text())["inodes"]
        assert model.inodes[inode["ino"]].counts["host_faults"] == PAGES * ROUNDS


def test_a_stalled_consumer_loses_events_counted_as_ring_full() -> None:
    source = load(ringbuf_pages=1).source([os.getpid()])
    wl = Workload("stalled")
    try:
        host = wl.map(wl.guest_memfd(2000, MMAP | INIT_SHARED))
        wl.host_touch(host, 0, 2000)  # 4,000 events into a ring of 46 records, not drained
        lost, refused = source.lost(), source.lost_refused()
    finally:
        wl.close()
        source.close()
    assert lost > 3000 and refused == 0
