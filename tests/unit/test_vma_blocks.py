"""The mapping trie's keys: aligned blocks that cover a range exactly, and few of them."""

from hypothesis import given
from hypothesis import strategies as st

from gmemtrace.probes.vmas import ADDR_BITS, blocks

pages = st.integers(0, (1 << (ADDR_BITS - 12)) - 1)


@given(pages, st.integers(1, 1 << 30))
def test_blocks_tile_the_range_with_aligned_powers_of_two(first: int, count: int) -> None:
    start = first << 12
    end = min((first + count) << 12, 1 << ADDR_BITS)
    out = list(blocks(start, end))
    at = start
    for addr, bits in out:
        assert addr == at, "contiguous and in order"
        assert bits >= 12 and addr % (1 << bits) == 0, "aligned to its own size"
        at += 1 << bits
    assert at == end
    assert len(out) <= 2 * (ADDR_BITS - 12), "logarithmic in the range size"


def test_a_tebibyte_mapping_takes_a_handful_of_keys() -> None:
    assert list(blocks(1 << 40, 2 << 40)) == [(1 << 40, 40)]
    assert len(list(blocks(0x7F0000001000, 0x7F0000001000 + (1 << 40)))) < 60
