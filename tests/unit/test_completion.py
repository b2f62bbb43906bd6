"""`gmemtrace completion SHELL`: scripts generated from the parsers, completing in a real bash."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from gmemtrace.workload import SCENARIOS


def script(shell: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "gmemtrace", "completion", shell],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def bash_script() -> str:
    return script("bash")


def complete(bash_script: str, words: list[str]) -> list[str]:
    """What bash offers for the last word of `gmemtrace WORDS...`."""
    line = shlex.join(["gmemtrace", *words]) if words[-1] else "gmemtrace " + " ".join(words)
    program = (
        f"{bash_script}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in ['gmemtrace', *words])})\n"
        f"COMP_CWORD={len(words)}; COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}\n"
        '_shtab_gmemtrace; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return sorted(w.strip() for w in out.stdout.splitlines() if w.strip())


def test_subcommands_and_live_view_options_complete(bash_script: str) -> None:
    assert complete(bash_script, ["re"]) == ["record", "report"]
    assert complete(bash_script, ["--so"]) == ["--sort"]
    assert "--pid" in complete(bash_script, ["--p"])


def test_arguments_of_subcommands_complete(bash_script: str) -> None:
    assert complete(bash_script, ["workload", ""]) == sorted(SCENARIOS)
    assert "--output" in complete(bash_script, ["record", "--"])
    assert complete(bash_script, ["completion", ""]) == ["bash", "tcsh", "zsh"]


def test_every_shell_gets_a_script_and_a_bad_one_a_usage_error() -> None:
    assert "#compdef gmemtrace" in script("zsh")
    assert "complete gmemtrace" in script("tcsh")
    bad = subprocess.run(
        [sys.executable, "-m", "gmemtrace", "completion", "fish"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "fish" in bad.stderr
