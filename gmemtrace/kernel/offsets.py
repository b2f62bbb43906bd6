"""Kernel struct member offsets the BPF programs need, read from the running kernel's BTF."""

from __future__ import annotations

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel.btf import Btf, BtfError

# -D name -> (struct, member). Never from headers: their layouts are another kernel's.
MEMBERS = {
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDTABLE_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_FDTABLE_FD": ("fdtable", "fd"),
    "OFF_FILE_F_INODE": ("file", "f_inode"),
    "OFF_INODE_I_INO": ("inode", "i_ino"),
    "OFF_INODE_I_SIZE": ("inode", "i_size"),
    "OFF_INODE_I_SB": ("inode", "i_sb"),
    "OFF_SUPER_BLOCK_S_DEV": ("super_block", "s_dev"),
    # The page-cache raw tracepoints get a struct folio.
    "OFF_FOLIO_FLAGS": ("folio", "flags"),
    "OFF_FOLIO_MAPPING": ("folio", "mapping"),
    "OFF_FOLIO_INDEX": ("folio", "index"),
    "OFF_FOLIO_FLAGS_1": ("folio", "_flags_1"),
    "OFF_ADDRESS_SPACE_HOST": ("address_space", "host"),
}

# Enumerators the programs test bits with.
ENUMERATORS = {"PG_HEAD_BIT": "PG_head"}


# What the function probes read besides (bpf/gmem_functions.c): memslots.
FUNCTION_MEMBERS = {
    "OFF_SLOT_BASE_GFN": ("kvm_memory_slot", "base_gfn"),
    "OFF_SLOT_NPAGES": ("kvm_memory_slot", "npages"),
    "OFF_SLOT_ID": ("kvm_memory_slot", "id"),
    "OFF_SLOT_GMEM_FILE": ("kvm_memory_slot", "gmem.file"),
    "OFF_SLOT_GMEM_PGOFF": ("kvm_memory_slot", "gmem.pgoff"),
    # A host fault on a guest_memfd mapping (kvm_gmem_fault_user_mapping's vm_fault).
    "OFF_VMF_VMA": ("vm_fault", "vma"),
    "OFF_VMF_PGOFF": ("vm_fault", "pgoff"),
    "OFF_VMF_ADDRESS": ("vm_fault", "address"),
    "OFF_VMF_FLAGS": ("vm_fault", "flags"),
    "OFF_VMA_VM_FILE": ("vm_area_struct", "vm_file"),
}

# Read where the kernel's BTF has them, else -1 (the program does without): a vCPU's
# struct kvm_run, for the gpa of a memory fault exit. KVM's structs are in the kvm
# module's BTF, absent while KVM is not loaded.
OPTIONAL_MEMBERS = {
    "OFF_FILE_PRIVATE_DATA": ("file", "private_data"),
    "OFF_KVM_VCPU_RUN": ("kvm_vcpu", "run"),
}


# Members of one struct that a hot program reads with one probe read (each read is
# a helper call): a window from the first member to the end of the last, as -D
# <NAME>_WIN_LO (bytes) and <NAME>_WIN_WORDS. All are 8-byte words.
WINDOWS = {
    "FOLIO": ("OFF_FOLIO_FLAGS", "OFF_FOLIO_MAPPING", "OFF_FOLIO_INDEX"),
    "INODE": ("OFF_INODE_I_SB", "OFF_INODE_I_INO"),
}
MAX_WINDOW_WORDS = 32  # 256 bytes of BPF stack at most


def window_defines(offsets: dict[str, int]) -> dict[str, int]:
    defines = {}
    for name, members in WINDOWS.items():
        lo = min(offsets[m] for m in members)
        words = (max(offsets[m] for m in members) + 8 - lo) // 8
        if any(offsets[m] % 8 for m in members) or words > MAX_WINDOW_WORDS:
            raise GmemtraceError(
                f"unexpected struct layout in this kernel's BTF: {', '.join(members)} at "
                f"{', '.join(str(offsets[m]) for m in members)}; please report it"
            )
        defines[f"{name}_WIN_LO"] = lo
        defines[f"{name}_WIN_WORDS"] = words
    return defines


def offset_defines(
    btf: Btf, members: dict[str, tuple[str, str]] = MEMBERS, windows: bool = True
) -> dict[str, int]:
    """{-D name: byte offset} for every entry of `members`; with `windows`, the
    ENUMERATORS' values, the WINDOWS over them and the OPTIONAL_MEMBERS (-1: absent)."""
    defines = {name: btf.member(s, m).offset_bytes for name, (s, m) in members.items()}
    if windows:
        defines.update(window_defines(defines))
        defines.update({name: btf.enumerator(e) for name, e in ENUMERATORS.items()})
        defines.update(optional_offsets(btf))
    return defines


def optional_offsets(btf: Btf) -> dict[str, int]:
    """OPTIONAL_MEMBERS' offsets, all or none (-1 each) when one is missing."""
    try:
        return {name: btf.member(s, m).offset_bytes for name, (s, m) in OPTIONAL_MEMBERS.items()}
    except BtfError:
        return dict.fromkeys(OPTIONAL_MEMBERS, -1)
