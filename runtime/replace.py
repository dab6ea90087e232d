"""Replace a deployment folder as a whole, with no instant at which its path is missing.

`export` builds a new deployment in a staging folder beside the target (`.NAME.new-PID@HOST@xxxx`) and swaps it
in. A directory cannot be renamed over a non-empty one, so two renames (old aside, new in) leave a moment
with no deployment, and a kill there leaves none at all. Instead the swap is one `renameat2(RENAME_EXCHANGE)`
(Linux ≥ 3.15; ext4, xfs, btrfs, tmpfs, overlayfs): the path names the old folder, then the new one, never
nothing, and the old content is left in the staging folder to delete. A symlink flip was not chosen: the
deployment path would have to become a symlink, which users copy, tar and rsync as a link. Where the kernel,
libc or file system cannot exchange (another OS), the two renames are the fallback, with the old folder set
aside as `.NAME.old-PID@HOST`, which the next command puts back if the process that made it is gone.

Swaps run under the deployment's lock (`folder.locked`), so they are serialized with each other and with every
device command's manifest update. Leftovers of a killed export (its staging folder, the old content being
deleted) carry the PID and host that made them and are swept by the next export or device command on that
host once that process is gone. Python 3.8+.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import platform
import shutil
import socket
import tempfile
import time
from pathlib import Path

from oatdeploy.runtime.atomic import PathLike, fsync_dir

RENAME_EXCHANGE = 2
AT_FDCWD = -100
SYSCALLS = {"x86_64": 316, "aarch64": 276}  # renameat2, for a libc older than 2.28 (JetPack 4's)
UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP)
PAUSE_ENV = "OATDEPLOY_TEST_PAUSE_AT"  # tests: sleep at a named point so a kill -9 lands exactly there


def pause_point(name: str) -> None:
    """Where a test kills the process: with OATDEPLOY_TEST_PAUSE_AT=name, say so and sleep."""
    if os.environ.get(PAUSE_ENV) == name:
        print(f"paused at {name}", flush=True)
        time.sleep(600)


def _renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    if hasattr(libc, "renameat2"):
        return lambda a, b: libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    number = SYSCALLS.get(platform.machine()) if platform.system() == "Linux" else None
    if number is None:
        return None
    return lambda a, b: libc.syscall(number, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where this system cannot (nothing was changed then)."""
    call = _renameat2() if platform.system() == "Linux" else None
    if call is None:
        return False
    if call(os.fsencode(str(a)), os.fsencode(str(b))) == 0:  # type: ignore[operator]
        return True
    err = ctypes.get_errno()
    if err in UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def tag() -> str:
    """`PID@HOST`: who made a staging or set-aside folder, so only that host sweeps it, once that PID is gone."""
    return f"{os.getpid()}@{socket.gethostname()}"


def new_staging(out: Path) -> Path:
    """An empty hidden folder beside `out` to build the new deployment in."""
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.new-{tag()}@", dir=out.parent))


def _gone(name: str, prefix: str) -> bool:
    """Whether the process that made this leftover (named PREFIX-PID[@HOST[@…]]) is gone, on this host."""
    pid, _, rest = name[len(prefix):].partition("@")
    host = rest.split("@", 1)[0] if rest else socket.gethostname()  # before hosts were named: this host's
    if not pid.isdigit() or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def recover(out: PathLike) -> list[str]:
    """Put back a deployment a killed two-rename swap set aside, and delete what killed exports left beside `out`.

    Only leftovers whose process is gone are touched. Returns what was done, one line each (best effort: a
    folder that cannot be written is left as it is)."""
    out = Path(out)
    old_prefix, new_prefix = f".{out.name}.old-", f".{out.name}.new-"
    try:
        entries = sorted(out.parent.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    done = []
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.name.startswith(old_prefix) and _gone(entry.name, old_prefix):
                if not out.exists() and not out.is_symlink():
                    os.rename(entry, out)
                    fsync_dir(out.parent)
                    done.append(f"restored {out} from {entry.name}, set aside by an export that was killed")
                else:
                    shutil.rmtree(entry)
                    done.append(f"removed {entry}, left by an export that was killed")
            elif entry.name.startswith(new_prefix) and _gone(entry.name, new_prefix):
                shutil.rmtree(entry)
                done.append(f"removed {entry}, left by an export that was killed")
    return done


def swap_in(staging: Path, out: Path) -> None:
    """Put `staging` at `out` (which must be locked, or absent); the old content ends up in `staging` (or gone).

    With `out` present: one atomic exchange, else (no RENAME_EXCHANGE here) the two renames. With `out` absent
    or empty: one rename, which fails (ENOTEMPTY/EEXIST) if another export got there first."""
    if out.exists() and exchange(staging, out):
        fsync_dir(out.parent)
        pause_point("after-exchange")
        return
    if not out.exists():
        os.rename(staging, out)
        fsync_dir(out.parent)
        return
    aside = out.with_name(f".{out.name}.old-{tag()}")
    os.rename(out, aside)
    pause_point("between-renames")
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(aside, out)
        raise
    os.rename(aside, staging)  # the old content where the exchange would have left it
    fsync_dir(out.parent)

