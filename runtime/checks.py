"""JSON objects read into typed records, with one clear line for the first field that is wrong. Python 3.8+.

A `Record` is a dataclass whose fields say how their JSON key is checked (`required(check)`, `optional(check)`);
`Record.parse` checks an object and builds the record, `Record.to_json` writes it back. A check takes the
value and where it sits (`variants[2].metrics.robust_acc`) and returns the value to store, or raises `Invalid`
naming the field, what is wrong and the fix. A key a record does not know is refused when it reads as a
misspelling of a known key that is absent ("did you mean ...?"); any other unknown key is kept, written back
unchanged, and (for records that `WARN_UNKNOWN`) named in a warning, since a format may gain fields.
Hand-written, so the device needs no schema library.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import warnings
from typing import Any, Callable, ClassVar, Sequence, TypeVar

from oatdeploy.runtime.errors import ArtifactError, OatWarning

Check = Callable[[Any, str], Any]
R = TypeVar("R", bound="Record")
CLOSE = 0.8  # difflib ratio above which an unknown key reads as a misspelling of a known one


class Invalid(ValueError):
    """One field breaks the schema: where it is, and what is wrong with it and how to fix it."""

    def __init__(self, where: str, text: str) -> None:
        super().__init__(f"{where} {text}")
        self.where, self.text = where, text


def at(where: str, key: str) -> str:
    """The path of `key` inside `where`: `variants[0].metrics`, `latency['cpu|ort|fp32|b1']`."""
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

    def check(value: Any, where: str) -> Any:
        if not is_number(value):
            spelt = as_number(value)
            how = (f"write it without quotes: {spelt:g}" if spelt is not None and math.isfinite(spelt)
                   else f"set a number {want}")
            raise Invalid(where, f"is {shown(value)}, not a number; {how}")
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            raise Invalid(where, f"is {value!r}, not {want}; {fix or f'set a number {want}'}")
        return value

    return check


def integer(low: int = 0) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise Invalid(where, f"is {shown(value)}, not a whole number >= {low}; set one")
        return value

    return check


def string(pattern: re.Pattern | None = None, what: str = "a non-empty string") -> Check:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
            raise Invalid(where, f"is {shown(value)}, not {what}; fix it or re-export the deployment")
        return value

    return check


SHA256 = string(re.compile(r"^[0-9a-f]{64}$"), "a sha256 (64 hex digits)")


def choice(options: Sequence[str]) -> Check:
    def check(value: Any, where: str) -> Any:
        if value not in options:
            raise Invalid(where, f"is {shown(value)}; use one of {', '.join(map(repr, options))}")
        return value

    return check


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(where, f"is {shown(value)}, not true or false; set one")
    return value


def nullable(inner: Check) -> Check:
    def check(value: Any, where: str) -> Any:
        return None if value is None else inner(value, where)

    return check


def list_of(item: Check, min_len: int = 0, length: int | None = None) -> Check:
    def check(value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise Invalid(where, f"is {shown(value)}, not a list; write it as [...]")
        if length is not None and len(value) != length:
            raise Invalid(where, f"has {len(value)} items, not {length}")
        if len(value) < min_len:
            raise Invalid(where, f"has {len(value)} items, needs at least {min_len}; re-export the deployment")
        return [item(x, f"{where}[{i}]") for i, x in enumerate(value)]

    return check


def unknown_key(key: str, candidates: Sequence[str], where: str) -> None:
    """Refuse a key that reads as a misspelling of one of `candidates` (known keys that are absent)."""
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=CLOSE)
    if close:
        raise Invalid(at(where, key), f"is not a key oatdeploy knows; did you mean {close[0]!r}? rename it")


def dict_of(item: Check, keys: Sequence[str] | None = None) -> Check:
    """An object mapping free (or, with `keys`, known) names to values of one kind."""
    def check(value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise Invalid(where, f"is {shown(value)}, not an object; write it as {{...}}")
        out = {}
        for key, x in value.items():
            if keys is not None and key not in keys:
                unknown_key(key, keys, where)
                raise Invalid(at(where, key), f"is not one of {', '.join(map(repr, keys))}; rename or remove it")
            out[key] = item(x, at(where, key))
        return out

    return check


def free_object(value: Any, where: str) -> dict[str, Any]:
    """An object whose content the reader does not interpret."""
    if not isinstance(value, dict):
        raise Invalid(where, f"is {shown(value)}, not an object; write it as {{...}}")
    return value


def any_value(value: Any, where: str) -> Any:
    return value


def no_duplicate_keys(pairs: list) -> dict[str, Any]:
    """json.loads' object hook: a key written twice in one object (the last would silently win) is refused."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Invalid(repr(key), "appears twice in one object; keep one")
        out[key] = value
    return out


def non_finite(value: Any, where: str = "") -> str | None:
    """Where the first NaN or infinity inside a JSON value is (export refuses to write one), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = non_finite(item, f"{where}[{key}]" if isinstance(key, int) else at(where, key))
        if found:
            return found
    return None


def check_header(data: Any, path: Any, what: str, fmt: str, version: int, fix: str) -> None:
    """Refuse a file that is not a `fmt` object (a foreign file) or is another version of it, in one line."""
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise ArtifactError(f"{path} is not an oatdeploy {what} (format must be {fmt!r})")
    if data.get("version") != version:
        raise ArtifactError(f"{path} has {what} version {data.get('version')!r}; this oatdeploy reads version "
                            f"{version}: {fix}")


def required(check: Check, key: str | None = None) -> Any:
    """A field whose JSON key must be present (its value may still be null if `check` allows it)."""
    return dataclasses.field(metadata={"check": check, "required": True, "key": key})


def optional(check: Check, default: Any = None, factory: Callable[[], Any] | None = None,
             key: str | None = None) -> Any:
    """A field whose key may be absent; a None value is left out when written."""
    meta = {"check": check, "required": False, "key": key}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def json_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def to_json(value: Any) -> Any:
    """Records, and lists and dicts of them, as plain JSON values."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


class Record:
    """Base of the typed JSON objects (subclasses are dataclasses whose fields use `required`/`optional`)."""

    WARN_UNKNOWN: ClassVar[bool] = True  # name unknown keys in a warning (else keep them silently)

    @property
    def extra(self) -> dict[str, Any]:
        """Keys this oatdeploy does not know, kept as read so that writing the record back loses nothing."""
        if "_extra" not in self.__dict__:
            self.__dict__["_extra"] = {}
        return self.__dict__["_extra"]

    def validate(self, where: str) -> None:
        """Checks across fields (an interval holding its value); the fields themselves are checked already."""

    @classmethod
    def parse(cls: type[R], value: Any, where: str = "") -> R:
        """Check a JSON object against the record's fields and build the record."""
        if not isinstance(value, dict):
            raise Invalid(where or "the file", f"is {shown(value)}, not an object; write it as {{...}}")
        fields = {json_key(f): f for f in dataclasses.fields(cls)}
        unknown = [k for k in value if k not in fields]
        absent = [k for k in fields if k not in value]
        for key in unknown:
            unknown_key(key, absent, where)
        kwargs = {}
        for key, f in fields.items():
            if key in value:
                kwargs[f.name] = f.metadata["check"](value[key], at(where, key))
            elif f.metadata["required"]:
                raise Invalid(where or "the manifest", f"lacks the required key {key!r}; add it or re-export the "
                                                       "deployment")
        record = cls(**kwargs)
        record.extra.update((k, value[k]) for k in unknown)
        if unknown and cls.WARN_UNKNOWN:
            names = ", ".join(at(where, k) for k in unknown)
            warnings.warn(f"manifest.json: this oatdeploy does not know {names} (ignored; written by a newer "
                          "version?)", OatWarning, stacklevel=2)
        record.validate(where)
        return record

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object: every field (optional ones only when not None), then the unknown keys."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and not f.metadata["required"]:
                continue
            out[json_key(f)] = to_json(value)
        out.update((k, v) for k, v in self.extra.items() if k not in out)
        return out
