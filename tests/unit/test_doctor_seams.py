"""Doctor on simulated machines: each missing piece is reported with its fix and blocks tracing."""

from pathlib import Path

import pytest

from gmemtrace.doctor import FAIL, Check, Diagnosis, Host, diagnose


def by_name(d: Diagnosis, prefix: str) -> Check:
    return next(c for c in d.checks if c.name.startswith(prefix))


@pytest.fixture
def no_tracefs(tmp_path: Path) -> Host:
    mounts = tmp_path / "mounts"
    mounts.write_text("sysfs /sys sysfs rw 0 0\n")
    return Host(mounts=mounts, tracefs_mountpoint=tmp_path / "absent", load_bpf=False)


def test_unmountable_tracefs_blocks_tracing_with_the_mount_command(no_tracefs: Host) -> None:
    d = diagnose(no_tracefs)
    check = by_name(d, "tracefs")
    assert check.status == FAIL
    assert "mount -t tracefs nodev" in check.fix
    assert not d.can_trace
    assert any(b.startswith("tracefs:") for b in d.blockers)
    assert d.to_json()["can_trace"] is False


def test_missing_headers_block_tracing_with_the_install_command(tmp_path: Path) -> None:
    host = Host(
        lib_modules=tmp_path / "modules", usr_src=tmp_path / "src", environ={}, load_bpf=False
    )
    d = diagnose(host)
    check = by_name(d, "kernel headers")
    assert check.name == "kernel headers (missing)"
    assert check.status == FAIL
    assert "apt-get install linux-headers-" in check.fix
    assert any(b.startswith("kernel headers") for b in d.blockers)


def test_missing_capabilities_say_run_as_root(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\n")
    d = diagnose(Host(proc_status=status, load_bpf=False))
    check = by_name(d, "privileges")
    assert check.status == FAIL
    assert "CAP_BPF" in check.detail and "CAP_SYS_ADMIN" in check.detail
    assert "root" in check.fix
    assert not d.can_trace


def test_missing_btf_is_a_blocker(tmp_path: Path) -> None:
    d = diagnose(Host(btf=tmp_path / "vmlinux", load_bpf=False))
    assert by_name(d, "kernel BTF").status == FAIL
    assert by_name(d, "guest_memfd functions").detail.startswith("BTF: 0")
    assert not d.can_trace


def test_missing_kvm_device_is_reported_with_a_fix(tmp_path: Path) -> None:
    d = diagnose(Host(kvm_device=tmp_path / "kvm", load_bpf=False))
    check = by_name(d, "/dev/kvm")
    assert check.status == FAIL
    assert "No such file" in check.detail
    assert "kvm" in check.fix


def test_json_carries_every_check() -> None:
    d = Diagnosis()
    d.add(Check("a", FAIL, "broken", "fix it"), blocks=True)
    doc = d.to_json()
    assert doc == {
        "can_trace": False,
        "reason": "a: broken",
        "checks": [{"name": "a", "status": "fail", "detail": "broken", "fix": "fix it"}],
        "facts": {},
    }
