"""Kernel struct member offsets the BPF programs need, read from the running kernel's BTF."""

from __future__ import annotations

from gmemtrace.kernel.btf import Btf

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


# What the function probes read besides (bpf/gmem_functions.c).
FUNCTION_MEMBERS = {
    "OFF_VM_FAULT_VMA": ("vm_fault", "vma"),
    "OFF_VM_FAULT_PGOFF": ("vm_fault", "pgoff"),
    "OFF_VM_FAULT_ADDRESS": ("vm_fault", "address"),
    "OFF_VMA_VM_FILE": ("vm_area_struct", "vm_file"),
    "OFF_SLOT_BASE_GFN": ("kvm_memory_slot", "base_gfn"),
    "OFF_SLOT_GMEM_FILE": ("kvm_memory_slot", "gmem.file"),
    "OFF_SLOT_GMEM_PGOFF": ("kvm_memory_slot", "gmem.pgoff"),
}


def offset_defines(btf: Btf, members: dict[str, tuple[str, str]] = MEMBERS) -> dict[str, int]:
    """{-D name: byte offset} for every entry of `members`, and the ENUMERATORS' values."""
    defines = {name: btf.member(s, m).offset_bytes for name, (s, m) in members.items()}
    defines.update({name: btf.enumerator(e) for name, e in ENUMERATORS.items()})
    return defines
