"""Before tracing, each missing requirement is one error line naming its fix, exit code 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmemtrace.errors import GmemtraceError
from gmemtrace.kernel.host import Host
from gmemtrace.probes import bcc_backend
from gmemtrace.probes.plan import prepare


@pytest.fixture
def capable(tmp_path: Path) -> Path:
    """A /proc/self/status that holds every capability tracing needs."""
    status = tmp_path / "status"
    status.write_text("Name:\tgmemtrace\nCapEff:\t000001ffffffffff\n")
    return status


def failure(host: Host) -> GmemtraceError:
    with pytest.raises(GmemtraceError) as caught:
        prepare(host=host)
    assert caught.value.exit_code == 1
    assert "\n" not in str(caught.value)
    return caught.value


def test_missing_capabilities(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("CapEff:\t0000000000000000\n")
    err = failure(Host(proc_status=status))
    assert str(err) == (
        "tracing needs CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF; run it as root (sudo gmemtrace ...)"
    )


def test_missing_bcc(capable: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_bcc() -> None:
        raise GmemtraceError("bcc is not installed")

    monkeypatch.setattr(bcc_backend, "import_bcc", no_bcc)
    assert "fix: apt-get install python3-bpfcc" in str(failure(Host(proc_status=capable)))


def test_missing_btf(capable: Path, tmp_path: Path) -> None:
    err = failure(Host(proc_status=capable, btf=tmp_path / "vmlinux"))
    assert str(err).startswith(f"cannot read kernel BTF at {tmp_path / 'vmlinux'}")
    assert "fix: a kernel built with CONFIG_DEBUG_INFO_BTF=y" in str(err)


def test_unmountable_tracefs(capable: Path, tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("sysfs /sys sysfs rw 0 0\n")
    err = failure(Host(proc_status=capable, mounts=mounts, tracefs_mountpoint=tmp_path / "tracing"))
    assert str(err).startswith("tracefs is not mounted")
    assert str(err).endswith(f"fix: mount -t tracefs nodev {tmp_path / 'tracing'}")


def test_missing_headers(capable: Path, tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("nodev /sys/kernel/tracing tracefs rw 0 0\n")
    err = failure(
        Host(
            proc_status=capable,
            mounts=mounts,
            lib_modules=tmp_path / "m",
            usr_src=tmp_path / "src",
            environ={},
        )
    )
    assert str(err).startswith("no kernel headers for bcc")
    assert "fix: apt-get install linux-headers-$(dpkg --print-architecture)" in str(err)
