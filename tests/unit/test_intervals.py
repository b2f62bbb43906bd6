"""IntervalMap against a naive per-page list, for any sequence of assignments."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gmemtrace.model.intervals import IntervalMap

SIZE = 64
ops = st.lists(
    st.tuples(st.integers(-4, SIZE + 4), st.integers(-4, SIZE + 4), st.sampled_from("abc")),
    max_size=40,
)


@given(ops)
@settings(max_examples=300)
def test_assignments_match_a_naive_model(assignments: list[tuple[int, int, str]]) -> None:
    m = IntervalMap(SIZE, "u")
    naive = ["u"] * SIZE
    for first, end, value in assignments:
        m.assign(first, end, value)
        for page in range(max(first, 0), min(end, SIZE)):
            naive[page] = value
    assert [m.get(p) for p in range(SIZE)] == naive
    runs = list(m.runs())
    assert runs[0][0] == 0 and runs[-1][1] == SIZE
    assert all(a[1] == b[0] for a, b in itertools.pairwise(runs))
    assert all(a[2] != b[2] for a, b in itertools.pairwise(runs)), "runs are maximal"
    for value in "abcu":
        assert m.count(value) == naive.count(value)


@given(ops, st.integers(-4, SIZE + 4), st.integers(-4, SIZE + 4))
@settings(max_examples=300)
def test_runs_in_a_range_are_the_runs_clipped_to_it(
    assignments: list[tuple[int, int, str]], first: int, end: int
) -> None:
    m = IntervalMap(SIZE, "u")
    for a, b, value in assignments:
        m.assign(a, b, value)
    lo, hi = max(first, 0), min(end, SIZE)
    clipped = [(max(a, lo), min(b, hi), v) for a, b, v in m.runs() if a < hi and b > lo < hi]
    assert m.runs_in(first, end) == clipped


@given(ops, st.integers(0, SIZE * 2))
def test_resize_keeps_pages_and_fills_new_ones(
    assignments: list[tuple[int, int, str]], new_size: int
) -> None:
    m = IntervalMap(SIZE, "u")
    for first, end, value in assignments:
        m.assign(first, end, value)
    before = [m.get(p) for p in range(SIZE)]
    m.resize(new_size, "z")
    expected = (before + ["z"] * new_size)[:new_size]
    assert [m.get(p) for p in range(new_size)] == expected
    assert sum(e - f for f, e, _ in m.runs()) == new_size


def test_a_tebibyte_of_pages_costs_runs_not_pages() -> None:
    pages = (1 << 40) // 4096
    m = IntervalMap(pages, "shared")
    for i in range(1000):
        m.assign(i * (pages // 1000), i * (pages // 1000) + 7, "private")
    assert len(m) == 2000  # private, shared, private, ... from page 0
    assert m.count("private") == 7000
    assert m.count("shared") == pages - 7000
