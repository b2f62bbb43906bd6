"""Where gmemtrace's data files are: in the installed package, or at the top of a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bpf_dir() -> Path:
    """The folder of BPF C sources: `gmemtrace/bpf` in a wheel, `bpf/` in a checkout."""
    for candidate in (_PACKAGE / "bpf", _PACKAGE.parent / "bpf"):
        if (candidate / "selftest.c").is_file():
            return candidate
    raise FileNotFoundError(f"BPF sources not found next to {_PACKAGE}")


def bpf_source(name: str) -> Path:
    return bpf_dir() / name
