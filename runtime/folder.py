"""A deployment folder on disk: paths kept inside it, artifacts hashed as they are read, and its manifest read,
checked and updated under an inter-process lock.

Reading checks the manifest's format, version and schema (`manifest.py`) and that every path it names stays
inside the folder (relative, no `..`, no symlink leading out). Artifacts are checked where they are used:
`read_verified` hashes a file's bytes and hands back those same bytes, so what is deserialized is what was
hashed. Every change on the device (profile, quantize, verify, build-engines) is a read-modify-write under an
inter-process lock, so two commands running at once never lose each other's updates. Python 3.8+.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from oatdeploy.runtime.atomic import PathLike, atomic_write_json, sha256_bytes, sha256_file
from oatdeploy.runtime.checks import Invalid, check_header, no_duplicate_keys
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.manifest import FILENAME, FORMAT, VERSION, Manifest, VariantEntry, parse_manifest

LOCKNAME = ".manifest.lock"
RUN_CHECKPOINT = "supernet.pt"  # what a training run's folder holds: named when one is passed as a deployment


def confined(folder: PathLike, rel: Any) -> Path:
    """`folder/rel`, refusing a path that is absolute, climbs with `..`, or resolves (symlinks) outside `folder`."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise ArtifactError(f"manifest path {rel!r} is not a relative path inside the deployment; re-export it")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        raise ArtifactError(f"manifest path {rel!r} points outside the deployment folder (absolute or '..'); "
                            "refusing it: re-export the deployment")
    root = Path(folder).resolve()
    target = (root / pure).resolve()
    if target != root and root not in target.parents:
        raise ArtifactError(f"manifest path {rel!r} leads outside the deployment folder through a symlink "
                            f"(to {target}); refusing it: copy the real file into the folder")
    return root / pure


def read_manifest(folder: PathLike) -> Manifest:
    """DEPLOY/manifest.json, its format, version, schema and paths checked; no artifact is read."""
    folder = Path(folder)
    path = folder / FILENAME
    if not path.is_file():
        if (folder / RUN_CHECKPOINT).is_file():  # a training run: exporting into it would be refused
            raise ArtifactError(f"{folder} is a training run, not a deployment; export it into a folder of its own "
                                f"with `oatdeploy export {folder / RUN_CHECKPOINT} --out DEPLOY`, then pass DEPLOY")
        raise ArtifactError(f"no {FILENAME} in {folder}; export one with `oatdeploy export RUN/supernet.pt "
                            f"--out {folder}`")
    try:
        data = json.loads(path.read_text(), object_pairs_hook=no_duplicate_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}); re-run `oatdeploy export`") from None
    except Invalid as e:
        raise ArtifactError(f"{path}: the key {e}") from None
    check_header(data, path, "manifest", FORMAT, VERSION, "re-export with this version or upgrade oatdeploy")
    try:
        manifest = parse_manifest(data)
    except Invalid as e:
        raise ArtifactError(f"{path}: {e}") from None
    for _, ref in manifest.files():
        confined(folder, ref.path)
    return manifest


def _missing(file: Path) -> ArtifactError:
    return ArtifactError(f"{file} is listed in the manifest but missing; copy the whole deployment folder again")


def _mismatch(file: Path) -> ArtifactError:
    return ArtifactError(f"{file} does not match its sha256 in the manifest (changed or corrupted); copy it again "
                         "or re-export")


def check_file(folder: PathLike, rel: str, digest: str) -> Path:
    """Refuse a missing or altered artifact; returns its path."""
    file = confined(folder, rel)
    if not file.is_file():
        raise _missing(file)
    if sha256_file(file) != digest:
        raise _mismatch(file)
    return file


def read_verified(folder: PathLike, rel: str, digest: str) -> bytes:
    """The bytes of an artifact, hashed as read: the caller deserializes exactly what was checked."""
    file = confined(folder, rel)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise _missing(file) from None
    if sha256_bytes(data) != digest:
        raise _mismatch(file)
    return data


def load_manifest(folder: PathLike, check_sha256: bool = True) -> Manifest:
    """`read_manifest`, and with `check_sha256` every artifact it names checked (a whole-folder audit)."""
    manifest = read_manifest(folder)
    if check_sha256:
        for rel, digest in manifest.artifacts():
            check_file(folder, rel, digest)
    return manifest


@contextlib.contextmanager
def locked(folder: PathLike) -> Iterator[None]:
    """An exclusive inter-process lock on the deployment's manifest (flock on DEPLOY/.manifest.lock)."""
    import fcntl

    path = Path(folder) / LOCKNAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        raise ArtifactError(f"cannot write in {folder} ({e.strerror}); run this command as a user who may change "
                            "the deployment, or on a writable copy") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_manifest(folder: PathLike, manifest: Manifest) -> Path:
    """Write then rename (and fsync), so a crash never leaves a half-written manifest."""
    path = Path(folder) / FILENAME
    atomic_write_json(path, manifest.to_json())
    return path


def update_manifest(folder: PathLike, edit: Callable[[Manifest], Any]) -> Manifest:
    """Apply `edit` to the manifest as it is on disk now, under the lock, then write it back.

    Re-reading under the lock, rather than saving a copy read earlier, keeps what another command wrote:
    profile, quantize, verify and build-engines each add their own fields to the same manifest.
    """
    with locked(folder):
        manifest = read_manifest(folder)
        edit(manifest)
        write_manifest(folder, manifest)
    return manifest


def update_variants(folder: PathLike, edit: Callable[[VariantEntry], Any]) -> Manifest:
    """`update_manifest` applied to each variant."""
    def each(manifest: Manifest) -> None:
        for variant in manifest.variants:
            edit(variant)

    return update_manifest(folder, each)
