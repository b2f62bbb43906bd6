"""tracefs discovery from a mounts table, and the mount attempt's failure report."""

from pathlib import Path

from gmemtrace.kernel import tracefs

MOUNTS = """\
sysfs /sys sysfs rw 0 0
nodev /sys/kernel/tracing tracefs rw,relatime 0 0
"""


def test_mount_point_is_read_from_the_table(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text(MOUNTS)
    assert tracefs.find_mount(table) == Path("/sys/kernel/tracing")
    assert tracefs.ensure_mounted(table) == tracefs.TracefsState(Path("/sys/kernel/tracing"))


def test_unmounted_and_no_mount_point_says_why(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text("sysfs /sys sysfs rw 0 0\n")
    state = tracefs.ensure_mounted(table, tmp_path / "absent")
    assert state.mountpoint is None
    assert "does not exist" in state.error


def test_unreadable_table_means_not_mounted(tmp_path: Path) -> None:
    assert tracefs.find_mount(tmp_path / "nope") is None
