"""The possible-CPU list, in the order per-CPU map values come in."""

from pathlib import Path

import pytest

from gmemtrace.probes.program import possible_cpus


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0\n", [0]), ("0-3\n", [0, 1, 2, 3]), ("0-1,4,6-7\n", [0, 1, 4, 6, 7])],
)
def test_ranges_and_singles(tmp_path: Path, text: str, cpus: list[int]) -> None:
    path = tmp_path / "possible"
    path.write_text(text)
    assert possible_cpus(path) == cpus


def test_this_machine_lists_every_online_cpu() -> None:
    import os

    assert set(os.sched_getaffinity(0)) <= set(possible_cpus())
