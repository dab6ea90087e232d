"""Device-built artifacts (engines, quantized graphs, build caches) written so that no kill can brick a deployment.

A new artifact is written under a new name (its content's sha256 is in the name), recorded in the
manifest, and only then does the file it replaces go: at every instant the manifest names files that
exist and match their sha256. Whatever a killed run leaves behind (a temporary file, an unrecorded
artifact, a replaced one not yet deleted) is swept by the next build. `build-engines` and `quantize`
hold the folder's build lock while they run, so a sweep never takes another build's fresh file. Py 3.8+.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Callable, Iterator

from oatdeploy.runtime.atomic import PathLike, atomic_save, fsync_dir, sha256_file
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.folder import confined
from oatdeploy.runtime.manifest import FileRef, Manifest

BUILD_LOCK = ".build.lock"
MANAGED = ("engines", "quantized")  # folders whose files oatdeploy owns: unreferenced ones are swept


@contextlib.contextmanager
def build_lock(folder: PathLike) -> Iterator[None]:
    """One build-engines or quantize at a time per deployment; a second one stops at once, saying why."""
    import fcntl

    try:
        fd = os.open(Path(folder) / BUILD_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        raise OatError(f"cannot write in {folder} ({e.strerror}); run this command as a user who may change the "
                       "deployment, or on a writable copy") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise OatError(f"another `oatdeploy build-engines` or `quantize` is running on {folder}; wait for it "
                           "to finish, then run this again") from None
        yield
    finally:
        os.close(fd)


def write_artifact(folder: PathLike, subdir: str, stem: str, suffix: str,
                   writer: Callable[[Path], object]) -> FileRef:
    """Write `subdir/<stem>-<sha256[:12]><suffix>` durably; returns its {path, sha256} for the manifest."""
    pending = confined(folder, f"{subdir}/.{stem}{suffix}.pending")
    atomic_save(pending, writer)
    digest = sha256_file(pending)
    rel = f"{subdir}/{stem}-{digest[:12]}{suffix}"
    os.replace(pending, confined(folder, rel))
    fsync_dir(pending.parent)
    return FileRef(rel, digest)


def sweep(folder: PathLike, manifest: Manifest) -> list[str]:
    """Delete files in engines/ and quantized/ that the manifest does not name; returns what went."""
    keep = {ref.path for _, ref in manifest.files()}
    gone = []
    for subdir in MANAGED:
        root = Path(folder) / subdir
        if not root.is_dir():
            continue
        for file in sorted(root.iterdir()):
            rel = f"{subdir}/{file.name}"
            if rel not in keep and (file.is_file() or file.is_symlink()):
                file.unlink()
                gone.append(rel)
        fsync_dir(root)
    return gone
