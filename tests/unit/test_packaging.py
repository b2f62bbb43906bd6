"""An installed wheel, not only the source tree, carries the BPF sources and the command."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("gmemtrace-*.whl")
    return found


def test_wheel_ships_bpf_sources_and_console_script(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "gmemtrace/bpf/selftest.c" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "gmemtrace = gmemtrace.cli:main" in text


def test_installed_wheel_finds_its_bpf_sources(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = "from gmemtrace.paths import bpf_dir; print(bpf_dir())"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    found = Path(result.stdout.strip())
    assert found == target / "gmemtrace" / "bpf"
    assert (found / "selftest.c").is_file()
    script = subprocess.run(
        [str(target / "bin" / "gmemtrace"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert script.returncode == 0, script.stderr
    assert "guest_memfd" in script.stdout
