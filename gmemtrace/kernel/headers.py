"""Kernel headers for bcc's compiler: matching, user-chosen, or a merged distro fallback.

Order: /lib/modules/$(uname -r)/build; BCC_KERNEL_SOURCE if the user set it;
else the newest Debian linux-headers package, whose arch folder and -common
folder are merged into one symlink tree in gmemtrace's cache and handed to bcc
through BCC_KERNEL_SOURCE. Never writes into /lib/modules.

The fallback's struct layouts are not the running kernel's: gmemtrace takes
every kernel struct offset from BTF, and uses the headers only for macros,
helpers and tracepoint argument types.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LIB_MODULES = Path("/lib/modules")
USR_SRC = Path("/usr/src")
ENV_VAR = "BCC_KERNEL_SOURCE"

MATCHING, USER, FALLBACK, MISSING = "matching", "user", "fallback", "missing"

_DEBIAN_ARCH_DIR = re.compile(r"^linux-headers-(?P<abi>\d+\.\d+\.\d+-\d+)-(?P<flavour>.+)$")


def cache_dir() -> Path:
    """gmemtrace's cache folder ($GMEMTRACE_CACHE, else $XDG_CACHE_HOME/gmemtrace)."""
    if explicit := os.environ.get("GMEMTRACE_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gmemtrace"


@dataclass(frozen=True)
class Headers:
    """Which headers bcc will use, and the environment that makes it so."""

    kind: str  # MATCHING, USER, FALLBACK or MISSING
    path: Path | None
    detail: str
    env: dict[str, str]

    @property
    def usable(self) -> bool:
        return self.kind != MISSING


def _version_key(abi: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.split(r"[.-]", abi))


def newest_debian_headers(src: Path = USR_SRC) -> tuple[Path, Path] | None:
    """(arch folder, common folder) of the newest complete Debian headers package."""
    candidates = []
    try:
        entries = list(src.iterdir())
    except OSError:
        return None
    for entry in entries:
        match = _DEBIAN_ARCH_DIR.match(entry.name)
        if not match or match["flavour"].startswith("common"):
            continue
        common = src / f"linux-headers-{match['abi']}-common"
        if (entry / "include").is_dir() and common.is_dir():
            candidates.append((_version_key(match["abi"]), entry, common))
    if not candidates:
        return None
    _, arch, common = max(candidates)
    return arch, common


def merged_tree(arch: Path, common: Path, cache: Path) -> Path:
    """A symlink tree of `common` overlaid with `arch`, built once in `cache`."""
    target = cache / "headers" / arch.name
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{arch.name}-", dir=target.parent))
    try:
        for folder in (common, arch):  # arch last: its generated headers win
            subprocess.run(
                ["cp", "-as", "--remove-destination", f"{folder}/.", str(staging)],
                check=True,
                capture_output=True,
            )
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve(
    release: str | None = None,
    environ: dict[str, str] | None = None,
    lib_modules: Path = LIB_MODULES,
    src: Path = USR_SRC,
    cache: Path | None = None,
) -> Headers:
    """Find headers for bcc, building the merged fallback tree if that is what it takes."""
    release = release or platform.release()
    environ = dict(os.environ) if environ is None else environ
    build = lib_modules / release / "build"
    if (build / "include").is_dir():
        return Headers(MATCHING, build, f"{build} matches the running kernel {release}", {})
    if user := environ.get(ENV_VAR):
        path = Path(user)
        if (path / "include").is_dir():
            return Headers(USER, path, f"{ENV_VAR}={user} (set by the user)", {ENV_VAR: user})
        return Headers(MISSING, path, f"{ENV_VAR}={user} has no include/ folder", {})
    debian = newest_debian_headers(src)
    if debian is None:
        return Headers(
            MISSING, None, f"no headers for {release}: none in {build}, none under {src}", {}
        )
    arch, common = debian
    try:
        tree = merged_tree(arch, common, cache or cache_dir())
    except (OSError, subprocess.CalledProcessError) as err:
        return Headers(MISSING, None, f"cannot merge {arch.name} with {common.name}: {err}", {})
    return Headers(
        FALLBACK,
        tree,
        f"{arch.name} (+ {common.name}) for {release}; struct layouts come from BTF",
        {ENV_VAR: str(tree)},
    )
