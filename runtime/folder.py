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
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from oatdeploy.runtime.atomic import (
    NotRegular,
    PathLike,
    TooLarge,
    atomic_write_json,
    read_bounded,
    sha256_bytes,
    sha256_file,
)
from oatdeploy.runtime.checks import Invalid, check_header, no_duplicate_keys
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.manifest import FILENAME, FORMAT, VERSION, Manifest, VariantEntry, parse_manifest
from oatdeploy.runtime.replace import recover

LOCKNAME = ".manifest.lock"
MAX_MANIFEST_BYTES = 64 << 20  # a manifest of a thousand variants with engines for ten devices is under 10 MB
MAX_ARTIFACT_BYTES = 4 << 30  # a file the manifest records no size for (ONNX's protobuf limit is 2 GB)
_held = threading.local()  # the folders this thread holds the lock of: `locked` is re-entrant per thread
RUN_CHECKPOINT = "supernet.pt"  # what a training run's folder holds: named when one is passed as a deployment


def confined(folder: PathLike, rel: Any) -> Path:
    """`folder/rel`, refusing a path that is absolute, climbs with `..`, or resolves (symlinks) outside `folder`."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise ArtifactError(f"manifest path {rel!r} is not a relative path inside the deployment; re-export it")
    pure = PurePosixPath(rel)
    if len(rel) > 1024 or any(len(part) > 255 for part in pure.parts):
        raise ArtifactError(f"manifest path {rel[:60]!r}... is {len(rel):,} characters, longer than a file system "
                            "takes; re-export the deployment")
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
    if not path.exists() and recover(folder):
        return read_manifest(folder)
    if not path.exists():
        if (folder / RUN_CHECKPOINT).is_file():  # a training run: exporting into it would be refused
            raise ArtifactError(f"{folder} is a training run, not a deployment; export it into a folder of its own "
                                f"with `oatdeploy export {folder / RUN_CHECKPOINT} --out DEPLOY`, then pass DEPLOY")
        raise ArtifactError(f"no {FILENAME} in {folder}; export one with `oatdeploy export RUN/supernet.pt "
                            f"--out {folder}`")
    try:
        data = json.loads(read_bounded(path, MAX_MANIFEST_BYTES).decode(), object_pairs_hook=no_duplicate_keys)
    except (NotRegular, TooLarge) as e:
        raise ArtifactError(f"{path}: {e}; a manifest is a small regular file: re-run `oatdeploy export`") from None
    except RecursionError:
        raise ArtifactError(f"{path} nests its values too deep to be a manifest; re-run `oatdeploy export`") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and ints too long to convert
        raise ArtifactError(f"{path} is not valid JSON ({e}); re-run `oatdeploy export`") from None
    except Invalid as e:
        raise ArtifactError(f"{path}: the key {e}") from None
    check_header(data, path, "manifest", FORMAT, VERSION, "re-export with this version or upgrade oatdeploy")
    try:
        manifest = parse_manifest(data)
    except Invalid as e:
        raise ArtifactError(f"{path}: {e}; re-run `oatdeploy export`") from None
    for _, ref in manifest.files():
        confined(folder, ref.path)
    return manifest


def _missing(file: Path) -> ArtifactError:
    return ArtifactError(f"{file} is listed in the manifest but missing; copy the whole deployment folder again")


def _mismatch(file: Path) -> ArtifactError:
    return ArtifactError(f"{file} does not match its sha256 in the manifest (changed or corrupted); copy it again "
                         "or re-export")


def _bounded(size: int | None) -> int:
    """The most bytes to read of an artifact: the size the manifest records, else MAX_ARTIFACT_BYTES."""
    return MAX_ARTIFACT_BYTES if size is None else size


def _unreadable(file: Path, e: OSError, size: int | None) -> ArtifactError:
    if isinstance(e, FileNotFoundError):
        return _missing(file)
    if isinstance(e, TooLarge):
        if size is not None:
            return ArtifactError(f"{file} is {e.size:,} bytes where the manifest records {size:,} (changed or "
                                 "corrupted); copy it again or re-export")
        return ArtifactError(f"{file} is {e.size:,} bytes, more than any artifact of a deployment ({e.limit:,}); "
                             "copy the real file again or re-export")
    if isinstance(e, NotRegular):
        return ArtifactError(f"{file} is not a regular file (a FIFO, device or socket), so it is not read; copy the "
                             "real file into the deployment")
    return ArtifactError(f"cannot read {file} ({e.strerror or e}); check its permissions or copy it again")


def check_file(folder: PathLike, rel: str, digest: str, size: int | None = None) -> Path:
    """Refuse a missing, irregular, wrongly sized or altered artifact; returns its path."""
    file = confined(folder, rel)
    try:
        actual, limit = file.stat().st_size if file.is_file() else None, _bounded(size)
        if actual is not None and (actual > limit or (size is not None and actual != size)):
            raise TooLarge(actual, limit)
        ok = sha256_file(file) == digest
    except OSError as e:
        raise _unreadable(file, e, size) from None
    if not ok:
        raise _mismatch(file)
    return file


def read_verified(folder: PathLike, rel: str, digest: str, size: int | None = None) -> bytes:
    """The bytes of an artifact, hashed as read: the caller deserializes exactly what was checked. Only a regular
    file is read, and no more than the size the manifest records (or MAX_ARTIFACT_BYTES)."""
    file = confined(folder, rel)
    try:
        data = read_bounded(file, _bounded(size))
    except OSError as e:
        raise _unreadable(file, e, size) from None
    if (size is not None and len(data) != size) or sha256_bytes(data) != digest:
        raise _mismatch(file)
    return data


def load_manifest(folder: PathLike, check_sha256: bool = True) -> Manifest:
    """`read_manifest`, and with `check_sha256` every artifact it names checked (a whole-folder audit)."""
    manifest = read_manifest(folder)
    if check_sha256:
        sizes = {ref.path: ref.size for _, ref in manifest.files() if ref.size is not None}
        for rel, digest in manifest.artifacts():
            check_file(folder, rel, digest, sizes.get(rel))
    return manifest


def _open_lock(folder: Path) -> int:
    path = folder / LOCKNAME
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        if not recover(folder):
            raise ArtifactError(f"no deployment at {folder}; export one with `oatdeploy export RUN/supernet.pt "
                                f"--out {folder}`") from None
        return _open_lock(folder)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        raise ArtifactError(f"cannot write in {folder} ({e.strerror}); run this command as a user who may change "
                            "the deployment, or on a writable copy") from None


def _still_there(fd: int, path: Path) -> bool:
    """Whether the locked file is still the one at `path` (export swaps the whole folder, lock file included)."""
    try:
        here, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def locked(folder: PathLike) -> Iterator[None]:
    """The deployment's exclusive inter-process lock (flock on DEPLOY/.manifest.lock), taken by every writer:
    device updates and `export --force`'s swap. Re-entrant within a thread; a lock taken on a folder that was
    swapped away meanwhile is dropped and taken again on the folder now at that path. Leftovers of a killed
    export beside the folder are swept (`replace.recover`) first."""
    import fcntl

    folder = Path(folder)
    key = os.path.abspath(folder)
    held = _held.__dict__.setdefault("folders", set())
    if key in held:
        yield
        return
    recover(folder)
    while True:
        fd = _open_lock(folder)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _still_there(fd, folder / LOCKNAME):
            break
        os.close(fd)
    held.add(key)
    try:
        yield
    finally:
        held.discard(key)
        os.close(fd)  # closing releases the lock


def write_manifest(folder: PathLike, manifest: Manifest) -> Path:
    """Write then rename (and fsync), so a crash never leaves a half-written manifest. A symlinked manifest is
    written through (the link stays) when it leads to a file inside the deployment, and refused otherwise."""
    path = Path(folder) / FILENAME
    if path.is_symlink():
        confined(folder, FILENAME)
    atomic_write_json(path, manifest.to_json())
    return path


def update_manifest(folder: PathLike, edit: Callable[[Manifest], Any], expect: Manifest | None = None) -> Manifest:
    """Apply `edit` to the manifest as it is on disk now, under the lock, then write it back.

    Re-reading under the lock, rather than saving a copy read earlier, keeps what another command wrote:
    profile, quantize, verify and build-engines each add their own fields to the same manifest. `expect` is the
    manifest the command started from: if `export --force` replaced the deployment since, nothing is written
    (the command measured or built the old one). A file the edit names must exist.
    """
    with locked(folder):
        manifest = read_manifest(folder)
        if expect is not None and manifest.identity() != expect.identity():
            raise ArtifactError(f"{folder} was replaced (`oatdeploy export --force`) while this command ran on the "
                                "deployment it held before; nothing was recorded: run the command again")
        before = {ref.path for _, ref in manifest.files()}
        edit(manifest)
        for _, ref in manifest.files():
            if ref.path not in before and not confined(folder, ref.path).is_file():
                raise _missing(confined(folder, ref.path))
        write_manifest(folder, manifest)
    return manifest


def update_variants(folder: PathLike, edit: Callable[[VariantEntry], Any], expect: Manifest | None = None) -> Manifest:
    """`update_manifest` applied to each variant."""
    def each(manifest: Manifest) -> None:
        for variant in manifest.variants:
            edit(variant)

    return update_manifest(folder, each, expect)
