"""What tracing needs, each with its check, its fix and whether it blocks: `gmemtrace doctor`
prints them all; a capture stops at the first that blocks, in the same words."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel import caps, tracefs
from gmemtrace.kernel import headers as kheaders
from gmemtrace.kernel.btf import Btf, BtfError
from gmemtrace.kernel.host import Host
from gmemtrace.paths import bpf_source
from gmemtrace.probes import bcc_backend


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str  # what was found
    value: Any = None  # what a capture goes on with (Btf, tracefs mountpoint, Headers)
    label: str = ""  # doctor's row name, where it says more than the requirement's name


@dataclass(frozen=True)
class Requirement:
    name: str
    check: Callable[[Host], Outcome]
    fix: Callable[[Host], str]
    # The capture's one line, from what was found and the fix.
    message: Callable[[Outcome, str], str]

    def failure(self, outcome: Outcome, host: Host) -> str:
        return self.message(outcome, self.fix(host))


def _privileges(host: Host) -> Outcome:
    missing = caps.missing_for_tracing(host.proc_status)
    if missing:
        return Outcome(False, f"euid {os.geteuid()}; missing {', '.join(missing)}", missing)
    held = ", ".join(sorted(caps.TRACING_CAPS))
    return Outcome(True, f"euid {os.geteuid()}; {held}")


def _btf(host: Host) -> Outcome:
    try:
        btf = Btf.load(host.btf)
    except BtfError as err:
        return Outcome(False, str(err))
    return Outcome(True, f"{host.btf}, {btf.type_count} types", btf)


def _tracefs(host: Host) -> Outcome:
    state = tracefs.ensure_mounted(host.mounts, host.tracefs_mountpoint)
    if state.mountpoint is None:
        return Outcome(False, str(state.error))
    how = "was not mounted; mounted now" if state.mounted_now else "mounted"
    return Outcome(True, f"{how} at {state.mountpoint}", state.mountpoint)


def _bcc(host: Host) -> Outcome:
    try:
        return Outcome(True, f"version {bcc_backend.bcc_version()}")
    except GmemtraceError as err:
        return Outcome(False, str(err).split("; fix:")[0])


def _headers(host: Host) -> Outcome:
    found = kheaders.resolve(environ=host.environ, lib_modules=host.lib_modules, src=host.usr_src)
    return Outcome(found.usable, found.detail, found, f"kernel headers ({found.kind})")


HEADERS_FIX = "apt-get install linux-headers-$(dpkg --print-architecture)"

# In the order a capture checks them.
REQUIREMENTS = (
    Requirement(
        "privileges",
        _privileges,
        lambda host: "run as root (sudo gmemtrace ...)",
        lambda o, fix: f"tracing needs {', '.join(o.value)}; run it as root (sudo gmemtrace ...)",
    ),
    Requirement(
        "kernel BTF",
        _btf,
        lambda host: "a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        lambda o, fix: f"{o.detail}; fix: {fix}",
    ),
    Requirement(
        "tracefs",
        _tracefs,
        lambda host: f"mount -t tracefs nodev {host.tracefs_mountpoint}",
        lambda o, fix: f"tracefs is not mounted ({o.detail}); fix: {fix}",
    ),
    Requirement(
        "bcc",
        _bcc,
        lambda host: bcc_backend.BCC_FIX,
        lambda o, fix: f"bcc is not installed; fix: {fix}",
    ),
    Requirement(
        "kernel headers",
        _headers,
        lambda host: HEADERS_FIX,
        lambda o, fix: f"no kernel headers for bcc ({o.detail}); fix: {fix}",
    ),
)


@dataclass(frozen=True)
class Met:
    """What a capture goes on with once every requirement is met."""

    btf: Btf
    tracefs: Path
    headers: kheaders.Headers


def check_all(host: Host) -> list[tuple[Requirement, Outcome]]:
    """Every requirement's outcome (doctor)."""
    return [(req, req.check(host)) for req in REQUIREMENTS]


def require_all(host: Host) -> Met:
    """Every requirement met, or a GmemtraceError for the first one that is not."""
    values = {}
    for req in REQUIREMENTS:
        outcome = req.check(host)
        if not outcome.ok:
            raise GmemtraceError(req.failure(outcome, host))
        values[req.name] = outcome.value
    return Met(values["kernel BTF"], values["tracefs"], values["kernel headers"])


# --- the tracepoints the programs attach ---------------------------------------

_TRACEPOINT = re.compile(r"^\s*TRACEPOINT_PROBE\((\w+),\s*(\w+)\)", re.MULTILINE)
_RAW_TRACEPOINT = re.compile(r"^\s*RAW_TRACEPOINT_PROBE\((\w+)\)", re.MULTILINE)
_RAW_CATEGORIES = {
    "page_fault_user": "exceptions",
    "mm_filemap_add_to_page_cache": "filemap",
    "mm_filemap_delete_from_page_cache": "filemap",
}
# Attached only where they exist (bpf/gmem_tracepoints.c: #ifdef HAVE_TP_...).
OPTIONAL_TRACEPOINTS = ("kvm/kvm_page_fault",)


def attached_tracepoints(source: str = "gmem_tracepoints.c") -> tuple[str, ...]:
    """ "category/name" of every tracepoint the tracepoint programs attach, read from their
    C source: the list doctor checks can never drift from what is attached."""
    text = bpf_source(source).read_text()
    found = [f"{cat}/{name}" for cat, name in _TRACEPOINT.findall(text)]
    found += [f"{_RAW_CATEGORIES[name]}/{name}" for name in _RAW_TRACEPOINT.findall(text)]
    return tuple(sorted(set(found)))
