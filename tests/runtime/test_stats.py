"""95 % intervals for accuracies: Wilson's for one accuracy, the paired one for a difference on the same images."""

from __future__ import annotations

import random
from fractions import Fraction
from math import factorial

import pytest

from oatdeploy.runtime.stats import intervals_overlap, mcnemar_exact, paired_difference_interval, wilson_interval


def test_wilson_interval_matches_the_textbook_values() -> None:
    # Wilson (1927) for 81/263 (a common worked example): 0.2553 to 0.3662.
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_interval_narrows_as_one_over_root_n() -> None:
    w500 = wilson_interval(385, 500)
    w2000 = wilson_interval(1540, 2000)
    assert (w500[1] - w500[0]) / (w2000[1] - w2000[0]) == pytest.approx(2.0, rel=0.02)


def test_paired_difference_is_tighter_than_the_separate_intervals() -> None:
    rng = random.Random(0)
    a = [rng.random() < 0.77 for _ in range(1000)]
    b = [x if rng.random() < 0.96 else False for x in a]  # b loses a few images a got right
    diff, lo, hi = paired_difference_interval(a, b)
    assert diff == pytest.approx((sum(b) - sum(a)) / 1000)
    assert lo < diff < hi < 0  # a real drop, resolved on the same images
    wa, wb = wilson_interval(sum(a), 1000), wilson_interval(sum(b), 1000)
    assert intervals_overlap(wa, wb)  # the separate intervals cannot tell
    with pytest.raises(ValueError):
        paired_difference_interval(a, b[:10])


def test_mcnemar_exact_is_the_doubled_binomial_tail() -> None:
    assert mcnemar_exact(0, 5) == 0.0625  # 2 * (1/2)^5: five discordant images, all one way
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(1, 0) == 1.0
    assert mcnemar_exact(40, 16) == pytest.approx(0.0018415547884925, rel=1e-12)  # scipy.stats.binomtest
    for a, b in [(7, 2), (2, 7), (12, 30), (100, 1300)]:
        n, k = a + b, min(a, b)
        tail = sum(Fraction(factorial(n), factorial(i) * factorial(n - i)) for i in range(k + 1)) / 2 ** n
        assert mcnemar_exact(a, b) == pytest.approx(float(min(1, 2 * tail)), rel=1e-9)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)
