"""Write-then-rename helpers, so no partial file ever replaces a good one, and a finished write survives a power cut.

Every file the project writes goes through `atomic_path`: the temporary file is created with mode 0666
minus the umask (what a plain `open(..., "w")` gives, not mkstemp's owner-only 0600), or with the mode
of the file it replaces; it is fsynced before the rename, and its folder after, so the rename itself is
on disk when the call returns. Python 3.8+ (the device side uses it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(folder: PathLike) -> None:
    """Make renames and new entries in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new empty file beside `path`, created 0666 & ~umask by the kernel; returns it and its mode."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp, stat.S_IMODE(os.stat(tmp).st_mode)
    raise FileExistsError(f"could not create a temporary file beside {path}")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; if the block succeeds, fsync it and rename it over `path`.

    The result keeps the mode of the file it replaces (or gets 0666 minus the umask for a new file),
    whatever mode the writer inside the block used. A symlink at `path` is written through: its target is
    replaced, the link stays.
    """
    path = Path(path)
    if path.is_symlink():  # write through the link, as open() would, rather than replace it by a file
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, mode = _create_temp(path)
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    try:
        yield tmp
        os.chmod(tmp, mode)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: PathLike, data: bytes | memoryview) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save(path: PathLike, writer: Callable[[Path], object]) -> None:
    """Run `writer(tmp_path)` and rename the result into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def open_regular(path: PathLike) -> int:
    """A read-only descriptor of `path`, refusing what is not a regular file: a FIFO (opened without blocking,
    then refused, never read), a device or a socket. Raises `NotRegular` (an OSError) for those."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegular(f"{path} is not a regular file (a FIFO, device or socket)")
    return fd


class NotRegular(OSError):
    """A path that names a FIFO, device or socket where a file was expected."""


def read_bounded(path: PathLike, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; `TooLarge` (an OSError) before reading more."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise TooLarge(size, limit)
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise TooLarge(len(data), limit)
    return data


class TooLarge(OSError):
    """A file larger than the bound a reader sets."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size:,} bytes, more than the {limit:,} allowed")
        self.size, self.limit = size, limit


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as f:
        block = f.read(chunk)
        while block:
            h.update(block)
            block = f.read(chunk)
    return h.hexdigest()
