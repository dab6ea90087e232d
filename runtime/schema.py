"""manifest.json's schema, checked on every read, so a hand edit that breaks it is one clear line, not a traceback.

Checked: types, ranges (λ in [0, 1], width in (0, 1], accuracies in [0, 1], 95 % intervals ordered, inside
[0, 1] and holding their value, latencies above 0), required keys, unique variant ids, λ and width among the
model's. A key this oatdeploy does not know is refused when it looks like a misspelling of a known key that
is absent ("did you mean ...?"); any other unknown key is named in a warning and kept, since version 1 may
gain fields. Hand-written, so the device needs no schema library. Python 3.8+.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from typing import Any, Callable, NamedTuple, Sequence

from oatdeploy.errors import OatWarning

Check = Callable[[Any, str], None]
PRECISIONS = ("fp32", "fp16", "int8")
REDUCED = ("fp16", "int8")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
CLOSE = 0.8  # difflib ratio above which an unknown key reads as a misspelling of a known one


class Invalid(ValueError):
    """One field breaks the schema: where it is, and what is wrong with it and how to fix it."""

    def __init__(self, where: str, text: str) -> None:
        super().__init__(f"{where} {text}")
        self.where, self.text = where, text


class Field(NamedTuple):
    check: Check
    required: bool = False


def at(where: str, key: str) -> str:
    """The path of `key` inside `where`: `variants[0].metrics`, `latency["cpu|ort|fp32|b1"]`."""
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
        return f"{where}[{key!r}]"
    return f"{where}.{key}" if where else key


def shown(value: Any) -> str:
    """A value as JSON would spell it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def as_number(text: Any) -> float | None:
    """The number a string spells, if it spells one ('0.96' -> 0.96)."""
    try:
        return float(text.strip()) if isinstance(text, str) else None
    except ValueError:
        return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(low: float = -math.inf, high: float = math.inf, low_open: bool = False, fix: str = "") -> Check:
    """A finite JSON number in [low, high] (or (low, high] with `low_open`)."""
    if math.isfinite(high):
        want = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    else:
        want = f"above {low:g}" if low_open else f">= {low:g}"

    def check(value: Any, where: str) -> None:
        if not is_number(value):
            spelt = as_number(value)
            how = (f"write it without quotes: {spelt:g}" if spelt is not None and math.isfinite(spelt)
                   else f"set a number {want}")
            raise Invalid(where, f"is {shown(value)}, not a number; {how}")
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            raise Invalid(where, f"is {value!r}, not {want}; {fix or f'set a number {want}'}")

    return check


def integer(low: int = 0) -> Check:
    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise Invalid(where, f"is {shown(value)}, not a whole number >= {low}; set one")

    return check


def string(pattern: re.Pattern | None = None, what: str = "a non-empty string") -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
            raise Invalid(where, f"is {shown(value)}, not {what}; fix it or re-export the deployment")

    return check


def choice(options: Sequence[str]) -> Check:
    def check(value: Any, where: str) -> None:
        if value not in options:
            raise Invalid(where, f"is {shown(value)}; use one of {', '.join(map(repr, options))}")

    return check


def nullable(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)

    return check


def list_of(item: Check, min_len: int = 0, length: int | None = None) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise Invalid(where, f"is {shown(value)}, not a list; write it as [...]")
        if length is not None and len(value) != length:
            raise Invalid(where, f"has {len(value)} items, not {length}")
        if len(value) < min_len:
            raise Invalid(where, f"has {len(value)} items, needs at least {min_len}; re-export the deployment")
        for i, x in enumerate(value):
            item(x, f"{where}[{i}]")

    return check


def unknown_key(key: str, candidates: Sequence[str], where: str) -> None:
    """Refuse a key that reads as a misspelling of one of `candidates` (known keys that are absent)."""
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=CLOSE)
    if close:
        raise Invalid(at(where, key), f"is not a key oatdeploy knows; did you mean "
                                                          f"{close[0]!r}? rename it")


def obj(fields: dict[str, Field], closed: bool = True, post: Check | None = None) -> Check:
    """A JSON object with these fields; `closed` objects name the keys they do not know (in a warning)."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(where, f"is {shown(value)}, not an object; write it as {{...}}")
        unknown = [k for k in value if k not in fields]
        absent = [k for k in fields if k not in value]
        for key in unknown:
            unknown_key(key, absent, where)
        for key, field in fields.items():
            if key in value:
                field.check(value[key], at(where, key))
            elif field.required:
                raise Invalid(where or "the manifest", f"lacks the required key {key!r}; add it or re-export the "
                                                       "deployment")
        if closed and unknown:
            names = ", ".join(at(where, k) for k in unknown)
            warnings.warn(f"manifest.json: this oatdeploy does not know {names} (ignored; written by a newer "
                          "version?)", OatWarning, stacklevel=2)
        if post is not None:
            post(value, where)

    return check


def dict_of(item: Check, keys: Sequence[str] | None = None) -> Check:
    """An object mapping free (or, with `keys`, known) names to values of one kind."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(where, f"is {shown(value)}, not an object; write it as {{...}}")
        for key, x in value.items():
            if keys is not None and key not in keys:
                unknown_key(key, keys, where)
                raise Invalid(at(where, key), f"is not one of {', '.join(map(repr, keys))}; rename or remove it")
            item(x, at(where, key))

    return check


def any_value(value: Any, where: str) -> None:
    """Free-form content the runtime does not interpret."""


def free_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise Invalid(where, f"is {shown(value)}, not an object; write it as {{...}}")


ACCURACY = number(0, 1, fix="accuracies are fractions (0.96 for 96 %)")


def interval_holds(prefix: str) -> Check:
    """`<prefix>_ci95` is [low, high] with low <= high and low <= `<prefix>_acc` <= high."""
    def check(metrics: dict[str, Any], where: str) -> None:
        ci, acc = metrics.get(f"{prefix}_ci95"), metrics.get(f"{prefix}_acc")
        if ci is None:
            return
        field = at(where, f"{prefix}_ci95")
        if ci[0] > ci[1]:
            raise Invalid(field, f"is [{ci[0]:g}, {ci[1]:g}], its low end above its high end; write it as [low, high]")
        if acc is not None and not ci[0] - 1e-9 <= acc <= ci[1] + 1e-9:
            raise Invalid(field, f"is [{ci[0]:g}, {ci[1]:g}], which does not hold {prefix}_acc {acc:g}; a 95 % "
                              f"interval contains its estimate: fix one of them or re-export")

    return check


def both(*checks: Check) -> Check:
    def check(value: Any, where: str) -> None:
        for c in checks:
            c(value, where)

    return check


INTERVAL = list_of(ACCURACY, length=2)


def accuracy_fields() -> dict[str, Field]:
    return {"clean_acc": Field(nullable(ACCURACY), True), "robust_acc": Field(nullable(ACCURACY), True),
            "clean_ci95": Field(nullable(INTERVAL)), "robust_ci95": Field(nullable(INTERVAL)),
            "samples": Field(integer(0)), "attack": Field(nullable(any_value))}


HOLDS = both(interval_holds("clean"), interval_holds("robust"))
METRICS = obj(accuracy_fields(), post=HOLDS)
PRECISION_METRICS = obj({**accuracy_fields(), "source": Field(string()), "artifact": Field(string()),
                         "fp32": Field(free_object)}, post=HOLDS)
FILE = obj({"path": Field(string(), True), "sha256": Field(string(SHA256, "a sha256 (64 hex digits)"), True)})
LATENCY_MS = number(0, low_open=True, fix="latencies are milliseconds above 0: re-run `oatdeploy profile`")


def p95_not_below_p50(entry: dict[str, Any], where: str) -> None:
    if "p95_ms" in entry and entry["p95_ms"] < entry["p50_ms"]:
        raise Invalid(f"{where}.p95_ms", f"is {entry['p95_ms']:g}, below p50_ms {entry['p50_ms']:g}; re-run "
                                         "`oatdeploy profile`")


LATENCY = obj({"p50_ms": Field(LATENCY_MS, True), "p95_ms": Field(LATENCY_MS), "runs": Field(integer(1)),
               "round_p50_ms": Field(list_of(LATENCY_MS, min_len=1)), "batch": Field(integer(1)),
               "backend": Field(choice(("ort", "trt"))), "precision": Field(choice(PRECISIONS)),
               "power": Field(nullable(free_object))}, post=p95_not_below_p50)
ENGINE = obj({"path": Field(string(), True), "sha256": Field(string(SHA256, "a sha256 (64 hex digits)"), True),
              "precision": Field(choice(PRECISIONS), True), "batch_profile": Field(free_object)}, closed=False)
QUANTIZED = obj({"onnx": Field(string(), True), "sha256": Field(string(SHA256, "a sha256 (64 hex digits)"), True)})


def variant_fields(model: dict[str, Any]) -> dict[str, Field]:
    lambdas = ", ".join(f"{x:g}" for x in model["lambdas"])
    widths = ", ".join(f"{x:g}" for x in model["widths"])
    return {
        "id": Field(string(), True),
        "lambda": Field(number(0, 1, fix=f"λ weighs the adversarial loss, in [0, 1]: use one of model.lambdas "
                                         f"({lambdas})"), True),
        "width": Field(number(0, 1, low_open=True, fix=f"width is a fraction of the full network, in (0, 1]: use "
                                                       f"one of model.widths ({widths})"), True),
        "mode": Field(choice(("folded", "shared")), True),
        "onnx": Field(string(), True),
        "sha256": Field(string(SHA256, "a sha256 (64 hex digits)"), True),
        "params": Field(integer(0)), "flops": Field(integer(0)),
        "metrics": Field(METRICS, True),
        "precision_metrics": Field(dict_of(PRECISION_METRICS, REDUCED)),
        "verification": Field(free_object),
        "adv_examples": Field(nullable(FILE)),
        "engines": Field(list_of(ENGINE)),
        "latency": Field(dict_of(LATENCY)),
        "lam_index": Field(integer(0)),
        "quantized": Field(dict_of(QUANTIZED, REDUCED)),
    }


MODEL = obj({"input_shape": Field(list_of(integer(1), min_len=1), True),
             "lambdas": Field(list_of(number(0, 1), min_len=1), True),
             "widths": Field(list_of(number(0, 1, low_open=True), min_len=1), True),
             "num_classes": Field(integer(1)), "arch": Field(string())}, closed=False)

TOP = {"format": Field(string(), True), "version": Field(integer(1), True), "created": Field(string()),
       "model": Field(MODEL, True), "threat_model": Field(free_object, True), "source": Field(free_object, True),
       "metrics_source": Field(free_object), "calibration": Field(nullable(FILE)),
       "verification": Field(dict_of(FILE)),
       "engine_caches": Field(list_of(obj({"path": Field(string(), True),
                                           "sha256": Field(string(SHA256, "a sha256 (64 hex digits)"), True),
                                           "kind": Field(string())}, closed=False))),
       "variants": Field(list_of(free_object, min_len=1), True)}


def among(value: float, allowed: Sequence[float]) -> bool:
    return any(abs(value - a) <= 1e-9 for a in allowed)


def check_variant(v: dict[str, Any], where: str, model: dict[str, Any]) -> None:
    """One variant's fields, then what ties it to the model: its λ and width, its λ index in shared mode."""
    obj(variant_fields(model))(v, where)
    if not among(v["lambda"], model["lambdas"]):
        raise Invalid(f"{where}.lambda", f"is {v['lambda']:g}, not one of model.lambdas "
                                         f"({', '.join(f'{x:g}' for x in model['lambdas'])}); use one of them")
    if not among(v["width"], model["widths"]):
        raise Invalid(f"{where}.width", f"is {v['width']:g}, not one of model.widths "
                                        f"({', '.join(f'{x:g}' for x in model['widths'])}); use one of them")
    if v["mode"] == "shared" and "lam_index" not in v:
        raise Invalid(where, "is a shared-mode variant without lam_index; add the index of its λ in model.lambdas")
    if "lam_index" in v and v["lam_index"] >= len(model["lambdas"]):
        raise Invalid(f"{where}.lam_index", f"is {v['lam_index']}, but model.lambdas has {len(model['lambdas'])} "
                                            f"entries; use 0 to {len(model['lambdas']) - 1}")


def validate(manifest: dict[str, Any]) -> None:
    """Raise `Invalid` for the first field that breaks the schema (warn about unknown keys)."""
    obj(TOP)(manifest, "")
    seen: dict[str, int] = {}
    for i, v in enumerate(manifest["variants"]):
        where = f"variants[{i}]"
        vid = v.get("id")
        try:
            check_variant(v, where, manifest["model"])
        except Invalid as e:
            if isinstance(vid, str) and vid:
                raise Invalid(f"{e.where} (variant {vid})", e.text) from None
            raise
        if vid in seen:
            raise Invalid(f"{where}.id", f"is {vid!r} again (as variants[{seen[vid]}]); ids must be unique: "
                                         "rename one (ids look like lam0.4-w0.5) or remove the copy")
        seen[vid] = i


def no_duplicate_keys(pairs: list[tuple]) -> dict[str, Any]:
    """json.loads' object hook: a key written twice in one object (the last would silently win) is refused."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Invalid(repr(key), "appears twice in one object; keep one")
        out[key] = value
    return out
