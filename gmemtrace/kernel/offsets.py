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
}


def offset_defines(btf: Btf) -> dict[str, int]:
    """{-D name: byte offset} for every member in MEMBERS."""
    return {
        name: btf.member(struct, member).offset_bytes for name, (struct, member) in MEMBERS.items()
    }
