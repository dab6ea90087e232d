"""manifest.json version 1: the contract between export and the device. Torch-free.

Reading checks the format and version and, by default, the sha256 of every artifact it names, so a
copied deployment that lost or changed a file is refused before anything runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oatdeploy.atomic import atomic_write_json, sha256_file
from oatdeploy.errors import ArtifactError

FORMAT = "oatdeploy-manifest"
VERSION = 1
FILENAME = "manifest.json"


def artifact_entries(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (relative path, sha256) the manifest promises, each once."""
    seen: dict[str, str] = {}
    for key in ("calibration",):
        if manifest.get(key):
            seen[manifest[key]["path"]] = manifest[key]["sha256"]
    for item in (manifest.get("verification") or {}).values():
        seen[item["path"]] = item["sha256"]
    for v in manifest["variants"]:
        seen[v["onnx"]] = v["sha256"]
        if v.get("adv_examples"):
            seen[v["adv_examples"]["path"]] = v["adv_examples"]["sha256"]
        for q in (v.get("quantized") or {}).values():
            seen[q["onnx"]] = q["sha256"]
        for e in v.get("engines") or []:
            seen[e["path"]] = e["sha256"]
    return list(seen.items())


def load_manifest(folder: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read DEPLOY/manifest.json; refuse unknown versions and missing or altered artifacts."""
    folder = Path(folder)
    path = folder / FILENAME
    if not path.is_file():
        raise ArtifactError(f"no {FILENAME} in {folder}; export one with `oatdeploy export RUN/supernet.pt "
                            f"--out {folder}`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}); re-run `oatdeploy export`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not an oatdeploy manifest (format must be {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise ArtifactError(f"{path} has manifest version {manifest.get('version')!r}; this oatdeploy reads "
                            f"version {VERSION}: re-export with this version or upgrade oatdeploy")
    if not manifest.get("variants"):
        raise ArtifactError(f"{path} lists no variants; re-run `oatdeploy export`")
    if verify:
        for rel, digest in artifact_entries(manifest):
            file = folder / rel
            if not file.is_file():
                raise ArtifactError(f"{file} is listed in the manifest but missing; copy the whole deployment "
                                    "folder again")
            if sha256_file(file) != digest:
                raise ArtifactError(f"{file} does not match its sha256 in the manifest (changed or corrupted); "
                                    "copy it again or re-export")
    return manifest


def save_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Write then rename, so a crash never leaves a half-written manifest."""
    path = Path(folder) / FILENAME
    atomic_write_json(path, manifest)
    return path


def update_variants(folder: str | Path, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply `edit` to each variant of the manifest as it is on disk now, then write it back atomically.

    Re-reading, rather than saving a copy read earlier, keeps what another command wrote in between:
    profile, quantize, verify and build-engines each add their own fields to the same variants.
    """
    manifest = load_manifest(folder, verify=False)
    for variant in manifest["variants"]:
        edit(variant)
    save_manifest(folder, manifest)
    return manifest
