"""docs/architecture.md names only what exists: every `oatdeploy.…` name resolves and every path is a file."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def resolve(name: str) -> object:
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def test_every_dotted_name_in_the_architecture_doc_exists() -> None:
    names = sorted(set(re.findall(r"`(oatdeploy(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", DOC)))
    assert len(names) > 30, names  # the λ path and the contracts are named in full
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            missing.append(f"{name}: {e}")
    assert not missing, missing


def test_every_path_in_the_architecture_doc_exists() -> None:
    paths = sorted(set(re.findall(r"`((?:oatdeploy|runtime|export|tests|docs)/[A-Za-z0-9_/.]*)`", DOC)))
    assert len(paths) > 10, paths
    assert not [p for p in paths if not (ROOT / p).exists()]
