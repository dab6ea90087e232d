"""λ choices, element-wise sampling with a fixed clean share, encodings."""

from __future__ import annotations

import pytest
import torch

from oatdeploy.config import DEFAULT_LAMBDAS
from oatdeploy.lambdas import (
    build_table,
    check_lambdas,
    check_weights,
    check_widths,
    clean_count,
    sample_indices,
)
from oatdeploy.runtime.errors import OatError


def test_sampling_puts_a_fixed_share_of_clean_samples_first() -> None:
    lams = list(DEFAULT_LAMBDAS)
    gen = torch.Generator().manual_seed(0)
    idx, n_clean = sample_indices(64, lams, gen)
    assert n_clean == 11  # ceil(64 / 6), the paper's share
    assert idx.shape == (64,) and (idx[:n_clean] == 0).all() and (idx[n_clean:] != 0).all()
    counts = torch.bincount(torch.cat([sample_indices(64, lams, gen)[0] for _ in range(200)]), minlength=6)
    nonzero = counts[1:].float()
    assert (nonzero / nonzero.mean() - 1).abs().max() < 0.1  # uniform over the non-zero choices


def test_clean_share_edge_cases() -> None:
    assert clean_count(10, [0.0]) == 10
    assert clean_count(10, [0.4]) == 0
    assert clean_count(10, [0.0, 1.0], clean_share=0.3) == 3
    idx, n = sample_indices(8, [1.0], torch.Generator())
    assert n == 0 and (idx == 0).all()


@pytest.mark.parametrize("kind", ["rand", "onehot", "dct"])
def test_encodings_are_orthonormal_rows(kind: str) -> None:
    table = build_table(kind, DEFAULT_LAMBDAS, dim=128, seed=3)
    assert table.shape == (6, 128)
    assert torch.allclose(table @ table.T, torch.eye(6), atol=1e-5)


def test_rand_encoding_is_reproducible_from_the_seed_and_none_is_lambda() -> None:
    assert torch.equal(build_table("rand", [0, 1], seed=1), build_table("rand", [0, 1], seed=1))
    assert not torch.equal(build_table("rand", [0, 1], seed=1), build_table("rand", [0, 1], seed=2))
    assert torch.equal(build_table("none", [0.0, 0.4]), torch.tensor([[0.0], [0.4]]))


def test_bad_choices_are_rejected() -> None:
    with pytest.raises(OatError, match=r"\[0, 1\]"):
        check_lambdas([0.0, 1.5])
    with pytest.raises(OatError, match=r"\(0, 1\]"):
        check_widths([0.0, 1.0])
    with pytest.raises(OatError, match="unknown λ encoding"):
        build_table("sincos", [0.0])
    assert check_lambdas([1, 0, 0.4, 0]) == [0.0, 0.4, 1.0]


def test_weighted_sampling_follows_the_weights_and_checks_them() -> None:
    lams = list(DEFAULT_LAMBDAS)
    gen = torch.Generator().manual_seed(0)
    weights = check_weights([1, 1, 1, 1, 4], lams)
    draws = torch.cat([sample_indices(60, lams, gen, weights=weights)[0][10:] for _ in range(200)])
    share_of_one = float((draws == lams.index(1.0)).float().mean())
    assert abs(share_of_one - 0.5) < 0.03
    assert check_weights(None, lams) is None
    for bad in ([1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, -2]):
        with pytest.raises(OatError, match="one positive weight per non-zero λ"):
            check_weights(bad, lams)
