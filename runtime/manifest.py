"""manifest.json version 1, the contract between export and the device: its typed entries and their schema.

Export builds a `Manifest` from these records and the device reads one back into them (`folder.read_manifest`
checks the file against them on every read); no other module spells a manifest key. Checked on reading:
types, ranges (λ in [0, 1], width in (0, 1], accuracies in [0, 1], 95 % intervals ordered and holding their
value, latencies above 0), required keys, unique variant ids, λ and width among the model's, the λ index of a
shared-mode variant. Paths are relative to the manifest's folder (`folder.confined` keeps them inside it).
Unknown keys are kept and written back (version 1 may gain fields). Python 3.8+.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from oatdeploy.runtime.backends import BACKENDS
from oatdeploy.runtime.checks import (
    SHA256,
    Invalid,
    Record,
    any_value,
    boolean,
    choice,
    dict_of,
    free_object,
    integer,
    list_of,
    non_finite,
    nullable,
    number,
    optional,
    required,
    string,
)

FORMAT = "oatdeploy-manifest"
VERSION = 1
FILENAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")  # what a variant can be served at
REDUCED = PRECISIONS[1:]  # what `quantize` and `verify` make and measure
MODES = ("folded", "shared")  # one graph per (λ, width), or one per width with λ as an input
ACCURACIES = ("clean", "robust")  # what every variant's metrics hold: SA (clean_acc) and RA (robust_acc)
TOLERANCE = 1e-6  # two λs (or widths) closer than this are the same choice


def same_choice(a: float, b: float) -> bool:
    """Whether two λs (or widths) are the same choice."""
    return abs(float(a) - float(b)) <= TOLERANCE


def choice_index(value: float, choices: Sequence[float], name: str) -> int:
    """The index of `value` among a model's λs or widths, or a ValueError naming the valid ones."""
    for i, c in enumerate(choices):
        if same_choice(c, value):
            return i
    raise ValueError(f"{name}={value:g} was not trained; choose one of {', '.join(f'{c:g}' for c in choices)}")


def variant_id(lam: float, width: float) -> str:
    """`lam0.4-w0.5`: the id the manifest, the files and the CLI all use."""
    return f"lam{lam:g}-w{width:g}"


def attack_label(report: dict[str, Any] | None) -> str | None:
    """`pgd-20`, `apgd-ce-100`, `autoattack-standard`: the attack behind the robust accuracies of an evaluation
    (eval.json) or of a manifest's `metrics_source`."""
    if not report:
        return None
    attack = report.get("attack") or {}
    kind = attack.get("version") or attack.get("steps")
    return f"{attack.get('name', '?')}{f'-{kind}' if kind else ''}"


def describe_evaluation(report: dict[str, Any]) -> str:
    """`pgd-20, eps 0.1, 1000 images`: what an evaluation (eval.json, or a manifest's metrics_source) holds."""
    attack = report.get("attack") or {}
    eps = f", eps {attack['eps']:.4g}" if isinstance(attack.get("eps"), (int, float)) else ""
    split = f" of the {report['split']} split" if report.get("split", "test") != "test" else ""
    return f"{attack_label(report)}{eps}, {report.get('num_samples', '?')} images{split}"


ACCURACY = number(0, 1, fix="accuracies are fractions (0.96 for 96 %)")
INTERVAL = list_of(ACCURACY, length=2)
LATENCY_MS = number(0, low_open=True, fix="latencies are milliseconds above 0: re-run `oatdeploy profile`")


@dataclass
class FileRef(Record):
    """A file of the deployment and the sha256 it must have."""

    path: str = required(string())
    sha256: str = required(SHA256)
    size: int | None = optional(integer(0))  # bytes: a reader refuses another size before hashing


def interval_holds(where: str, name: str, value: float | None, interval: list[float] | None) -> None:
    """A 95 % interval is [low, high] and contains its estimate."""
    if interval is None:
        return
    field = f"{where}.{name}_ci95"
    low, high = interval
    if low > high:
        raise Invalid(field, f"is [{low:g}, {high:g}], its low end above its high end; write it as [low, high]")
    if value is not None and not low - 1e-9 <= value <= high + 1e-9:
        raise Invalid(field, f"is [{low:g}, {high:g}], which does not hold {name}_acc {value:g}; a 95 % interval "
                             "contains its estimate: fix one of them or re-export")


@dataclass
class Metrics(Record):
    """SA and RA of a variant (fp32, from the evaluation export took), their 95 % intervals and where they came
    from."""

    clean_acc: float | None = required(nullable(ACCURACY))
    robust_acc: float | None = required(nullable(ACCURACY))
    clean_ci95: list[float] | None = optional(nullable(INTERVAL))
    robust_ci95: list[float] | None = optional(nullable(INTERVAL))
    samples: int | None = optional(integer(0))
    attack: Any = optional(any_value)  # the attack's label, `pgd-20`

    def validate(self, where: str) -> None:
        interval_holds(where, "clean", self.clean_acc, self.clean_ci95)
        interval_holds(where, "robust", self.robust_acc, self.robust_ci95)

    def interval(self, objective: str) -> tuple[float, float] | None:
        ci = self.clean_ci95 if objective == "clean" else self.robust_ci95
        return (float(ci[0]), float(ci[1])) if ci else None


@dataclass
class Fp32Reference(Record):
    """The fp32 graph's SA/RA on the same images, beside a reduced precision's."""

    WARN_UNKNOWN = False
    clean_acc: float | None = optional(nullable(ACCURACY))
    robust_acc: float | None = optional(nullable(ACCURACY))
    source: str | None = optional(string())


@dataclass
class PrecisionMetrics(Metrics):
    """SA/RA of what a reduced precision runs, as `oatdeploy verify` measured them."""

    source: str | None = optional(string())  # `ort-int8`, `trt-fp16`
    artifact: str | None = optional(string())
    fp32: Fp32Reference | None = optional(Fp32Reference.parse)


@dataclass
class Verification(Record):
    """Export's parity check of a graph against the supernet."""

    WARN_UNKNOWN = False
    max_abs_diff: float | None = optional(number(0))
    top1_agreement: float | None = optional(number(0, 1))
    samples: int | None = optional(integer(0))


@dataclass
class Latency(Record):
    """One device's profile of a variant: p50/p95 over every run, each round's median, the power state."""

    p50_ms: float = required(LATENCY_MS)
    p95_ms: float | None = optional(LATENCY_MS)
    runs: int | None = optional(integer(1))
    round_p50_ms: list[float] | None = optional(list_of(LATENCY_MS, min_len=1))
    batch: int | None = optional(integer(1))
    backend: str | None = optional(choice(BACKENDS))
    precision: str | None = optional(choice(PRECISIONS))
    power: dict[str, Any] | None = optional(nullable(free_object))  # runtime/power.py's state

    def validate(self, where: str) -> None:
        if self.p95_ms is not None and self.p95_ms < self.p50_ms:
            raise Invalid(f"{where}.p95_ms", f"is {self.p95_ms:g}, below p50_ms {self.p50_ms:g}; re-run "
                                             "`oatdeploy profile`")

    @property
    def spread(self) -> tuple[float, float] | None:
        """(lowest, highest) round median; None for a single round or a profile from before rounds were kept."""
        medians = self.round_p50_ms or []
        return (min(medians), max(medians)) if len(medians) > 1 else None


@dataclass
class BatchProfile(Record):
    """The batch sizes an engine takes: min ≤ opt ≤ max (opt is the one tuned for)."""

    WARN_UNKNOWN = False
    min: int = required(integer(1))
    opt: int = required(integer(1))
    max: int = required(integer(1))


@dataclass
class EngineCalibration(Record):
    """What a TensorRT < 10 int8 engine was calibrated on."""

    WARN_UNKNOWN = False
    samples: int | None = optional(integer(0))
    batch: int | None = optional(integer(1))
    sha256: str | None = optional(SHA256)


BUILT_FOR = ("trt_version", "device", "compute_capability")  # what an engine is tied to


@dataclass
class Engine(Record):
    """A TensorRT engine built on a device for one graph and precision."""

    WARN_UNKNOWN = False
    path: str = required(string())
    sha256: str = required(SHA256)
    precision: str = required(choice(PRECISIONS))
    trt_version: str | None = optional(any_value)
    device: str | None = optional(any_value)
    compute_capability: str | None = optional(any_value)
    method: str | None = optional(string())  # fp32 | fp16-flag | fp16-onnx | int8-qdq | int8-calibrator
    onnx: str | None = optional(string())  # the graph compiled (fp32, or its quantized version)
    batch_profile: BatchProfile | None = optional(BatchProfile.parse)
    built_at: str | None = optional(string())
    workspace_mb: int | None = optional(integer(1))
    calibration: EngineCalibration | None = optional(EngineCalibration.parse)

    @property
    def built_for(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in BUILT_FOR}


@dataclass
class EngineCache(Record):
    """A TensorRT build cache (timing, or int8 calibration) for one device, and what it was made for."""

    WARN_UNKNOWN = False
    path: str = required(string())
    sha256: str = required(SHA256)
    kind: str | None = optional(choice(("timing", "calibration")))
    trt_version: str | None = optional(any_value)
    device: str | None = optional(any_value)
    compute_capability: str | None = optional(any_value)
    onnx: str | None = optional(string())
    calibration_sha256: str | None = optional(SHA256)

    def matches(self, kind: str, built_for: dict[str, Any], onnx: str | None = None,
                calibration_sha256: str | None = None) -> bool:
        return (self.kind == kind and all(getattr(self, k) == v for k, v in built_for.items())
                and self.onnx == onnx and self.calibration_sha256 == calibration_sha256)


@dataclass
class Quantized(Record):
    """A quantized (int8 Q/DQ, or fp16) version of a variant's graph."""

    onnx: str = required(string())
    sha256: str = required(SHA256)


@dataclass
class VariantEntry(Record):
    """One (λ, width): its graph, cost, accuracy, export check, and what the devices added (profiles, quantized
    graphs, engines, reduced-precision accuracy)."""

    id: str = required(string())
    lam: float = required(number(0, 1, fix="λ weighs the adversarial loss, in [0, 1]"), key="lambda")
    width: float = required(number(0, 1, low_open=True, fix="width is a fraction of the full network, in (0, 1]"))
    mode: str = required(choice(MODES))
    onnx: str = required(string())
    sha256: str = required(SHA256)
    metrics: Metrics = required(Metrics.parse)
    params: int | None = optional(integer(0))
    flops: int | None = optional(integer(0))  # 2·MACs at batch 1
    lam_index: int | None = optional(integer(0))  # shared mode: the λ's row in the graph's tables
    verification: Verification | None = optional(Verification.parse)
    adv_examples: FileRef | None = optional(nullable(FileRef.parse))
    engines: list[Engine] = optional(list_of(Engine.parse), factory=list)
    latency: dict[str, Latency] = optional(dict_of(Latency.parse), factory=dict)
    quantized: dict[str, Quantized] = optional(dict_of(Quantized.parse, REDUCED), factory=dict)
    precision_metrics: dict[str, PrecisionMetrics] = optional(dict_of(PrecisionMetrics.parse, REDUCED), factory=dict)

    def accuracy(self, precision: str) -> tuple[Metrics, str]:
        """The SA/RA of what `precision` runs, if `verify` measured them, else the fp32 ones; and their precision."""
        measured = self.precision_metrics.get(precision) if precision != "fp32" else None
        return (measured, precision) if measured else (self.metrics, "fp32")


OUTCOME_KINDS = ACCURACIES  # each variant's outcomes file holds one packed array per kind: clean, robust


def outcome_array(vid: str, kind: str) -> str:
    """`lam0.4-w0.5.clean`: the name of a variant's packed outcomes (np.packbits, image 0 first) in the file."""
    return f"{vid}.{kind}"


@dataclass
class Outcomes(Record):
    """Per image, whether each variant got it right, clean and under the attack: an .npz of packed bits
    (`outcome_array`) over the `samples` images every variant's SA/RA was measured on. Paired on the same
    images, two variants are compared by the images they disagree on (`select`'s McNemar test)."""

    path: str = required(string())
    sha256: str = required(SHA256)
    samples: int = required(integer(1))


@dataclass
class Model(Record):
    """What was exported: the architecture, its input and the λs and widths it was trained for."""

    WARN_UNKNOWN = False
    input_shape: list[int] = required(list_of(integer(1), min_len=1))
    lambdas: list[float] = required(list_of(number(0, 1), min_len=1))
    widths: list[float] = required(list_of(number(0, 1, low_open=True), min_len=1))
    num_classes: int | None = optional(integer(1))
    arch: str | None = optional(string())
    dataset: str | None = optional(string())
    input_range: list[float] | None = optional(list_of(number(), length=2))
    dual_bn: bool | None = optional(boolean)


@dataclass
class ThreatModel(Record):
    """The attack the variants' RA is measured against."""

    WARN_UNKNOWN = False
    norm: str | None = optional(string())
    eps: float | None = optional(number(0))
    attack: str | None = optional(string())
    steps: int | None = optional(nullable(integer(0)))


@dataclass
class Source(Record):
    """The checkpoint exported."""

    WARN_UNKNOWN = False
    checkpoint: str | None = optional(string())
    checkpoint_sha256: str | None = optional(SHA256)


@dataclass
class MetricsSource(Record):
    """Where the variants' SA/RA came from: an evaluation file (its attack and image count), or nowhere."""

    WARN_UNKNOWN = False
    origin: str | None = optional(nullable(string()))
    attack: dict[str, Any] | None = optional(nullable(free_object))  # eval.json's attack description
    num_samples: int | None = optional(integer(0))
    note: str | None = optional(string())

    def describe(self) -> str:
        return describe_evaluation(self.to_json())


def among(value: float, allowed: Sequence[float]) -> bool:
    return any(same_choice(value, a) for a in allowed)


def parse_variants(value: Any, where: str) -> list[VariantEntry]:
    """The variant list, each error naming the variant's id as well as its index."""
    items = list_of(any_value, min_len=1)(value, where)
    out = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        try:
            out.append(VariantEntry.parse(item, here))
        except Invalid as e:
            vid = item.get("id") if isinstance(item, dict) else None
            if isinstance(vid, str) and vid:
                raise Invalid(f"{e.where} (variant {vid})", e.text) from None
            raise
    return out


@dataclass
class Manifest(Record):
    """A deployment: the model, the threat model, where the numbers came from, its shared files and variants."""

    format: str = required(string())
    version: int = required(integer(1))
    model: Model = required(Model.parse)
    threat_model: ThreatModel = required(ThreatModel.parse)
    source: Source = required(Source.parse)
    variants: list[VariantEntry] = required(parse_variants)
    created: str | None = optional(string())
    metrics_source: MetricsSource | None = optional(MetricsSource.parse)
    calibration: FileRef | None = optional(nullable(FileRef.parse))  # training images for int8 calibration
    verification: dict[str, FileRef] = optional(dict_of(FileRef.parse), factory=dict)  # "clean": test images
    engine_caches: list[EngineCache] = optional(list_of(EngineCache.parse), factory=list)
    # per precision the SA/RA were measured in (export: fp32), each variant's per-image outcomes
    outcomes: dict[str, Outcomes] = optional(dict_of(Outcomes.parse, PRECISIONS), factory=dict)

    def identity(self) -> tuple[Any, ...]:
        """What tells one export from another: when, from which checkpoint, which graphs."""
        return (self.created, self.source.checkpoint_sha256, tuple((v.id, v.sha256) for v in self.variants))

    def validate(self, where: str) -> None:
        """What ties each variant to the model: its λ and width, its λ index; and unique ids."""
        seen: dict[str, int] = {}
        lambdas = ", ".join(f"{x:g}" for x in self.model.lambdas)
        widths = ", ".join(f"{x:g}" for x in self.model.widths)
        for i, v in enumerate(self.variants):
            here = f"variants[{i}]"
            named = f" (variant {v.id})"
            if not among(v.lam, self.model.lambdas):
                raise Invalid(f"{here}.lambda{named}", f"is {v.lam:g}, not one of model.lambdas ({lambdas}); use "
                                                       "one of them")
            if not among(v.width, self.model.widths):
                raise Invalid(f"{here}.width{named}", f"is {v.width:g}, not one of model.widths ({widths}); use one "
                                                      "of them")
            if v.mode == "shared" and v.lam_index is None:
                raise Invalid(f"{here}{named}", "is a shared-mode variant without lam_index; add the index of its λ "
                                                "in model.lambdas")
            if v.lam_index is not None and v.lam_index >= len(self.model.lambdas):
                raise Invalid(f"{here}.lam_index{named}", f"is {v.lam_index}, but model.lambdas has "
                                                          f"{len(self.model.lambdas)} entries; use 0 to "
                                                          f"{len(self.model.lambdas) - 1}")
            if v.id in seen:
                raise Invalid(f"{here}.id", f"is {v.id!r} again (as variants[{seen[v.id]}]); ids must be unique: "
                                            "rename one (ids look like lam0.4-w0.5) or remove the copy")
            seen[v.id] = i

    def variant(self, vid: str) -> VariantEntry:
        for v in self.variants:
            if v.id == vid:
                return v
        raise KeyError(vid)

    def graphs(self) -> dict[str, list[VariantEntry]]:
        """The distinct fp32 graphs and the variants each serves (a shared-mode graph serves every λ of a width)."""
        out: dict[str, list[VariantEntry]] = {}
        for v in self.variants:
            out.setdefault(v.onnx, []).append(v)
        return out

    def lam_count(self, variants: Sequence[VariantEntry]) -> int | None:
        """How many λ rows a graph serving `variants` holds: the model's λs for a shared graph, else None."""
        return len(self.model.lambdas) if any(v.lam_index is not None for v in variants) else None

    def files(self) -> Iterator[tuple[str, FileRef]]:
        """Every (where, file) the manifest names, the shared files first."""
        if self.calibration:
            yield "calibration", self.calibration
        for name, ref in self.verification.items():
            yield f"verification.{name}", ref
        for i, c in enumerate(self.engine_caches):
            yield f"engine_caches[{i}]", FileRef(c.path, c.sha256)
        for precision, o in self.outcomes.items():
            yield f"outcomes.{precision}", FileRef(o.path, o.sha256)
        for v in self.variants:
            yield f"{v.id}.onnx", FileRef(v.onnx, v.sha256)
            if v.adv_examples:
                yield f"{v.id}.adv_examples", v.adv_examples
            for p, q in v.quantized.items():
                yield f"{v.id}.quantized.{p}", FileRef(q.onnx, q.sha256)
            for e in v.engines:
                yield f"{v.id}.engines", FileRef(e.path, e.sha256)

    def artifacts(self) -> list[tuple[str, str]]:
        """Every (relative path, sha256) the manifest promises, each once."""
        seen: dict[str, str] = {}
        for _, ref in self.files():
            seen.setdefault(ref.path, ref.sha256)
        return list(seen.items())


def parse_manifest(data: Any) -> Manifest:
    """A manifest as read from JSON (`folder.read_manifest` names a foreign file or another version first);
    raises `Invalid` for the first field that breaks the schema, or for a NaN or infinity anywhere (free fields
    included): Python's JSON writes and reads them, other readers refuse them. Export checks what it writes with
    this, the device what it reads."""
    manifest = Manifest.parse(data)
    if manifest.format != FORMAT or manifest.version != VERSION:
        raise Invalid("format", f"is {manifest.format!r} version {manifest.version}; this oatdeploy reads "
                                f"{FORMAT!r} version {VERSION}")
    where = non_finite(data)
    if where:
        raise Invalid(where, "is not a finite number (NaN and Infinity are not JSON)")
    return manifest
