"""Inclusive id ranges ``(first, last)``: the arithmetic of gaps, repairs and coverage."""

from __future__ import annotations

from collections.abc import Iterable

Range = tuple[int, int]


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, with overlapping and adjacent ranges joined."""
    merged: list[Range] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def clip(ranges: Iterable[Range], lo: int, hi: int) -> list[Range]:
    """Ranges intersected with [lo, hi]."""
    return [(max(a, lo), min(b, hi)) for a, b in ranges if b >= lo and a <= hi]


def size(ranges: Iterable[Range]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def subtract(ranges: list[Range], minus: list[Range]) -> list[Range]:
    """Ranges minus other (merged) ranges."""
    out = []
    for a, b in ranges:
        start = a
        for c, d in minus:
            if d < start or c > b:
                continue
            if c > start:
                out.append((start, c - 1))
            start = max(start, d + 1)
        if start <= b:
            out.append((start, b))
    return out


def intersect(ranges: list[Range], other: list[Range]) -> list[Range]:
    return subtract(ranges, subtract(ranges, other))
