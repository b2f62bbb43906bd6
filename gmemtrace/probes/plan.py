"""The probe plan: for each logical event, the tier and attach point chosen on this kernel, and why.

Tiers, in the order tried: fentry on the guest_memfd functions themselves (vmlinux
functions only, with bcc 0.26), kprobes on them, then stable tracepoints. fentry first
because it measured cheapest: on the in-place kernel in the lab (benchmarks/tiers.py,
one boot, the host fault storm in counting mode) the traced storm kept 0.84 of its
untraced rate in order and 0.67 at random under fentry, 0.44 and 0.61 under kprobes, 0.58
and 0.49 under the tracepoint tier (README, Kernels). kprobes before tracepoints for what
they see (a fault's answer, served or refused, in the function that gives it), not for
cost: under emulation the two measured each ahead in one order. Each event takes the
first tier that loads here and sees it; every rejection says why. Whatever the tiers,
the events reach one ring buffer and one model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gmemtrace.errors import GmemtraceError, UsageError
from gmemtrace.events import Kind, Probe, Tier
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.headers import Headers, cache_dir
from gmemtrace.kernel.host import Host
from gmemtrace.kernel.kallsyms import symbols_containing
from gmemtrace.probes.functions import FUNCTIONS, REQUIRES
from gmemtrace.probes.requirements import require_all

FENTRY, KPROBE, TRACEPOINT = Tier
FORCEABLE = tuple(Tier)  # what --tier accepts

# The logical events a plan places: the event kinds the kernel reports (not the process
# bookkeeping, nor the collector's own records), by their names.
PLANNED = (
    Kind.CREATE,
    Kind.BIND,
    Kind.HOST_FAULT,
    Kind.HOST_FAULT_REFUSED,
    Kind.GUEST_FAULT,
    Kind.ALLOC,
    Kind.FREE,
    Kind.PUNCH,
    Kind.CONVERT,
    Kind.MEMORY_FAULT_EXIT,
    Kind.SHAREABILITY_SETUP,
    Kind.RELEASE,
)
EVENTS = tuple(kind.label for kind in PLANNED)

# Why the function tier does not take an event that has no entry in FUNCTIONS.
NO_FUNCTION = {
    "alloc": "no guest_memfd function marks it; the tracepoint is exact",
    "free": "no guest_memfd function marks it; the tracepoint is exact",
    "memory_fault_exit": "no guest_memfd function marks it; the tracepoint is exact",
}
NOT_IN_INODE = (
    "this kernel keeps no shareability in the guest_memfd inode (no {}): the function "
    "does not answer for it"
)
# What the tracepoint tier attaches for each event: (attach point, tracepoints it needs),
# or (None, why it cannot see the event).
TRACEPOINTS: dict[str, tuple[str | None, tuple[str, ...] | str]] = {
    "create": (
        "syscalls:sys_enter/exit_ioctl KVM_CREATE_GUEST_MEMFD",
        ("syscalls/sys_enter_ioctl", "syscalls/sys_exit_ioctl"),
    ),
    "bind": (
        "syscalls:sys_enter/exit_ioctl KVM_SET_USER_MEMORY_REGION2",
        ("syscalls/sys_enter_ioctl", "syscalls/sys_exit_ioctl"),
    ),
    "host_fault": (
        "exceptions:page_fault_user + guest_memfd mapping trie",
        ("exceptions/page_fault_user", "syscalls/sys_exit_mmap"),
    ),
    "host_fault_refused": (
        "signal:signal_generate SIGBUS after a guest_memfd fault",
        ("signal/signal_generate", "exceptions/page_fault_user"),
    ),
    "guest_fault": (
        "filemap:mm_filemap_add_to_page_cache inside KVM_RUN (allocating faults only)",
        ("filemap/mm_filemap_add_to_page_cache", "syscalls/sys_enter_ioctl"),
    ),
    "alloc": ("filemap:mm_filemap_add_to_page_cache", ("filemap/mm_filemap_add_to_page_cache",)),
    "free": (
        "filemap:mm_filemap_delete_from_page_cache",
        ("filemap/mm_filemap_delete_from_page_cache",),
    ),
    "punch": (
        "syscalls:sys_enter/exit_fallocate",
        ("syscalls/sys_enter_fallocate", "syscalls/sys_exit_fallocate"),
    ),
    "convert": (
        "syscalls:sys_enter/exit_ioctl KVM_SET_MEMORY_ATTRIBUTES[2] (error_offset read "
        "back), KVM_GMEM_CONVERT_*",
        ("syscalls/sys_enter_ioctl", "syscalls/sys_exit_ioctl"),
    ),
    "memory_fault_exit": (
        "kvm:kvm_userspace_exit reason 39, gpa from the vCPU's kvm_run",
        ("kvm/kvm_userspace_exit",),
    ),
    "shareability_setup": (None, "no tracepoint marks it (the creation flags tell the model)"),
    "release": (None, "no tracepoint marks the last close of a guest_memfd"),
}
# Where KVM's own tracepoint fires, it sees every guest fault, not only allocating ones.
KVM_PAGE_FAULT = "kvm/kvm_page_fault"
GUEST_FAULT_BY_GPA = (
    "kvm:kvm_page_fault by gpa through the memslots (every fault); where it never fires "
    "(PVM), filemap:mm_filemap_add_to_page_cache inside KVM_RUN (allocating faults only)"
)


@dataclass
class Choice:
    event: str
    tier: Tier | None  # None: this kernel cannot show the event with any tier
    attach: str  # as `gmemtrace probes` shows it ("kprobe:kvm_gmem_get_pfn", a tracepoint)
    rejected: list[tuple[Tier, str]] = field(default_factory=list)  # (tier, why)
    function: str = ""  # the guest_memfd function, when a function tier serves it

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Choice:
        """A choice as plan_dicts() wrote it (the loader child sends the plan so)."""
        return cls(
            d["event"],
            Tier(d["tier"]) if d["tier"] else None,
            d["attach"],
            [(Tier(tier), why) for tier, why in d["rejected"]],
            d.get("function", ""),
        )

    @property
    def probe(self) -> Probe:
        return Probe(self.tier, self.attach)


def _tracepoint_exists(tracefs: Path, name: str) -> bool:
    return (tracefs / "events" / name / "format").exists()


def program_types(headers: Headers, btf: Btf, tracefs: Path) -> dict[str, str]:
    """{tier: "" if it loads here, else why not}, cached per boot (loading costs a second)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown"
    cache = cache_dir() / f"program-types-{boot}.json"
    try:
        return dict(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    from gmemtrace.probes.bcc_backend import check_program_types

    checks = check_program_types(tuple(Tier), headers, btf, tracefs)
    found = {tier: "" if c.works else c.detail for tier, c in checks.items()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(found))
    except OSError:
        pass
    return found


def make_plan(
    btf: Btf,
    loads: dict[str, str],
    tracefs: Path,
    force: str | None = None,
    kallsyms: Path = Path("/proc/kallsyms"),
) -> list[Choice]:
    """Choose a tier per event: the best one that loads and sees the event here."""
    if force is not None and force not in FORCEABLE:
        raise UsageError(f"unknown tier {force!r}; choose from {', '.join(FORCEABLE)}")
    in_kallsyms = set(symbols_containing("kvm_gmem", kallsyms))
    plan = []
    for event in EVENTS:
        functions = FUNCTIONS.get(event, ())
        choice = Choice(event, None, "")
        for tier in Tier:
            if force is not None and tier != force:
                continue
            why = _reject(tier, event, functions, btf, in_kallsyms, loads, tracefs)
            if why:
                choice.rejected.append((tier, why))
                continue
            choice.tier = tier
            if tier == TRACEPOINT:
                choice.attach = str(TRACEPOINTS[event][0])
                if event == "guest_fault" and _tracepoint_exists(tracefs, KVM_PAGE_FAULT):
                    choice.attach = GUEST_FAULT_BY_GPA
            else:
                choice.function = _present(functions, btf, in_kallsyms)
                choice.attach = f"{tier.value}:{choice.function}"
            break
        plan.append(choice)
    return plan


def function_events(plan: list[Choice]) -> dict[str, str]:
    """{event: function} for the events the plan gives the function tier."""
    return {c.event: c.function for c in plan if c.tier is not None and c.tier.on_functions}


def fentry_functions(plan: list[Choice]) -> frozenset[str]:
    """The functions the plan attaches with fentry (the function tier's others: kprobes)."""
    return frozenset(c.function for c in plan if c.tier is FENTRY)


def _present(functions: tuple[str, ...], btf: Btf, in_kallsyms: set[str]) -> str:
    return next((f for f in functions if btf.has_function(f) or f in in_kallsyms), "")


def _reject(
    tier: Tier,
    event: str,
    functions: tuple[str, ...],
    btf: Btf,
    in_kallsyms: set[str],
    loads: dict[str, str],
    tracefs: Path,
) -> str:
    """Why `tier` cannot deliver `event` here ("" when it can)."""
    if tier == TRACEPOINT:
        attach, needs = TRACEPOINTS[event]
        if attach is None:
            return str(needs)
        missing = [tp for tp in needs if not _tracepoint_exists(tracefs, tp)]
        if missing:
            return f"tracepoint absent: {', '.join(missing)}"
        return f"tracepoints do not load: {loads[TRACEPOINT]}" if loads.get(TRACEPOINT) else ""
    if not functions:
        return NO_FUNCTION[event]
    name = _present(functions, btf, in_kallsyms)
    if not name:
        return f"symbol absent ({', '.join(functions)})"
    needs = REQUIRES.get(event, ())
    if needs and not _present(needs, btf, in_kallsyms):
        return NOT_IN_INODE.format(" or ".join(needs))
    if tier == FENTRY:
        if not btf.has_function(name):
            return f"{name} not in BTF"
        if (module := btf.function_module(name)) != "vmlinux":
            return f"bcc 0.26 attaches fentry only to vmlinux functions ({name} is in {module})"
        return loads.get(FENTRY, "")
    return loads.get(tier, "")


def plan_probes(plan: list[Choice]) -> dict[str, Probe]:
    """{event: the probe that serves it}, as trace headers and reports keep it."""
    return {c.event: c.probe for c in plan}


def plan_dicts(plan: list[Choice]) -> list[dict[str, object]]:
    return [asdict(c) for c in plan]


def require_tier(plan: list[Choice], force: str | None) -> None:
    """With --tier, a tier that delivers nothing here is an error."""
    if force and not any(c.tier == force for c in plan):
        reasons = {why for c in plan for tier, why in c.rejected if tier == force}
        raise GmemtraceError(f"tier {force} cannot be used here: {'; '.join(sorted(reasons))}")


@dataclass
class Setup:
    """What loading the probes starts from: the kernel's headers and BTF, tracefs, the plan."""

    headers: Headers
    btf: Btf
    tracefs: Path
    plan: list[Choice]


def prepare(force_tier: str | None = None, host: Host | None = None) -> Setup:
    """Check every requirement of tracing and plan the probes; raise the first problem,
    in doctor's words, naming its fix (probes/requirements.py)."""
    met = require_all(host or Host())
    loads = program_types(met.headers, met.btf, met.tracefs)
    plan = make_plan(met.btf, loads, met.tracefs, force_tier)
    require_tier(plan, force_tier)
    return Setup(met.headers, met.btf, met.tracefs, plan)
