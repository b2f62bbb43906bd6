"""The parts of the machine that doctor and the tracer read; tests point them elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gmemtrace.kernel import caps, tracefs
from gmemtrace.kernel import headers as kheaders
from gmemtrace.kernel.btf import VMLINUX_BTF
from gmemtrace.kernel.kallsyms import KALLSYMS


@dataclass(frozen=True)
class Host:
    """Paths to the machine's facts; the defaults are the real ones."""

    kvm_device: Path = Path("/dev/kvm")
    btf: Path = VMLINUX_BTF
    kallsyms: Path = KALLSYMS
    mounts: Path = tracefs.PROC_MOUNTS
    tracefs_mountpoint: Path = tracefs.DEFAULT_MOUNTPOINT
    lib_modules: Path = kheaders.LIB_MODULES
    usr_src: Path = kheaders.USR_SRC
    proc_status: Path = caps.PROC_STATUS
    environ: dict[str, str] | None = None
    load_bpf: bool = True  # load the tiny probe programs (needs everything above)
