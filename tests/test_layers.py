"""FiLM, dual BN, slimmable layers: shapes, routing by index, and the fold affines."""

from __future__ import annotations

import torch

from oatdeploy.lambdas import build_table
from oatdeploy.nn import (
    DualBN2d,
    FiLM,
    FiLMSpec,
    LambdaLinear,
    LinearFiLM,
    SlimConv2d,
    SlimLinear,
    SwitchableDualBN2d,
    SwitchableFiLM,
    channels_for,
)


def test_film_shapes_and_identity_start() -> None:
    film = FiLM(channels=8, enc_dim=16)
    x = torch.randn(4, 8, 5, 5)
    m, s = film.coefficients(torch.randn(1, 16))
    assert m.shape == s.shape == (1, 8)
    assert film(x, torch.randn(4, 16)).shape == x.shape
    with torch.no_grad():
        film.MLP[2].weight.zero_()
    assert torch.allclose(film(x, torch.randn(4, 16)), x)  # the output bias alone is the identity


def test_film_coefficients_are_leaky_relu_activated() -> None:
    film = FiLM(channels=3, enc_dim=4)
    with torch.no_grad():
        film.MLP[2].bias.fill_(-5.0)
        film.MLP[2].weight.zero_()
    m, s = film.coefficients(torch.zeros(1, 4))
    assert torch.allclose(m, torch.full_like(m, -0.05)) and torch.allclose(s, torch.full_like(s, -0.05))


def test_paper_init_starts_far_from_the_identity() -> None:
    torch.manual_seed(0)
    m, _ = FiLM(channels=64, enc_dim=128, identity_init=False).coefficients(build_table("rand", [0.1, 1.0], 128))
    assert m.abs().mean() < 0.3  # the reference's init: scale near 0, not 1


def test_linear_film_is_a_per_lambda_table_starting_at_the_identity() -> None:
    """With orthonormal encodings a step on one λ's samples leaves every other λ's (scale, shift) untouched."""
    for kind in ("rand", "onehot", "dct"):
        enc = build_table(kind, [0.0, 0.1, 0.4, 1.0], 16)
        film = LinearFiLM(channels=5, enc_dim=16)
        x = torch.randn(3, 5, 4, 4)
        assert torch.equal(film(x, enc[[1, 1, 1]]), x)
        before = [t.detach().clone() for t in film.coefficients(enc)]
        film(x, enc[[3, 3, 3]]).square().sum().backward()
        with torch.no_grad():
            film.weight -= 0.1 * film.weight.grad
        after = film.coefficients(enc)
        for b, a in zip(before, after, strict=True):
            assert torch.allclose(a[:3], b[:3], atol=1e-6), kind  # λ = 0, 0.1, 0.4 unmoved
            assert not torch.allclose(a[3], b[3]), kind  # λ = 1 learned


def test_lambda_linear_is_a_per_lambda_table_starting_at_zero() -> None:
    """The classifier's correction: zero at the start (the shared classifier), then one row per λ."""
    enc = build_table("rand", [0.0, 0.1, 0.4, 1.0], 16)
    head = LambdaLinear(in_features=6, out_features=3, enc_dim=16)
    feat = torch.randn(4, 6)
    assert torch.equal(head(feat, enc[[2]]), torch.zeros(4, 3))
    head(feat, enc[[3, 3, 3, 3]]).sum().backward()
    with torch.no_grad():
        head.weight -= 0.1 * head.weight.grad
    dw, db = head.tables(enc)
    assert dw.shape == (4, 3, 6) and db.shape == (4, 3)
    assert dw[:3].abs().max() < 1e-6 and db[:3].abs().max() < 1e-6  # λ = 0, 0.1, 0.4 unmoved
    assert dw[3].abs().min() > 0 and db[3].abs().min() > 0  # λ = 1 learned
    per_sample = head(feat, enc[[0, 3, 3, 1]])  # each sample read through its own λ's row
    assert torch.allclose(per_sample[1:3], feat[1:3] @ dw[3].T + db[3], atol=1e-6)
    assert torch.allclose(per_sample[[0, 3]], torch.zeros(2, 3), atol=1e-6)


def test_dual_bn_routes_leading_samples_to_clean_bn() -> None:
    bn = DualBN2d(3).eval()
    bn.BN_c.running_mean.fill_(1.0)
    bn.BN_a.running_mean.fill_(-1.0)
    x = torch.zeros(5, 3, 2, 2)
    out = bn(x, n_clean=2)
    assert (out[:2] < 0).all() and (out[2:] > 0).all()
    assert (bn(x, 0) > 0).all() and (bn(x, 5) < 0).all()


def test_dual_bn_training_updates_only_the_routed_statistics() -> None:
    bn = DualBN2d(2).train()
    bn(torch.randn(4, 2, 3, 3) + 3.0, n_clean=4)
    assert (bn.BN_c.running_mean > 0.1).all()
    assert torch.equal(bn.BN_a.running_mean, torch.zeros(2))


def test_switchable_modules_keep_private_state_per_width() -> None:
    widths = [0.5, 1.0]
    chans = channels_for(8, widths)
    assert chans == [4, 8]
    sbn, sfilm = SwitchableDualBN2d(chans), SwitchableFiLM(chans, FiLMSpec(6))
    x_small, x_full = torch.randn(2, 4, 3, 3), torch.randn(2, 8, 3, 3)
    assert sbn(x_small, 1, 0).shape == x_small.shape and sbn(x_full, 1, 1).shape == x_full.shape
    assert sfilm(x_small, torch.randn(2, 6), 0).shape == x_small.shape
    assert sbn.bns[0].BN_c.num_features == 4 and sbn.bns[1].BN_c.num_features == 8


def test_slimmable_conv_and_linear_slice_the_shared_weight() -> None:
    conv = SlimConv2d([2, 3], [4, 8], kernel_size=3, padding=1)
    assert conv.sliced_weight(0).shape == (4, 2, 3, 3)
    assert conv(torch.randn(1, 2, 5, 5), 0).shape == (1, 4, 5, 5)
    assert conv(torch.randn(1, 3, 5, 5), 1).shape == (1, 8, 5, 5)
    assert conv.sliced_weight(0).data_ptr() == conv.weight.data_ptr()  # a view, not a copy
    lin = SlimLinear([4, 8], 10)
    assert lin(torch.randn(2, 4), 0).shape == (2, 10) and lin(torch.randn(2, 8), 1).shape == (2, 10)
    assert channels_for(16, [0.25, 0.3, 1.0]) == [4, 4, 16]
