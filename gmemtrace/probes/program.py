"""The probes: bpf/gmem_tracepoints.c, with the function tier's programs (bpf/gmem_functions.c)
compiled in for the events the plan gave them, loaded as one program and drained as event
batches."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Any

import numpy as np

from gmemtrace.events import DISCOVERED, EVENT_DTYPE, Kind, PageState, make_events
from gmemtrace.kernel import kvm
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.offsets import offset_defines
from gmemtrace.kernel.procfs import (
    GmemMapping,
    comm_of,
    descendants,
    gmem_files,
    gmem_mappings,
)
from gmemtrace.probes.functions import function_defines
from gmemtrace.probes.plan import KVM_PAGE_FAULT
from gmemtrace.probes.ringbuf import RingReader
from gmemtrace.probes.vmas import blocks

SOURCES = ("gmem_common.h", "gmem_shared.c", "gmem_tracepoints.c", "gmem_functions.c")
# What the tracer uses of the loaded program: these maps (the loader child hands over
# exactly these: gmemtrace/probes/loader.py).
MAPS = (
    *("events", "config", "targets", "gmem_inodes", "gmem_vmas", "lost"),
    *("hot_counts", "fault_runs", "page_blocks", "read_gen"),
)
POSSIBLE_CPUS = Path("/sys/devices/system/cpu/possible")
WORD_SHIFT = 6  # 64 pages a word of page bits (bpf/gmem_shared.c: 8 words a block)
FIRST_EXEC_ASID = 0x80000000  # above every pid: ids handed out at exec never clash

IOCTLS = {
    "CMD_KVM_RUN": kvm.KVM_RUN,
    "CMD_CREATE_GUEST_MEMFD": kvm.KVM_CREATE_GUEST_MEMFD,
    "CMD_SET_USER_MEMORY_REGION2": kvm.KVM_SET_USER_MEMORY_REGION2,
    "CMD_SET_MEMORY_ATTRIBUTES": kvm.KVM_SET_MEMORY_ATTRIBUTES,
    "CMD_SET_MEMORY_ATTRIBUTES2": kvm.KVM_SET_MEMORY_ATTRIBUTES2,
    "CMD_GMEM_CONVERT_SHARED": kvm.KVM_GMEM_CONVERT_SHARED,
    "CMD_GMEM_CONVERT_PRIVATE": kvm.KVM_GMEM_CONVERT_PRIVATE,
}


def program_defines(
    btf: Btf,
    ringbuf_pages: int,
    functions: dict[str, str] | None = None,
    tracefs: Path = Path("/sys/kernel/tracing"),
    fentry: frozenset[str] = frozenset(),
) -> dict[str, str | int]:
    """-D defines: ioctl numbers, BTF offsets, the ring buffer's size, the events that
    `functions` ({event: function}) take (`fentry`: those attached with fentry), and the
    optional tracepoints present here."""
    defines: dict[str, str | int] = {f"{k}": f"{v:#x}U" for k, v in IOCTLS.items()}
    defines.update(offset_defines(btf))
    defines["RINGBUF_PAGES"] = ringbuf_pages
    defines.update(function_defines(btf, functions or {}, fentry))
    if (tracefs / "events" / KVM_PAGE_FAULT / "format").exists():
        defines["HAVE_TP_KVM_PAGE_FAULT"] = 1
    return defines


def _be(value: int, size: int) -> int:
    """The integer whose little-endian bytes are `value` in big-endian (LPM keys)."""
    return int.from_bytes(value.to_bytes(size, "big"), "little")


def possible_cpus(path: Path = POSSIBLE_CPUS) -> list[int]:
    """The kernel's possible CPUs ("0-3,8"), in the order per-CPU map values come in."""
    cpus: list[int] = []
    for part in path.read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


class ProbeProgram:
    """The loaded program (bpf/gmem_tracepoints.c, with the function tier's fentry or kprobe
    programs of bpf/gmem_functions.c compiled in for the events the plan gave them), held
    for target pids and drained as event batches: None traces every process, an empty
    list nobody until add_targets() (a --comm that matches nothing yet).

    stream_hot: one record per fault and page event (what a recording keeps); False,
    counting mode (the live view, the exporter): the kernel counts hot events and keeps
    page bits in maps (bpf/gmem_shared.c), and every poll() reads them into COUNTED and
    PAGE_STATE records, whatever order the faults came in.

    The program is loaded and attached by the loader child (probes/loader.py): this
    process holds its descriptors (a HeldProgram), never bcc."""

    def __init__(
        self, program: Any, pids: list[int] | None, stream_hot: bool, ringbuf_pages: int
    ) -> None:
        self.bpf: Any = program  # a HeldProgram (a bcc.BPF has the same table interface)
        try:
            self.counting = not stream_hot
            self._counted: dict[tuple[int, ...], int] = {}  # hot_counts' sums read so far
            self._block_keys = np.empty(0, dtype="S16")  # page_blocks' keys, sorted
            self._resident = np.empty(0, dtype=np.uint64)  # and their resident bits
            table = self.bpf[b"config"]
            conf = table[ctypes.c_int(0)]
            conf.trace_all = 1 if pids is None else 0  # []: nobody yet (add_targets)
            conf.stream_hot = 1 if stream_hot else 0
            conf.next_asid = FIRST_EXEC_ASID
            table[ctypes.c_int(0)] = conf
            self.ring = RingReader(self.bpf[b"events"].map_fd, ringbuf_pages * 4096, EVENT_DTYPE)
            self.pids: list[int] = []
            self._discovered = np.empty(0, dtype=EVENT_DTYPE)
            if pids:
                self.add_targets(pids)
        except BaseException:
            self.bpf.cleanup()
            raise

    def follow_comm(self, comm: str) -> None:
        """Processes that exec into the name `comm` from now on are targets, from the kernel
        (those running already: add_targets)."""
        table = self.bpf[b"config"]
        conf = table[ctypes.c_int(0)]
        conf.follow_comm = 1
        conf.comm = comm.encode()[:15]
        table[ctypes.c_int(0)] = conf

    def add_targets(self, pids: list[int]) -> None:
        """Trace these processes and their descendants from now on, with what they hold."""
        new = [p for p in descendants(pids) if p not in self.pids]
        targets = self.bpf[b"targets"]
        for pid in new:
            try:
                targets[ctypes.c_uint32(pid)]  # the kernel took it already (--comm at exec)
            except KeyError:
                targets[ctypes.c_uint32(pid)] = ctypes.c_uint32(pid)
        self.pids.extend(new)
        self._discovered = np.concatenate([self._discovered, self._discover(new)])

    def _map_discovered(self, asid: int, mapping: GmemMapping) -> None:
        """Put a mapping made before attaching into the kernel's trie, as mmap would have."""
        table = self.bpf[b"gmem_vmas"]
        leaf = table.Leaf(mapping.start, mapping.end, mapping.ino, mapping.pgoff)
        for addr, bits in blocks(mapping.start, mapping.end):
            table[table.Key(96 - bits, _be(asid, 4), _be(addr, 8))] = leaf

    def _discover(self, pids: list[int]) -> np.ndarray:
        """guest_memfds and mappings that exist already, as synthetic CREATE/MMAP events."""
        now = time.monotonic_ns()
        rows: list[dict[str, int | bytes]] = []
        inodes = self.bpf[b"gmem_inodes"]
        for pid in pids:
            # Named as events name their process: the view's filter reads the model's names.
            comm = comm_of(pid).encode()[:15]
            found: dict[str, int | bytes] = {"ts_ns": now, "pid": pid, "tid": pid, "comm": comm}
            found["flags"] = DISCOVERED
            for f in gmem_files(pid):
                inodes[ctypes.c_uint64(f.ino)] = ctypes.c_uint64(f.dev)
                rows.append(
                    found
                    | {"kind": Kind.CREATE, "ino": f.ino, "size_pages": f.size >> 12, "dev": f.dev}
                )
            for m in gmem_mappings(pid):
                if not any(r["ino"] == m.ino for r in rows):
                    continue
                self._map_discovered(pid, m)
                rows.append(
                    found
                    | {"kind": Kind.MMAP, "ino": m.ino, "first": m.pgoff}
                    | {"count": (m.end - m.start) >> 12, "address": m.start, "asid": pid}
                )
        return make_events(*rows)

    def poll(self) -> np.ndarray:
        """Every event since the last poll, with the mapping bookkeeping applied (counting
        mode: then the counts and page states the kernel kept, read after the ring, so that
        every refusal drained has its fault counted)."""
        batch = self.ring.drain()
        if self.counting:
            batch = np.concatenate([batch, self._read_counted()])
        if self._discovered.size:
            batch = np.concatenate([self._discovered, batch])
            self._discovered = self._discovered[:0]
        return batch

    def _read_counted(self) -> np.ndarray:
        """COUNTED records for what hot_counts gained since the last read, PAGE_STATE
        records for the pages whose residency changed and for those the host faulted in
        the read generation that ends here."""
        now = time.monotonic_ns()
        gen_table = self.bpf[b"read_gen"]
        gen = int(gen_table[ctypes.c_int(0)])
        gen_table[ctypes.c_int(0)] = ctypes.c_uint32((gen + 1) & 0xFFFFFFFF)
        keys, values = self.bpf[b"hot_counts"].read_all()
        totals = dict(zip((k[:5] for k in keys.tolist()), values.sum(axis=1).tolist(), strict=True))
        # Then the runs still open (bpf/gmem_shared.c: fault_runs): one here now was not
        # in the maps as just read. A run caught changing is left for the next read.
        heat = []
        for run in self.bpf[b"fault_runs"][ctypes.c_int(0)]:
            if run.count and run.seq_a == run.seq_b:
                key = (run.ino, run.pid, run.tid, int(Kind.HOST_FAULT), run.flags)
                totals[key] = totals.get(key, 0) + run.count
                heat.append({"kind": Kind.PAGE_STATE, "ts_ns": now, "ino": run.ino})
                heat[-1] |= {"first": run.first, "count": run.count, "state": PageState.FAULTED}
        rows: list[dict[str, int]] = []
        for (ino, pid, tid, kind, flags), total in totals.items():
            before = self._counted.get((ino, pid, tid, kind, flags), 0)
            if total > before:  # a read that missed a run moving into the maps: later
                self._counted[(ino, pid, tid, kind, flags)] = total
                rows.append(
                    {"kind": Kind.COUNTED, "ts_ns": now, "pid": pid, "tid": tid, "ino": ino}
                    | {"flags": flags, "count": total - before, "counted_kind": kind}
                )
        return np.concatenate([make_events(*rows), self._page_states(now, gen), make_events(*heat)])

    def _page_states(self, now: int, gen: int) -> np.ndarray:
        keys, bits = self.bpf[b"page_blocks"].read_all()
        if keys.size == 0:
            return np.empty(0, dtype=EVENT_DTYPE)
        # Each block's words as blocks of 64 pages of their own, sorted by (inode, word):
        # big-endian bytes order as the numbers do.
        words = bits["resident"].shape[1]
        joined = np.empty((keys.size, words), dtype=[("ino", ">u8"), ("block", ">u8")])
        joined["ino"] = keys["ino"][:, None]
        joined["block"] = keys["block"][:, None] * words + np.arange(words)
        joined = joined.reshape(-1)
        order = np.argsort(joined.view("S16"), kind="stable")
        sub = np.empty(joined.size, dtype=[("ino", "<u8"), ("block", "<u8")])
        sub["ino"], sub["block"] = joined["ino"], joined["block"]
        sub, joined = sub[order], joined.view("S16")[order]
        resident = bits["resident"].reshape(-1)[order].astype(np.uint64)
        before = np.zeros(sub.size, dtype=np.uint64)  # blocks are never removed: a superset
        if self._block_keys.size:
            at = np.searchsorted(joined, self._block_keys)
            before[at] = self._resident
        self._block_keys, self._resident = joined, resident
        parity = gen & 1
        fresh = np.repeat(bits["fault_gen"][:, parity] == (gen & 0xFFFFFFFF), words)[order]
        by_parity = bits["faulted"].reshape(keys.size, 2, words)
        faulted = np.where(fresh, by_parity[:, parity, :].reshape(-1)[order], 0)
        faulted = faulted.astype(np.uint64)
        changed = resident ^ before
        return np.concatenate(
            [
                _state_records(now, sub, changed & resident, PageState.RESIDENT),
                _state_records(now, sub, changed & ~resident, PageState.GONE),
                _state_records(now, sub, faulted, PageState.FAULTED),
            ]
        )

    def lost(self) -> int:
        """Events the kernel could not put in the ring buffer, since attach."""
        table = self.bpf[b"lost"]
        return int(sum(table[ctypes.c_int(0)]) + sum(table[ctypes.c_int(1)]))

    def lost_refused(self) -> int:
        """Of those, the ones refused while the ring had room (its lock gave up): not a
        slow consumer (bpf/gmem_common.h: LOST_REFUSED)."""
        return int(sum(self.bpf[b"lost"][ctypes.c_int(1)]))

    def close(self) -> None:
        self.ring.close()
        self.bpf.cleanup()


def _state_records(now: int, keys: np.ndarray, bits: np.ndarray, state: PageState) -> np.ndarray:
    """PAGE_STATE records for the set bits of each word (64 pages from its number << 6),
    one per run of consecutive pages of an inode."""
    chosen = bits != 0
    if not chosen.any():
        return np.empty(0, dtype=EVENT_DTYPE)
    ino = keys["ino"][chosen].astype(np.uint64)
    flat = np.unpackbits(
        bits[chosen].astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little"
    ).astype(bool)
    block_of, slot = np.nonzero(flat)
    pages = (keys["block"][chosen].astype(np.uint64)[block_of] << np.uint64(WORD_SHIFT)) + slot
    inos = ino[block_of]
    starts = np.ones(pages.size, dtype=bool)
    starts[1:] = (inos[1:] != inos[:-1]) | (pages[1:] != pages[:-1] + np.uint64(1))
    first = np.flatnonzero(starts)
    ends = np.append(first[1:], pages.size)
    out = np.zeros(first.size, dtype=EVENT_DTYPE)
    out["kind"], out["flags"], out["ts_ns"] = Kind.PAGE_STATE, state, now
    out["ino"], out["first"], out["count"] = inos[first], pages[first], ends - first
    return out
