"""How much an accuracy measured on n images can be trusted: 95 % intervals, torch-free (device side too)."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for `correct` successes in `n` trials.

    Unlike p ± z·se it stays inside [0, 1] and keeps its coverage near 0 and 1 and for small n, where
    robust accuracies of weak variants and quick `--limit` evaluations live.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference_interval(a: Sequence[bool], b: Sequence[bool], z: float = Z95) -> tuple[float, float, float]:
    """Accuracy of b minus accuracy of a on the same images: (difference, low, high) at 95 %.

    Two variants scored on the same images disagree on few of them, so the difference is much better
    determined than the two separate intervals suggest; only the discordant images carry its variance.
    """
    if len(a) != len(b) or not a:
        raise ValueError("paired accuracies need the same, non-empty set of images")
    n = len(a)
    gained = sum(1 for i in range(n) if b[i] and not a[i])
    lost = sum(1 for i in range(n) if a[i] and not b[i])
    diff = (gained - lost) / n
    var = ((gained + lost) / n - diff * diff) / n
    half = z * math.sqrt(max(var, 0.0))
    return (diff, diff - half, diff + half)


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two [low, high] intervals share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: two variants scored on the same images, `only_a` images right only
    by the first and `only_b` only by the second.

    Under "equally accurate" each discordant image is a fair coin, so the smaller count is a Binomial(n, ½)
    tail, doubled. Exact integer arithmetic (no scipy on the device), so it holds for any n.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts cannot be negative")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2 ** n)
