"""The function tier: which guest_memfd functions mark which events, and the defines that
compile their probes (bpf/gmem_functions.c: fentry or kprobes) into the one program."""

from __future__ import annotations

from gmemtrace.kernel.btf import Btf, BtfError
from gmemtrace.kernel.offsets import FUNCTION_MEMBERS, offset_defines

# Event -> the functions that mark it, any one of which will do: mainline's name first,
# then the names of stable kernels that differ (Debian's 6.12 binds memslots through
# kvm_gmem_prepare_memory_region + kvm_gmem_commit_memory_region). Only what was seen
# working on a kernel where they load (the lab's 6.12, and 7.2 with the in-place
# conversion series) is here.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "create": ("kvm_gmem_create",),
    "bind": ("kvm_gmem_bind", "kvm_gmem_commit_memory_region"),
    "guest_fault": ("kvm_gmem_get_pfn",),
    "punch": ("kvm_gmem_fallocate",),
    "release": ("kvm_gmem_release",),
    # In-place conversion (the v8 series): the fault handler answers page by page...
    "host_fault": ("kvm_gmem_fault_user_mapping",),
    "host_fault_refused": ("kvm_gmem_fault_user_mapping",),
    # ...conversions are asked of the guest_memfd (the page that blocked one comes from
    # __kvm_gmem_set_attributes)...
    "convert": ("kvm_gmem_ioctl",),
    # ...and each new inode's pages start private or shared (kvm_gmem_init_inode, which
    # the compiler inlines into kvm_gmem_create).
    "shareability_setup": ("kvm_gmem_create",),
}
# What else the kernel must have for the function to mean the event: the state is kept
# in the inode (the series' conversion function exists). Events served by the same
# function are planned together.
REQUIRES: dict[str, tuple[str, ...]] = {
    "convert": ("__kvm_gmem_set_attributes",),
    "host_fault": ("__kvm_gmem_set_attributes",),
    "host_fault_refused": ("__kvm_gmem_set_attributes",),
    "shareability_setup": ("__kvm_gmem_set_attributes",),
}


def function_defines(
    btf: Btf, events: dict[str, str], fentry: frozenset[str] = frozenset()
) -> dict[str, int]:
    """-D defines for the events the function tier takes ({event: function}): FN_<EVENT>,
    HAVE_<function>, FENTRY_<function> for those attached with fentry (the rest take
    kprobes), and the offsets the probes read (from the kvm module's BTF where KVM is a
    module)."""
    if not events:
        return {}
    defines = {"FUNCTION_TIER": 1} | {f"FN_{event.upper()}": 1 for event in events}
    defines.update({f"HAVE_{function}": 1 for function in events.values()})
    defines.update({f"FENTRY_{function}": 1 for function in fentry})
    try:
        defines.update(offset_defines(btf, FUNCTION_MEMBERS, windows=False))
    except BtfError as err:
        raise BtfError(f"{err}: the function tier needs KVM's memslot layout") from None
    return defines
