"""Checkpoints saved by the paper's code (VITA-Group/Once-for-All-Adversarial-Training) as this project's supernet.

The reference saves `latest.pth` (a dict whose `model` is the state_dict, beside `optimizer`, `epoch`,
`best_TA`, …) and `best_TA<λ>.pth` / `best_ATA<λ>.pth` (the bare state_dict), its keys prefixed `module.`
when it trained under DataParallel. Its layers map onto ours tensor by tensor; for each of our keys the
reference key is:

  dual BN              bn1.bns.0.BN_c.weight       <- bn1.BN_c.weight
  dual BN, slimmable   bn1.bns.<i>.BN_c.weight     <- bn1.BN_c.<i>.weight      (switchable: one per width)
  one BN               bn1.bns.0.BN_{c,a}.weight   <- bn1.weight               (every λ runs through it)
  one BN, slimmable    bn1.bns.<i>.BN_{c,a}.weight <- bn1.bn.<i>.weight
  FiLM                 film1.films.0.MLP.0.weight  <- film1.MLP.0.weight
  FiLM, slimmable      film1.films.<i>.MLP.*       <- film1.MLP.*, its leading 2·C_i outputs (and inputs of
                                                      MLP.2), as the reference's SlimmableLinear slices them
  WRN                  conv_sc, bn_final, linear   <- convShortcut, bn1 (the head's), fc

The λ table is built as the reference builds its `encoding_mat` (row j encodes the j-th λ choice) and is
stored in the checkpoint like any other.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oatdeploy.checkpoint import FORMAT as CHECKPOINT_FORMAT
from oatdeploy.checkpoint import model_from_config, save_checkpoint
from oatdeploy.config import ENCODINGS
from oatdeploy.data import DEFAULT_EPS, VAL_HOLDOUT
from oatdeploy.lambdas import check_widths
from oatdeploy.runtime.atomic import atomic_write_json, sha256_file
from oatdeploy.runtime.errors import OatError

ARCHS = ("resnet34", "wrn16_8", "wrn40_2")
DATASETS = ("cifar10", "svhn", "stl10")
INPUT_SIZE = {"cifar10": 32, "svhn": 32, "stl10": 96}
# The reference pools with a fixed window (avg_pool2d 4, 8 and 24), so each model is defined for one input size.
ARCH_INPUT = {"resnet34": 32, "wrn16_8": 32, "wrn40_2": 96}
SLIMMABLE = ("resnet34",)
REFERENCE_WIDTHS = (0.5, 0.75, 1.0)  # models/slimmable_ops.py: width_mult_list
_SWITCHABLE = re.compile(r"(?:^|\.)(?:BN_c|BN_a|bn)\.(\d+)\.[a-z_]+$")


@dataclass(frozen=True)
class Layout:
    """What the reference's keys say about how it was built."""

    dual_bn: bool
    num_widths: int  # 0: not slimmable
    enc_dim: int

    @property
    def slimmable(self) -> bool:
        return self.num_widths > 0

    def describe(self) -> str:
        bn = "dual BN" if self.dual_bn else "one BN per layer"
        slim = f"slimmable with {self.num_widths} widths" if self.slimmable else "not slimmable"
        return f"{bn}, {slim}, FiLM input {self.enc_dim}"


def read_reference_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict inside latest.pth or a best_*.pth, `module.` prefixes removed, and the file's sha256
    (taken before parsing). Loaded weights-only."""
    if not path.is_file():
        raise OatError(f"reference checkpoint not found: {path}")
    sha = sha256_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled code, a truncated file, not a torch file: bad input, not a crash
        reason = (str(e).strip().splitlines() or [""])[0][:160]
        raise OatError(f"{path} is not a plain tensor checkpoint (torch.load(weights_only=True) refused it: "
                       f"{type(e).__name__}: {reason}); pass the latest.pth or best_*.pth the reference's OAT.py "
                       "saved") from None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        raise OatError(f"{path} is already an oatdeploy checkpoint (written by `oatdeploy train` or "
                       f"`import-reference`), nothing to import; use it as it is: `oatdeploy eval {path}`, "
                       f"`oatdeploy export {path} --out DEPLOY`")
    state = obj.get("model") if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise OatError(f"{path} holds neither a state_dict nor a dict with one under 'model' (what the reference's "
                       "latest.pth and best_TA*/best_ATA*.pth hold)")
    prefixed = sum(k.startswith("module.") for k in state)
    if prefixed and prefixed != len(state):
        raise OatError(f"{path}: {prefixed} of {len(state)} keys carry DataParallel's 'module.' prefix; a reference "
                       "checkpoint has it on all keys or none")
    return {k.removeprefix("module."): v for k, v in state.items()}, sha


def detect_layout(state: dict[str, torch.Tensor], path: Path) -> Layout:
    film_inputs = [v for k, v in state.items() if k.endswith("MLP.0.weight") and v.dim() == 2]
    if not film_inputs:
        raise OatError(f"{path} has no FiLM layers (no '*.MLP.0.weight' key): it is not an OAT/OATS checkpoint "
                       "(a PGDAT model has no λ input)")
    indices = [int(m.group(1)) for k in state if (m := _SWITCHABLE.search(k))]
    return Layout(dual_bn=any(".BN_c." in f".{k}" for k in state), num_widths=max(indices) + 1 if indices else 0,
                  enc_dim=int(film_inputs[0].shape[1]))


def reference_key(ours: str, layout: Layout, wrn: bool) -> tuple[str, bool]:
    """The reference key our tensor comes from, and whether it is sliced (slimmable FiLM)."""
    if m := re.fullmatch(r"(.+)\.bns\.(\d+)\.BN_([ca])\.(\w+)", ours):
        module, width, kind, param = m.groups()
        module = "bn1" if wrn and module == "bn_final" else module
        if layout.dual_bn:
            return (f"{module}.BN_{kind}.{width}.{param}" if layout.slimmable else f"{module}.BN_{kind}.{param}"), False
        return (f"{module}.bn.{width}.{param}" if layout.slimmable else f"{module}.{param}"), False
    if m := re.fullmatch(r"(.+)\.films\.\d+\.(MLP\.\d\.\w+)", ours):
        return f"{m.group(1)}.{m.group(2)}", layout.slimmable
    if wrn and (m := re.fullmatch(r"(.+)\.conv_sc\.weight", ours)):
        return f"{m.group(1)}.convShortcut.weight", False
    if wrn and (m := re.fullmatch(r"linear\.(weight|bias)", ours)):
        return f"fc.{m.group(1)}", False
    return ours, False


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def map_state(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], layout: Layout, arch: str,
              path: Path) -> dict[str, torch.Tensor]:
    """Our state_dict filled from the reference's; refuses missing/unexpected keys and wrong shapes."""
    wrn = arch.startswith("wrn")
    sources = {ours: reference_key(ours, layout, wrn) for ours in target}
    needed = {ref for ref, _ in sources.values()}
    missing, unexpected = sorted(needed - set(state)), sorted(set(state) - needed)
    if missing or unexpected:
        parts = [f"missing keys ({len(missing)}): {_few(missing)}"] if missing else []
        parts += [f"unexpected keys ({len(unexpected)}): {_few(unexpected)}"] if unexpected else []
        raise OatError(f"{path} does not match the reference's {arch} ({layout.describe()}): {'; '.join(parts)}; "
                       "check --arch (resnet34: ResNet34OAT, wrn16_8: WRN16_8OAT, wrn40_2: WRN40_2OAT)")
    out, wrong = {}, []
    for ours, (ref, sliced) in sources.items():
        tensor, want = state[ref], target[ours].shape
        full = target[re.sub(r"\.films\.\d+\.", f".films.{layout.num_widths - 1}.", ours)].shape if sliced else want
        if tensor.shape != full:
            wrong.append(f"{ref} is {list(tensor.shape)}, {arch} needs {list(full)}")
            continue
        if sliced:
            tensor = tensor[tuple(slice(0, n) for n in want)]
        out[ours] = tensor.detach().to(target[ours].dtype).clone()
    if wrong:
        raise OatError(f"{path} has shapes that do not fit the reference's {arch}: {_few(wrong, 3)}; check --arch "
                       "(and --widths for a slimmable model)")
    return out


def encoding_table(kind: str, lambdas: list[float], enc_dim: int, matrix: Path | None) -> np.ndarray:
    """[L, d]: row j encodes the j-th λ of `lambdas` exactly as the reference's `encoding_mat[j]`."""
    if kind not in ENCODINGS:
        raise OatError(f"unknown --encoding {kind!r}; choose one of {', '.join(ENCODINGS)}")
    if matrix is not None and kind != "rand":
        raise OatError(f"--encoding-matrix is read only for --encoding rand; {kind} is rebuilt as the reference "
                       "builds it: drop --encoding-matrix")
    if kind == "none":
        if enc_dim != 1:
            raise OatError(f"--encoding none feeds λ itself (1 number) but the checkpoint's FiLM layers take "
                           f"{enc_dim}; pass the --encoding it was trained with")
        return np.array([[v] for v in lambdas], dtype=np.float64)
    if kind == "rand":
        if matrix is None:
            raise OatError("--encoding rand needs --encoding-matrix: the rand_otho_mat.npy the reference saved beside "
                           "latest.pth")
        mat = read_matrix(matrix)
    elif kind == "onehot":
        mat = np.eye(enc_dim)
    else:
        try:
            from scipy.fftpack import dct
        except ImportError:
            raise OatError("--encoding dct needs scipy: pip install 'oatdeploy[train]'") from None
        mat = dct(np.eye(enc_dim), axis=0)  # unnormalised DCT-II, as the reference's OAT.py builds it
    if mat.shape[1] != enc_dim:
        raise OatError(f"the {kind} encoding has {mat.shape[1]} columns but the checkpoint's FiLM layers take "
                       f"{enc_dim}; pass the matrix saved with this checkpoint")
    if mat.shape[0] < len(lambdas):
        raise OatError(f"the {kind} encoding matrix has {mat.shape[0]} rows, fewer than the {len(lambdas)} λ choices "
                       f"({', '.join(f'{v:g}' for v in lambdas)}); pass the --lambdas the checkpoint was trained with")
    return np.asarray(mat[: len(lambdas)], dtype=np.float64)


def read_matrix(path: Path) -> np.ndarray:
    if not path.is_file():
        raise OatError(f"--encoding-matrix {path} does not exist; it is the rand_otho_mat.npy beside latest.pth")
    try:
        mat = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise OatError(f"--encoding-matrix {path} is not a .npy array ({e}); pass rand_otho_mat.npy") from None
    if mat.ndim != 2 or not np.issubdtype(mat.dtype, np.floating):
        raise OatError(f"--encoding-matrix {path} is a {mat.ndim}-D {mat.dtype} array; rand_otho_mat.npy is a 2-D "
                       "float matrix")
    return mat


def order_lambdas(lambdas: list[float]) -> list[int]:
    """Positions of `lambdas` in ascending order (this project keeps λs sorted); duplicates and bad values refused."""
    if not lambdas or len(set(lambdas)) != len(lambdas) or any(not 0.0 <= v <= 1.0 for v in lambdas):
        raise OatError(f"--lambdas must be distinct values in [0, 1] in the order of the reference's --lambda_choices, "
                       f"got {lambdas}")
    return sorted(range(len(lambdas)), key=lambda i: lambdas[i])


@dataclass(frozen=True)
class ImportRequest:
    """What `oatdeploy import-reference` was asked for."""

    checkpoint: Path
    arch: str
    lambdas: list[float]
    encoding: str
    dataset: str
    out: Path
    widths: list[float] | None = None
    encoding_matrix: Path | None = None
    data_dir: str | None = None
    eps: float | None = None


def check_request(req: ImportRequest) -> None:
    if req.arch not in ARCHS:
        raise OatError(f"--arch must be one of {', '.join(ARCHS)}, got {req.arch!r}")
    if req.dataset not in DATASETS:
        raise OatError(f"--dataset must be one of {', '.join(DATASETS)}, got {req.dataset!r}")
    if INPUT_SIZE[req.dataset] != ARCH_INPUT[req.arch]:
        fits = [d for d in DATASETS if INPUT_SIZE[d] == ARCH_INPUT[req.arch]]
        raise OatError(f"the reference's {req.arch} pools for {ARCH_INPUT[req.arch]}×{ARCH_INPUT[req.arch]} inputs; "
                       f"{req.dataset} images are {INPUT_SIZE[req.dataset]}×{INPUT_SIZE[req.dataset]}: use --dataset "
                       f"{' or '.join(fits)}")


def import_reference(req: ImportRequest) -> Path:
    """Write RUN/supernet.pt and RUN/config.json from a reference checkpoint; returns the checkpoint path."""
    check_request(req)
    state, source_sha = read_reference_state(req.checkpoint)
    layout = detect_layout(state, req.checkpoint)
    if layout.slimmable and req.arch not in SLIMMABLE:
        raise OatError(f"{req.checkpoint} has switchable (per-width) BNs, but the reference has no slimmable "
                       f"{req.arch}; only resnet34 (SlimmableResNet34OAT) is")
    widths = resolve_widths(req.widths, layout, req.checkpoint)
    order = order_lambdas(req.lambdas)
    table = encoding_table(req.encoding, req.lambdas, layout.enc_dim, req.encoding_matrix)[order]
    size = INPUT_SIZE[req.dataset]
    config = {
        "arch": req.arch, "dataset": req.dataset, "data_dir": req.data_dir,
        "lambdas": [req.lambdas[i] for i in order], "widths": widths,
        "eps": float(DEFAULT_EPS[req.dataset] if req.eps is None else req.eps),
        "enc_kind": req.encoding, "enc_dim": layout.enc_dim, "dual_bn": layout.dual_bn,
        "film": "paper",  # the reference's FiLM_Layer: Linear → LeakyReLU → Linear, leaky-ReLU'd scale and shift
        "lambda_head": False,  # and its one linear classifier for every λ
        "val_split": req.dataset in VAL_HOLDOUT, "num_classes": 10, "input_shape": [3, size, size],
        "imported_from": {
            "format": "VITA-Group/Once-for-All-Adversarial-Training", "checkpoint": req.checkpoint.name,
            "sha256": source_sha, "layout": asdict(layout), "lambda_choices": list(req.lambdas),
            "encoding_matrix_sha256": sha256_file(req.encoding_matrix) if req.encoding_matrix else None,
        },
    }
    model = model_from_config(config)
    model.load_state_dict(map_state(state, model.state_dict(), layout, req.arch, req.checkpoint))
    out = req.out
    os.makedirs(out, exist_ok=True)
    ckpt = out / "supernet.pt"
    save_checkpoint(ckpt, model, config, torch.tensor(table, dtype=torch.float32))
    atomic_write_json(out / "config.json", config)
    return ckpt


def resolve_widths(widths: list[float] | None, layout: Layout, path: Path) -> list[float]:
    if not layout.slimmable:
        if widths is not None:
            raise OatError(f"--widths is for slimmable (OATS) checkpoints; {path} has no switchable (per-width) BNs, "
                           "it is a plain OAT model: drop --widths")
        return [1.0]
    chosen = check_widths(widths if widths is not None else REFERENCE_WIDTHS)
    if len(chosen) != layout.num_widths:
        raise OatError(f"{path} has switchable BNs for {layout.num_widths} widths but --widths names {len(chosen)} "
                       f"({', '.join(f'{w:g}' for w in chosen)}); pass the reference's width_mult_list, e.g. "
                       "--widths 0.5,0.75,1")
    return chosen


def describe_import(config: dict[str, Any]) -> str:
    layout = Layout(**config["imported_from"]["layout"])
    return (f"{config['arch']} ({layout.describe()}), λ {', '.join(f'{v:g}' for v in config['lambdas'])}, "
            f"widths {', '.join(f'{w:g}' for w in config['widths'])}, encoding {config['enc_kind']}, "
            f"dataset {config['dataset']} (eps {config['eps']:.4g})")
