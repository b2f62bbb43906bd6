"""`gmemtrace doctor`: every requirement of tracing, checked on this machine, with its fix.

Each check reads the machine through `Host`, whose paths tests point elsewhere
to simulate missing pieces without breaking the machine.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel import caps, kvm, tracefs
from gmemtrace.kernel import headers as kheaders
from gmemtrace.kernel.btf import Btf, BtfError
from gmemtrace.kernel.host import Host
from gmemtrace.kernel.kallsyms import symbols_containing
from gmemtrace.probes import plan as probe_plan

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"


# The stable tracepoints the tracepoint tier is built on.
TRACEPOINTS = (
    "filemap/mm_filemap_add_to_page_cache",
    "filemap/mm_filemap_delete_from_page_cache",
    "exceptions/page_fault_user",
    "signal/signal_generate",
    "syscalls/sys_enter_ioctl",
    "syscalls/sys_exit_ioctl",
    "syscalls/sys_enter_fallocate",
    "syscalls/sys_enter_mmap",
    "syscalls/sys_exit_mmap",
    "syscalls/sys_enter_munmap",
    "kvm/kvm_userspace_exit",
    "sched/sched_process_fork",
    "sched/sched_process_exit",
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


@dataclass(frozen=True)
class Check:
    name: str
    status: str
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


def check_privileges(host: Host, d: Diagnosis) -> None:
    missing = caps.missing_for_tracing(host.proc_status)
    held = ", ".join(n for n in sorted(caps.TRACING_CAPS) if n not in missing)
    d.facts["euid"] = os.geteuid()
    if not missing:
        d.add(Check("privileges", OK, f"euid {os.geteuid()}; {held}"))
        return
    d.add(
        Check(
            "privileges",
            FAIL,
            f"euid {os.geteuid()}; missing {', '.join(missing)}",
            "run as root (sudo gmemtrace ...)",
        ),
        blocks=True,
    )


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


def _check_inplace(vm_fd: int, d: Diagnosis, btf: Btf | None) -> None:
    inplace = [f for f in INPLACE_FUNCTIONS if btf is not None and btf.has_function(f)]
    cap = kvm.CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES
    if inplace:
        value = kvm.check_extension(vm_fd, cap)
        d.facts["kvm_caps"][cap.name] = value
        detail = f"{value:#x} (capability {cap.number}; kernel has {', '.join(inplace)})"
    else:
        detail = "not defined by this kernel (no in-place conversion functions in BTF)"
    d.add(Check(cap.name, INFO, detail))


def check_btf(host: Host, d: Diagnosis) -> Btf | None:
    try:
        btf = Btf.load(host.btf)
    except BtfError as err:
        d.add(
            Check(
                "kernel BTF",
                FAIL,
                str(err),
                "a kernel built with CONFIG_DEBUG_INFO_BTF=y",
            ),
            blocks=True,
        )
        return None
    d.add(Check("kernel BTF", OK, f"{host.btf}, {btf.type_count} types"))
    return btf


def check_tracefs(host: Host, d: Diagnosis) -> bool:
    state = tracefs.ensure_mounted(host.mounts, host.tracefs_mountpoint)
    if state.mountpoint is None:
        d.add(
            Check(
                "tracefs",
                FAIL,
                f"not mounted, and mounting failed: {state.error}",
                f"mount -t tracefs nodev {host.tracefs_mountpoint}",
            ),
            blocks=True,
        )
        return False
    d.facts["tracefs"] = str(state.mountpoint)
    how = "was not mounted; mounted now" if state.mounted_now else "mounted"
    d.add(Check("tracefs", OK, f"{how} at {state.mountpoint}"))
    events = state.mountpoint / "events"
    missing = [tp for tp in TRACEPOINTS if not (events / tp / "format").exists()]
    d.facts["tracepoints_missing"] = missing
    d.add(
        Check(
            "tracepoints",
            WARN if missing else OK,
            f"{len(TRACEPOINTS) - len(missing)}/{len(TRACEPOINTS)} present"
            + (f"; missing {', '.join(missing)}" if missing else ""),
            "events gmemtrace cannot see are listed by `gmemtrace probes`" if missing else "",
        )
    )
    return True


def check_bcc(d: Diagnosis) -> bool:
    from gmemtrace.probes import bcc_backend

    try:
        version = bcc_backend.bcc_version()
    except GmemtraceError as err:
        d.add(Check("bcc", FAIL, str(err).split("; fix:")[0], bcc_backend.BCC_FIX), blocks=True)
        return False
    d.facts["bcc_version"] = version
    d.add(Check("bcc", OK, f"version {version}"))
    return True


def check_headers(host: Host, d: Diagnosis) -> kheaders.Headers:
    found = kheaders.resolve(environ=host.environ, lib_modules=host.lib_modules, src=host.usr_src)
    d.facts["headers"] = {"kind": found.kind, "path": str(found.path) if found.path else None}
    status = {kheaders.MATCHING: OK, kheaders.USER: OK, kheaders.FALLBACK: OK}.get(found.kind, FAIL)
    fix = "" if found.usable else "apt-get install linux-headers-$(dpkg --print-architecture)"
    d.add(Check(f"kernel headers ({found.kind})", status, found.detail, fix), blocks=True)
    return found


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
            tiers.setdefault(choice.tier or "unavailable", []).append(choice.event)
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
    check_privileges(host, d)
    btf = check_btf(host, d)
    check_kvm(host, d, btf)
    have_tracefs = check_tracefs(host, d)
    have_bcc = check_bcc(d)
    found = check_headers(host, d)
    if host.load_bpf and have_bcc and found.usable and have_tracefs:
        check_program_types(host, d, found, btf)
    else:
        d.add(Check("BPF program types", INFO, "not loaded: needs bcc, headers and tracefs"))
    check_functions(host, d, btf)
    return d
