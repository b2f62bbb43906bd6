"""The one module that imports bcc: compile, load and attach the BPF C in bpf/."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel.btf import Btf
from gmemtrace.kernel.headers import Headers
from gmemtrace.paths import bpf_dir, bpf_source

DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc")
BCC_FIX = "apt-get install python3-bpfcc (Debian's bcc; PyPI's 'bcc' is another package)"


def import_bcc() -> ModuleType:
    """bcc from the environment, else straight from Debian's python3-bpfcc folder."""
    if (loaded := sys.modules.get("bcc")) is not None:
        return loaded
    try:
        import bcc

        module: ModuleType = bcc
        return module
    except ImportError:
        pass
    except Exception as err:  # libbcc.so missing or broken: bcc raises at import
        raise GmemtraceError(f"bcc does not import: {err}; fix: {BCC_FIX}") from None
    init = DEBIAN_BCC / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "bcc", init, submodule_search_locations=[str(DEBIAN_BCC)]
    )
    if not init.is_file() or spec is None or spec.loader is None:
        raise GmemtraceError(f"bcc is not installed; fix: {BCC_FIX}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bcc"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules["bcc"]
        raise GmemtraceError(f"bcc does not import: {err}; fix: {BCC_FIX}") from None
    return module


def bcc_version() -> str:
    return str(getattr(import_bcc(), "__version__", "unknown"))


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Collect what C code (libbcc, clang, the verifier) writes to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    lines: list[str] = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def program_text(*sources: str) -> str:
    """The sources as one C text: bcc rewrites map calls (table.lookup() ...) only in
    its main source, never in included headers. #line keeps error positions true."""
    parts = []
    for name in sources:
        path = bpf_source(name)
        parts.append(f'#line 1 "{path}"\n{path.read_text()}')
    return "\n".join(parts)


# Warnings clang raises inside the kernel's own headers of some kernels (Debian's 6.12:
# per-CPU address spaces, nocf_check), printed on every start, about nothing of ours.
QUIET = ("-Wno-duplicate-decl-specifier", "-Wno-ignored-attributes")


def compile_program(
    sources: tuple[str, ...], defines: Mapping[str, str | int], headers: Headers
) -> Any:  # a bcc.BPF: bcc has no type information
    """Compile and load bpf/`sources` (one text) with -D`defines`; bcc attaches auto-probes."""
    cflags = [f"-I{bpf_dir()}", *QUIET, *(f"-D{name}={value}" for name, value in defines.items())]
    return compile_text(program_text(*sources), headers, cflags)


def compile_text(text: str, headers: Headers, cflags: list[str] | None = None) -> Any:
    """Compile and load a BPF C text with the kernel headers found for bcc."""
    with _environment(headers.env):
        return import_bcc().BPF(text=text.encode(), cflags=cflags or [])


_ERRNO_NAMES = {
    "Operation not permitted": "EPERM",
    "Permission denied": "EACCES",
    "Invalid argument": "EINVAL",
    "No such file or directory": "ENOENT",
    "Function not implemented": "ENOSYS",
}


def failure_reason(err: BaseException, stderr: list[str]) -> str:
    """One line saying why bcc failed, from its exception and what C code printed."""
    for line in reversed(stderr):
        if match := re.search(r"Failed to (\w+) .*?: (.+)$", line):
            verb, message = match.groups()
            where = "load" if verb == "load" else verb
            return f"{_ERRNO_NAMES.get(message.strip(), message.strip())} at {where}"
    for line in stderr:
        if "error:" in line:
            return line.strip()
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@dataclass(frozen=True)
class ProgramCheck:
    """Whether one BPF program type loads (and attaches) on this kernel."""

    kind: str
    works: bool
    detail: str


PROGRAM_TYPES = ("tracepoint", "raw_tracepoint", "fentry", "kprobe", "ringbuf")


def check_program_type(kind: str, headers: Headers, target_function: str) -> ProgramCheck:
    """Load the `kind` program of bpf/selftest.c, attach it, and detach it again."""
    defines: dict[str, str | int] = {f"CHECK_{kind.upper()}": 1}
    if kind == "fentry":
        defines["FENTRY_TARGET"] = target_function
    program = None
    with captured_stderr() as stderr:
        try:
            program = compile_program(("selftest.c",), defines, headers)
            if kind == "kprobe":
                program.attach_kprobe(event=target_function.encode(), fn_name=b"check_kprobe")
        except Exception as err:
            failure: BaseException | None = err
        else:
            failure = None
        finally:
            if program is not None:
                program.cleanup()
    if failure is not None:
        return ProgramCheck(kind, False, failure_reason(failure, stderr))
    where = f" on {target_function}" if kind in ("fentry", "kprobe") else ""
    return ProgramCheck(kind, True, f"loaded and attached{where}")


NO_KPROBES = "kernel has no kprobes (no kprobe_events in tracefs: CONFIG_KPROBES off)"


def check_program_types(
    kinds: tuple[str, ...], headers: Headers, btf: Btf | None, tracefs: Path
) -> dict[str, ProgramCheck]:
    """check_program_type() for each kind, attaching function programs to a guest_memfd
    function where BTF has one; a kprobe failure on a kernel without kprobes says so."""
    target = "kvm_gmem_fallocate"
    if btf is not None and not btf.has_function(target):
        target = "vfs_read"
    out = {}
    for kind in kinds:
        check = check_program_type(kind, headers, target)
        if kind == "kprobe" and not check.works and not (tracefs / "kprobe_events").exists():
            check = ProgramCheck(kind, False, NO_KPROBES)
        out[kind] = check
    return out


def handover(
    sources: tuple[str, ...],
    defines: Mapping[str, str | int],
    headers: Headers,
    maps: tuple[str, ...],
) -> tuple[dict[str, Any], list[int]]:
    """Compile, load and attach, for another process to hold (gmemtrace/probes/loader.py):
    (metadata naming each descriptor by its index, the descriptors). The attachments are
    every perf event and BPF link this process has: bcc made them all."""
    program = compile_program(sources, defines, headers)
    lib = import_bcc().lib
    fds: list[int] = []
    meta: dict[str, Any] = {"maps": {}, "attachments": []}
    for name in maps:
        key = lib.bpf_table_key_desc(program.module, name.encode()).decode()
        leaf = lib.bpf_table_leaf_desc(program.module, name.encode()).decode()
        meta["maps"][name] = {"fd": len(fds), "key": key, "leaf": leaf}
        fds.append(program[name.encode()].map_fd)
    for entry in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue
        if target in ("anon_inode:[perf_event]", "anon_inode:bpf_link"):
            meta["attachments"].append(len(fds))
            fds.append(int(entry))
    return meta, fds
