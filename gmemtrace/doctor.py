"""`gmemtrace doctor`: every requirement of tracing, checked on this machine, with its fix.

Each check reads the machine through `Host`, whose paths tests point elsewhere
to simulate missing pieces without breaking the machine.
"""

from __future__ import annotations

import enum
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gmemtrace.events import UNAVAILABLE
from gmemtrace.kernel import headers as kheaders
from gmemtrace.kernel import kvm
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.host import Host
from gmemtrace.kernel.kallsyms import symbols_containing
from gmemtrace.probes import plan as probe_plan
from gmemtrace.probes.requirements import (
    OPTIONAL_TRACEPOINTS,
    Outcome,
    attached_tracepoints,
    check_all,
)

# Functions of the in-place conversion series; their presence means the kernel
# defines KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES (or the May 2025 RFC's names).
INPLACE_FUNCTIONS = (
    "kvm_gmem_get_attributes",
    "kvm_gmem_set_attributes",
    "kvm_gmem_is_private_mem",
    "kvm_gmem_shareability_setup",
    "kvm_gmem_convert_range",
)


class Status(enum.StrEnum):
    """A check's verdict (its value is what `doctor --json` prints)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    INFO = "info"


OK, WARN, FAIL, INFO = Status


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Diagnosis:
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)  # why tracing cannot work

    def add(self, check: Check, blocks: bool = False) -> Check:
        self.checks.append(check)
        if blocks and check.status == FAIL:
            self.blockers.append(f"{check.name}: {check.detail}")
        return check

    @property
    def can_trace(self) -> bool:
        return not self.blockers

    def to_json(self) -> dict[str, Any]:
        return {
            "can_trace": self.can_trace,
            "reason": "; ".join(self.blockers),
            "checks": [asdict(c) for c in self.checks],
            "facts": self.facts,
        }


def check_kvm(host: Host, d: Diagnosis, btf: Btf | None) -> None:
    try:
        fd = os.open(host.kvm_device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        fix = "load kvm (modprobe kvm_intel / kvm_amd) or run on a host with KVM"
        if isinstance(err, PermissionError):
            fix = "run as root or join the kvm group"
        d.add(Check("/dev/kvm", FAIL, f"{host.kvm_device}: {err.strerror}", fix))
        d.add(Check("KVM capabilities", INFO, "not checked: /dev/kvm unavailable"))
        return
    try:
        api = kvm.ioctl(fd, kvm.KVM_GET_API_VERSION)
        d.add(Check("/dev/kvm", OK, f"{host.kvm_device}, KVM API {api}"))
        _check_caps(fd, d, btf)
    except kvm.KvmError as err:
        d.add(Check("KVM capabilities", FAIL, str(err), "check dmesg for KVM errors"))
    finally:
        os.close(fd)


VM_CAPS = (kvm.CAP_GUEST_MEMFD, kvm.CAP_GUEST_MEMFD_FLAGS, kvm.CAP_MEMORY_ATTRIBUTES)


def _vm_caps(kvm_fd: int, vm_type: int) -> dict[str, int]:
    """Capabilities as a VM of `vm_type` answers them: guest_memfd and memory attributes
    belong to the VM types that have them, not to /dev/kvm."""
    vm_fd = kvm.ioctl(kvm_fd, kvm.KVM_CREATE_VM, vm_type)
    try:
        return {cap.name: kvm.check_extension(vm_fd, cap) for cap in VM_CAPS}
    finally:
        os.close(vm_fd)


def _per_type(by_type: dict[str, dict[str, int]], cap: kvm.Capability, show: str) -> str:
    """'value on TYPE; value on TYPE' (one value for all types when they agree)."""
    values = {name: caps[cap.name] for name, caps in by_type.items()}
    if len(set(values.values())) == 1:
        return show.format(next(iter(values.values()))) + " on every VM type"
    return "; ".join(f"{show.format(v)} on {name}" for name, v in values.items())


def _check_caps(kvm_fd: int, d: Diagnosis, btf: Btf | None) -> None:
    mask = kvm.check_extension(kvm_fd, kvm.CAP_VM_TYPES)
    types = kvm.vm_types(mask)
    by_type: dict[str, dict[str, int]] = {}
    for vm_type in types:
        name = kvm.VM_TYPE_NAMES.get(vm_type, str(vm_type))
        try:
            by_type[name] = _vm_caps(kvm_fd, vm_type)
        except kvm.KvmError as err:
            d.add(Check(f"VM type {name}", WARN, f"offered, but KVM_CREATE_VM failed: {err}"))
    d.facts["vm_types"] = list(by_type)
    d.facts["kvm_caps_by_vm_type"] = by_type
    d.add(Check("KVM VM types", INFO, f"{', '.join(by_type)} (KVM_CAP_VM_TYPES {mask:#x})"))
    # The facts of the VM type that offers the most: guest_memfd, then memory attributes.
    best = max(
        by_type.values(),
        key=lambda c: (c[kvm.CAP_GUEST_MEMFD.name], c[kvm.CAP_MEMORY_ATTRIBUTES.name]),
        default=dict.fromkeys((cap.name for cap in VM_CAPS), 0),
    )
    d.facts["kvm_caps"] = dict(best)
    with_gmem = [name for name, caps in by_type.items() if caps[kvm.CAP_GUEST_MEMFD.name]]
    d.add(
        Check(
            kvm.CAP_GUEST_MEMFD.name,
            OK if with_gmem else WARN,
            f"guest_memfd on {', '.join(with_gmem)}"
            if with_gmem
            else "no VM type has guest_memfd: nothing to trace on this host",
            ""
            if with_gmem
            else "a 6.8+ kernel with CONFIG_KVM_PRIVATE_MEM (and a VM type that has it)",
        )
    )
    flag_names = kvm.decode_gmem_flags(best[kvm.CAP_GUEST_MEMFD_FLAGS.name])
    d.add(
        Check(
            kvm.CAP_GUEST_MEMFD_FLAGS.name,
            INFO,
            _per_type(by_type, kvm.CAP_GUEST_MEMFD_FLAGS, "{:#x}")
            + f" ({'|'.join(flag_names) or 'none'})",
        )
    )
    attrs = best[kvm.CAP_MEMORY_ATTRIBUTES.name]
    d.add(
        Check(
            kvm.CAP_MEMORY_ATTRIBUTES.name,
            INFO,
            _per_type(by_type, kvm.CAP_MEMORY_ATTRIBUTES, "{:#x}")
            + (": VM-wide private/shared conversions" if attrs else ": no VM-wide conversions"),
        )
    )
    vm_fd = kvm.ioctl(kvm_fd, kvm.KVM_CREATE_VM, 0)
    try:
        _check_inplace(vm_fd, d, btf)
    finally:
        os.close(vm_fd)
    _check_inplace_behaviour(kvm_fd, d, [t for t in types if kvm.VM_TYPE_NAMES.get(t, str(t))
                                         in with_gmem])  # fmt: skip


def _check_inplace(vm_fd: int, d: Diagnosis, btf: Btf | None) -> None:
    inplace = [f for f in INPLACE_FUNCTIONS if btf is not None and btf.has_function(f)]
    cap = kvm.inplace_capability()
    if inplace:
        value = kvm.check_extension(vm_fd, cap)
        d.facts["kvm_caps"][cap.name] = value
        detail = f"{value:#x} (capability {cap.number}; kernel has {', '.join(inplace)})"
    else:
        detail = "not defined by this kernel (no in-place conversion functions in BTF)"
    d.add(Check(cap.name, INFO, detail))


def _check_inplace_behaviour(kvm_fd: int, d: Diagnosis, types: list[int]) -> None:
    """Whether shared/private is kept in the guest_memfd and converted on it, asked of the
    kernel by behaviour (the capability's number changed between revisions of the series):
    a guest_memfd that takes KVM_SET_MEMORY_ATTRIBUTES2 answers invalid flags with EINVAL,
    one that does not with ENOTTY; a VM type converts in place when a page of a fresh
    guest_memfd goes private and back."""
    takes, converts = [], []
    for vm_type in types:
        name = kvm.VM_TYPE_NAMES.get(vm_type, str(vm_type))
        vm_fd = kvm.ioctl(kvm_fd, kvm.KVM_CREATE_VM, vm_type)
        try:
            gmem_fd = kvm.ioctl(vm_fd, kvm.KVM_CREATE_GUEST_MEMFD, kvm.CreateGuestMemfd(size=4096))
            try:
                if not kvm.takes_attributes2(gmem_fd):
                    continue
                takes.append(name)
                private = kvm.KVM_MEMORY_ATTRIBUTE_PRIVATE
                there = kvm.MemoryAttributes2(offset=0, size=4096, attributes=private)
                back = kvm.MemoryAttributes2(offset=0, size=4096, attributes=0)
                if not kvm.try_ioctl(gmem_fd, kvm.KVM_SET_MEMORY_ATTRIBUTES2, there) and not (
                    kvm.try_ioctl(gmem_fd, kvm.KVM_SET_MEMORY_ATTRIBUTES2, back)
                ):
                    converts.append(name)
            finally:
                os.close(gmem_fd)
        except kvm.KvmError:
            continue
        finally:
            os.close(vm_fd)
    d.facts["inplace_conversion"] = {"on": bool(takes), "converts_on": converts}
    if converts:
        detail = f"on: pages of a guest_memfd convert in place on {', '.join(converts)}"
    elif takes:
        detail = f"on, but no VM type here converted a page ({', '.join(takes)} take the ioctl)"
    else:
        detail = "off: no guest_memfd here takes KVM_SET_MEMORY_ATTRIBUTES2"
    d.add(Check("in-place conversion", INFO, detail + " (asked by behaviour)"))


def check_requirements(host: Host, d: Diagnosis) -> dict[str, Outcome]:
    """Every requirement of tracing (gmemtrace/probes/requirements.py), each a row; the ones not
    met block tracing."""
    outcomes = {}
    for req, outcome in check_all(host):
        fix = "" if outcome.ok else req.fix(host)
        detail = outcome.detail
        if req.name == "tracefs" and not outcome.ok:
            detail = f"not mounted, and mounting failed: {detail}"
        d.add(Check(outcome.label or req.name, OK if outcome.ok else FAIL, detail, fix), True)
        outcomes[req.name] = outcome
    d.facts["euid"] = os.geteuid()
    if outcomes["tracefs"].ok:
        d.facts["tracefs"] = str(outcomes["tracefs"].value)
    if outcomes["bcc"].ok:
        d.facts["bcc_version"] = outcomes["bcc"].detail.removeprefix("version ")
    found: kheaders.Headers = outcomes["kernel headers"].value
    d.facts["headers"] = {"kind": found.kind, "path": str(found.path) if found.path else None}
    return outcomes


def check_tracepoints(tracefs: Path, d: Diagnosis) -> None:
    """The tracepoints the programs attach (read from their source), present or not."""
    wanted = attached_tracepoints()
    events = tracefs / "events"
    missing = [tp for tp in wanted if not (events / tp / "format").exists()]
    needed = [tp for tp in missing if tp not in OPTIONAL_TRACEPOINTS]
    d.facts["tracepoints_missing"] = missing
    detail = f"{len(wanted) - len(missing)}/{len(wanted)} present"
    if missing:
        detail += f"; missing {', '.join(missing)}"
        detail += "" if needed else " (optional: used where the kernel has it)"
    d.add(
        Check(
            "tracepoints",
            WARN if needed else OK,
            detail,
            "events gmemtrace cannot see are listed by `gmemtrace probes`" if needed else "",
        )
    )


def check_program_types(host: Host, d: Diagnosis, found: kheaders.Headers, btf: Btf | None) -> None:
    from gmemtrace.probes import bcc_backend

    tracefs = Path(d.facts.get("tracefs", host.tracefs_mountpoint))
    checks = bcc_backend.check_program_types(bcc_backend.PROGRAM_TYPES, found, btf, tracefs)
    results = {}
    for kind, check in checks.items():
        results[kind] = check.works
        d.add(Check(f"BPF {kind}", OK if check.works else WARN, check.detail))
    d.facts["program_types"] = results
    if not results["tracepoint"]:
        d.blockers.append("BPF tracepoint programs do not load")
        return
    loads = {kind: "" if check.works else check.detail for kind, check in checks.items()}
    if btf is not None:
        plan = probe_plan.make_plan(btf, loads, tracefs, kallsyms=host.kallsyms)
        tiers: dict[str, list[str]] = {}
        for choice in plan:
            tiers.setdefault(choice.tier or UNAVAILABLE, []).append(choice.event)
        d.facts["probe_tiers"] = tiers
        detail = "; ".join(f"{tier}: {', '.join(events)}" for tier, events in tiers.items())
        d.add(Check("probe tiers", OK, detail + " (gmemtrace probes: where and why)"))


def check_functions(host: Host, d: Diagnosis, btf: Btf | None) -> None:
    in_btf = btf.functions("kvm_gmem") if btf is not None else []
    in_kallsyms = symbols_containing("kvm_gmem", host.kallsyms)
    d.facts["gmem_functions"] = {"btf": in_btf, "kallsyms": in_kallsyms}
    d.add(
        Check(
            "guest_memfd functions",
            OK if in_btf else WARN,
            f"BTF: {len(in_btf)} ({', '.join(in_btf) or 'none'}); kallsyms: {len(in_kallsyms)}",
            "" if in_btf else "function probes need CONFIG_KVM with guest_memfd and BTF",
        )
    )


def diagnose(host: Host | None = None) -> Diagnosis:
    """Run every check; the result says whether tracing can work and why not."""
    host = host or Host()
    d = Diagnosis()
    d.facts["kernel"] = platform.release()
    met = check_requirements(host, d)
    btf: Btf | None = met["kernel BTF"].value
    check_kvm(host, d, btf)
    if met["tracefs"].ok:
        check_tracepoints(met["tracefs"].value, d)
    found: kheaders.Headers = met["kernel headers"].value
    if host.load_bpf and met["bcc"].ok and found.usable and met["tracefs"].ok:
        check_program_types(host, d, found, btf)
    else:
        d.add(Check("BPF program types", INFO, "not loaded: needs bcc, headers and tracefs"))
    check_functions(host, d, btf)
    return d
