"""The paper's reference models (VITA-Group/Once-for-All-Adversarial-Training) as the tests see them.

Written from the architectures, not from the reference's files: `reference_state` gives a state_dict with
its key names and shapes (ResNet34OAT, SlimmableResNet34OAT, WideResNetOAT; dual or single BN), filled with
random values; `reference_forward` is its eval-mode forward on those keys, written with torch.nn.functional
(the reference's BasicBlockOAT orders, FiLM_Layer's leaky-ReLU'd scale and shift, SlimmableLinear's slicing,
fixed-window average pooling), so the tests have an oracle that shares no code with oatdeploy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESNET34 = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # (channels, blocks, first stride)
WRN = {"wrn16_8": (16, 8, 8), "wrn40_2": (40, 2, 24)}  # depth, widen factor, avg_pool2d window


def bn_entries(prefix: str, channels: list[int], dual: bool, slim: bool,
               gen: torch.Generator) -> dict[str, torch.Tensor]:
    """DualBN2d (BN_c/BN_a), nn.BatchNorm2d, SwitchableDualBN2d (BN_c.<i>) or SwitchableBatchNorm2d (bn.<i>)."""
    out = {}
    for kind in ("BN_c", "BN_a") if dual else ("",):
        for i, c in enumerate(channels if slim else channels[-1:]):
            name = ".".join(p for p in (prefix, kind if dual else ("bn" if slim else ""), str(i) if slim else "") if p)
            out[f"{name}.weight"] = 0.6 + 0.8 * torch.rand(c, generator=gen)
            out[f"{name}.bias"] = 0.4 * torch.rand(c, generator=gen) - 0.2
            out[f"{name}.running_mean"] = 0.6 * torch.rand(c, generator=gen) - 0.3
            out[f"{name}.running_var"] = 0.5 + 1.5 * torch.rand(c, generator=gen)
            out[f"{name}.num_batches_tracked"] = torch.tensor(100)
    return out


def film_entries(prefix: str, channels: int, enc_dim: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """FiLM_Layer(channels, in_channels=enc_dim): Linear(d, 2C) → LeakyReLU → Linear(2C, 2C)."""
    hidden = 2 * channels
    return {f"{prefix}.MLP.0.weight": (torch.rand(hidden, enc_dim, generator=gen) - 0.5) / enc_dim ** 0.5,
            f"{prefix}.MLP.0.bias": torch.rand(hidden, generator=gen) - 0.5,
            f"{prefix}.MLP.2.weight": (torch.rand(hidden, hidden, generator=gen) - 0.5) / hidden ** 0.5,
            f"{prefix}.MLP.2.bias": torch.rand(hidden, generator=gen) * 0.5 + 0.5}


def _conv(name: str, cout: int, cin: int, k: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {name: torch.randn(cout, cin, k, k, generator=gen) * (2.0 / (cin * k * k)) ** 0.5}


def reference_state(arch: str, enc_dim: int, dual: bool, widths: list[float] | None = None,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """The reference's state_dict (no `module.` prefix); `widths` makes the slimmable ResNet34."""
    gen = torch.Generator().manual_seed(seed)
    slim = widths is not None
    ws = widths if slim else [1.0]

    def chans(c: int) -> list[int]:
        return [int(c * w) for w in ws]

    sd: dict[str, torch.Tensor] = {}
    if arch == "resnet34":
        sd |= _conv("conv1.weight", 64, 3, 3, gen) | bn_entries("bn1", chans(64), dual, slim, gen)
        sd |= film_entries("film1", 64, enc_dim, gen)
        cin = 64
        for s, (c, n, stride) in enumerate(RESNET34):
            for j in range(n):
                p = f"bundle{s + 1}.{j}"
                sd |= _conv(f"{p}.conv1.weight", c, cin, 3, gen) | bn_entries(f"{p}.bn1", chans(c), dual, slim, gen)
                sd |= _conv(f"{p}.conv2.weight", c, c, 3, gen) | bn_entries(f"{p}.bn2", chans(c), dual, slim, gen)
                if (stride if j == 0 else 1) != 1 or cin != c:
                    sd |= _conv(f"{p}.conv_sc.weight", c, cin, 1, gen)
                    sd |= bn_entries(f"{p}.bn_sc", chans(c), dual, slim, gen)
                sd |= film_entries(f"{p}.film1", c, enc_dim, gen) | film_entries(f"{p}.film2", c, enc_dim, gen)
                cin = c
        sd["linear.weight"] = torch.randn(10, 512, generator=gen) * 0.05
        sd["linear.bias"] = torch.randn(10, generator=gen) * 0.1
        return sd
    depth, k, _ = WRN[arch]
    sd |= _conv("conv1.weight", 16, 3, 3, gen)
    cin = 16
    for s, c in enumerate([16 * k, 32 * k, 64 * k]):
        for j in range((depth - 4) // 6):
            p = f"bundle{s + 1}.{j}"
            sd |= bn_entries(f"{p}.bn1", [cin], dual, False, gen) | _conv(f"{p}.conv1.weight", c, cin, 3, gen)
            sd |= bn_entries(f"{p}.bn2", [c], dual, False, gen) | _conv(f"{p}.conv2.weight", c, c, 3, gen)
            if cin != c:
                sd |= _conv(f"{p}.convShortcut.weight", c, cin, 1, gen)
            sd |= film_entries(f"{p}.film1", cin, enc_dim, gen) | film_entries(f"{p}.film2", c, enc_dim, gen)
            cin = c
    sd |= bn_entries("bn1", [cin], dual, False, gen)
    sd["fc.weight"] = torch.randn(10, cin, generator=gen) * 0.05
    sd["fc.bias"] = torch.randn(10, generator=gen) * 0.1
    return sd


def reference_forward(sd: dict[str, torch.Tensor], arch: str, x: torch.Tensor, enc: torch.Tensor, clean: bool,
                      dual: bool, width_idx: int | None = None, width: float = 1.0) -> torch.Tensor:
    """Eval-mode logits: `enc` [N, d] is the λ's encoding row, `clean` sends it through BN_c (λ = 0)."""

    def bn(name: str, h: torch.Tensor) -> torch.Tensor:
        p = f"{name}.BN_{'c' if clean else 'a'}" if dual else name
        if width_idx is not None:
            p = f"{p}.{width_idx}" if dual else f"{p}.bn.{width_idx}"
        return F.batch_norm(h, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.0, 1e-5)

    def film(name: str, h: torch.Tensor) -> torch.Tensor:
        c = h.shape[1]  # SlimmableLinear keeps the leading 2·C outputs (and inputs of the second layer)
        z = F.leaky_relu(F.linear(enc, sd[f"{name}.MLP.0.weight"][: 2 * c], sd[f"{name}.MLP.0.bias"][: 2 * c]))
        z = F.linear(z, sd[f"{name}.MLP.2.weight"][: 2 * c, : 2 * c], sd[f"{name}.MLP.2.bias"][: 2 * c])
        mu, sigma = F.leaky_relu(z[:, :c]), F.leaky_relu(z[:, c:])
        return h * mu[:, :, None, None] + sigma[:, :, None, None]

    def conv(name: str, h: torch.Tensor, cout: int, stride: int, pad: int) -> torch.Tensor:
        return F.conv2d(h, sd[name][:cout, : h.shape[1]], None, stride, pad)

    if arch == "resnet34":
        out = F.relu(film("film1", bn("bn1", conv("conv1.weight", x, int(64 * width), 1, 1))))
        for s, (c, n, stride) in enumerate(RESNET34):
            for j in range(n):
                p, st, cw = f"bundle{s + 1}.{j}", stride if j == 0 else 1, int(c * width)
                o = F.relu(film(f"{p}.film1", bn(f"{p}.bn1", conv(f"{p}.conv1.weight", out, cw, st, 1))))
                o = film(f"{p}.film2", bn(f"{p}.bn2", conv(f"{p}.conv2.weight", o, cw, 1, 1)))
                sc = out
                if f"{p}.conv_sc.weight" in sd:
                    sc = bn(f"{p}.bn_sc", conv(f"{p}.conv_sc.weight", out, cw, st, 0))
                out = F.relu(o + sc)
        out = F.avg_pool2d(out, 4).flatten(1)
        return F.linear(out, sd["linear.weight"][:, : out.shape[1]], sd["linear.bias"])
    depth, k, pool = WRN[arch]
    out = conv("conv1.weight", x, 16, 1, 1)
    for s, (c, stride) in enumerate(zip([16 * k, 32 * k, 64 * k], [1, 2, 2], strict=True)):
        for j in range((depth - 4) // 6):
            p, st = f"bundle{s + 1}.{j}", stride if j == 0 else 1
            o = F.relu(film(f"{p}.film1", bn(f"{p}.bn1", out)))
            sc = conv(f"{p}.convShortcut.weight", o, c, st, 0) if f"{p}.convShortcut.weight" in sd else out
            o = F.relu(film(f"{p}.film2", bn(f"{p}.bn2", conv(f"{p}.conv1.weight", o, c, st, 1))))
            out = sc + conv(f"{p}.conv2.weight", o, c, 1, 1)
    out = F.avg_pool2d(F.relu(bn("bn1", out)), pool).flatten(1)
    return F.linear(out, sd["fc.weight"], sd["fc.bias"])
