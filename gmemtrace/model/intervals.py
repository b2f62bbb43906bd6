"""Page ranges -> values, stored as runs: cost grows with the number of runs, never with pages."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class IntervalMap(Generic[V]):
    """A total map from the pages [0, size) to values; adjacent equal values are one run."""

    def __init__(self, size: int, default: V) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size
        self._starts: list[int] = [0]
        self._values: list[V] = [default]

    def _split(self, page: int) -> int:
        """Make a run start at `page` (< size); return its index."""
        k = bisect_right(self._starts, page) - 1
        if self._starts[k] == page:
            return k
        self._starts.insert(k + 1, page)
        self._values.insert(k + 1, self._values[k])
        return k + 1

    def assign(self, first: int, end: int, value: V) -> None:
        """Set pages [first, end) to `value` (clipped to the map)."""
        first, end = max(first, 0), min(end, self.size)
        if first >= end:
            return
        i = self._split(first)
        j = self._split(end) if end < self.size else len(self._starts)
        self._starts[i:j] = [first]
        self._values[i:j] = [value]
        # Merge with equal neighbours so that runs stay maximal.
        if i + 1 < len(self._starts) and self._values[i + 1] == value:
            del self._starts[i + 1], self._values[i + 1]
        if i > 0 and self._values[i - 1] == value:
            del self._starts[i], self._values[i]

    def get(self, page: int) -> V:
        if not 0 <= page < self.size:
            raise IndexError(page)
        return self._values[bisect_right(self._starts, page) - 1]

    def runs(self) -> Iterator[tuple[int, int, V]]:
        """(first, end, value) for every run, in page order (empty map: none)."""
        if self.size == 0:
            return
        for k, start in enumerate(self._starts):
            end = self._starts[k + 1] if k + 1 < len(self._starts) else self.size
            yield start, end, self._values[k]

    def runs_in(self, first: int, end: int) -> list[tuple[int, int, V]]:
        """The runs that overlap [first, end), clipped to it (a bisection, not a walk)."""
        first, end = max(first, 0), min(end, self.size)
        if first >= end:
            return []
        k = bisect_right(self._starts, first) - 1
        out = []
        while k < len(self._starts) and self._starts[k] < end:
            run_end = self._starts[k + 1] if k + 1 < len(self._starts) else self.size
            out.append((max(first, self._starts[k]), min(end, run_end), self._values[k]))
            k += 1
        return out

    def count(self, value: V) -> int:
        """How many pages hold `value`."""
        return sum(end - first for first, end, v in self.runs() if v == value)

    def resize(self, size: int, default: V) -> None:
        """Grow (new pages get `default`) or shrink the map."""
        if size > self.size:
            old = self.size
            self.size = size
            if old == 0:
                self._starts, self._values = [0], [default]
            else:
                self._starts.append(old)
                self._values.append(default)
                if self._values[-2] == default:
                    del self._starts[-1], self._values[-1]
        elif size < self.size:
            self.size = size
            keep = bisect_right(self._starts, max(size - 1, 0))
            del self._starts[keep:], self._values[keep:]

    def __len__(self) -> int:
        """The number of runs."""
        return len(self._starts) if self.size else 0
