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
    sample_terms,
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


def test_sampled_terms_attack_a_share_lambda_of_each_lambdas_samples() -> None:
    """The `sampled` objective keeps CE(x_adv) for a λ sample with probability λ, so its expected loss is
    the paper's (1 − λ)·CE(x) + λ·CE(x_adv)."""
    lams = list(DEFAULT_LAMBDAS)
    values = torch.tensor(lams)
    gen = torch.Generator().manual_seed(0)
    attacked, drawn = torch.zeros(len(lams)), torch.zeros(len(lams))
    for _ in range(400):
        idx, n_clean = sample_indices(64, lams, gen, clean_share=0.5)
        ordered, n_first = sample_terms(idx, n_clean, lams, gen)
        assert torch.equal(ordered[:n_clean], idx[:n_clean])  # λ = 0 first, untouched
        assert torch.equal(torch.bincount(ordered, minlength=6), torch.bincount(idx, minlength=6))
        assert n_clean <= n_first <= 64
        attacked += torch.bincount(ordered[n_first:], minlength=6)
        drawn += torch.bincount(ordered, minlength=6)
    share = attacked / drawn
    assert share[0] == 0 and share[-1] == 1  # λ = 0 never, λ = 1 always
    assert (share[1:-1] - values[1:-1]).abs().max() < 0.03, share
