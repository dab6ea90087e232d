"""95 % intervals for accuracies: Wilson's for one accuracy, the paired one for a difference on the same images."""

from __future__ import annotations

import random

import pytest

from oatdeploy.runtime.stats import intervals_overlap, paired_difference_interval, wilson_interval


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
