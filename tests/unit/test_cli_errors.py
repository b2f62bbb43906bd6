"""Bad input gets one line on stderr and a documented exit code, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from gmemtrace import cli
from gmemtrace.commands.workload import write_json
from gmemtrace.workload import vmm


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["workload", "nope"],
        ["workload", "mixed", "--pages", "0"],
        ["workload", "mixed", "--pages", "many"],
        ["workload", "mixed", "--pattern", "zigzag"],
        ["workload", "mixed", "--rate", "-3"],
        ["frobnicate"],
        ["doctor", "--colour"],
        ["--comm", "a/b"],
        ["exporter", "--comm", ""],
        ["exporter", "--keep-released", "-1"],
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("gmemtrace: error: ")
    assert err.count("\n") == 1


def test_missing_kvm_device_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(vmm, "KVM_DEVICE", str(tmp_path / "kvm"))
    code, err = run(["workload", "mixed"], capsys)
    assert code == 1
    assert err == f"gmemtrace: error: {tmp_path / 'kvm'} does not exist: KVM is not available\n"


def test_unwritable_output_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(cli.UsageError, match="cannot write"):
        write_json(tmp_path / "no" / "such" / "dir.json", {})


def test_help_lists_examples_and_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--pid" in out and "record" in out


def test_module_entry_point_never_prints_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gmemtrace", "workload", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("gmemtrace: error: ")
