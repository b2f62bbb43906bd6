"""The function-probe tiers' program (bpf/gmem_functions.c) and the defines it is built with."""

from __future__ import annotations

from typing import Any

from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.headers import Headers
from gmemtrace.kernel.offsets import FUNCTION_MEMBERS, MEMBERS, offset_defines
from gmemtrace.probes.bcc_backend import compile_program

SOURCES = ("gmem_common.h", "gmem_functions.c")
PROBED = (
    "kvm_gmem_fault_user_mapping",
    "kvm_gmem_get_pfn",
    "kvm_gmem_fallocate",
    "kvm_gmem_release",
    "kvm_gmem_convert_range",
    "kvm_gmem_shareability_setup",
)
TIER_DEFINES = {"fentry": "TIER_FENTRY", "kprobe": "TIER_KPROBE"}


def function_defines(btf: Btf, tier: str, present: set[str], ringbuf_pages: int) -> dict[str, Any]:
    """-D defines: the tier, each probed function the kernel has, BTF offsets."""
    defines: dict[str, Any] = {TIER_DEFINES[tier]: 1, "RINGBUF_PAGES": ringbuf_pages}
    defines.update({f"HAVE_{name}": 1 for name in PROBED if name in present})
    defines.update(offset_defines(btf, MEMBERS | FUNCTION_MEMBERS))
    return defines


def load(btf: Btf, headers: Headers, tier: str, present: set[str], ringbuf_pages: int = 64) -> Any:
    """Compile, load and attach the tier's probes (raises where the kernel refuses them)."""
    return compile_program(SOURCES, function_defines(btf, tier, present, ringbuf_pages), headers)
