"""The function tier: which guest_memfd functions mark which events, and the defines that
compile their kprobes (bpf/gmem_functions.c) into the one program."""

from __future__ import annotations

from gmemtrace.kernel.btf import Btf, BtfError
from gmemtrace.kernel.offsets import FUNCTION_MEMBERS, offset_defines

# Event -> the functions that mark it, any one of which will do: mainline's name first,
# then the names of stable kernels that differ (Debian's 6.12 binds memslots through
# kvm_gmem_prepare_memory_region + kvm_gmem_commit_memory_region). Only what was seen
# working on a kernel where kprobes load (the lab's 6.12) is here.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "create": ("kvm_gmem_create",),
    "bind": ("kvm_gmem_bind", "kvm_gmem_commit_memory_region"),
    "guest_fault": ("kvm_gmem_get_pfn",),
    "punch": ("kvm_gmem_fallocate",),
    "release": ("kvm_gmem_release",),
}


def function_defines(btf: Btf, events: dict[str, str]) -> dict[str, int]:
    """-D defines for the events the function tier takes ({event: function}): FN_<EVENT>,
    HAVE_<function>, and the memslot offsets the probes read (from the kvm module's BTF
    where KVM is a module)."""
    if not events:
        return {}
    defines = {"FUNCTION_TIER": 1} | {f"FN_{event.upper()}": 1 for event in events}
    defines.update({f"HAVE_{function}": 1 for function in events.values()})
    try:
        defines.update(offset_defines(btf, FUNCTION_MEMBERS, windows=False))
    except BtfError as err:
        raise BtfError(f"{err}: the function tier needs KVM's memslot layout") from None
    return defines
