"""Replacing a deployment as a whole (`runtime/replace.py`): no instant without one, kills at the critical point
recovered or swept by the next command, and one lock for every writer, across the swap."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.folder import LOCKNAME, locked, read_manifest, update_variants
from oatdeploy.runtime.manifest import FILENAME
from oatdeploy.runtime.replace import PAUSE_ENV, new_staging, recover, swap_in

SWAP = """
import shutil, sys
from pathlib import Path
from oatdeploy.runtime import replace
if sys.argv[3] == "no-exchange":
    replace.exchange = lambda a, b: False  # the fallback: a system without RENAME_EXCHANGE
out = Path(sys.argv[2])
staging = replace.new_staging(out)  # named by this process, as export's is
shutil.copytree(sys.argv[1], staging, dirs_exist_ok=True)
replace.swap_in(staging, out)
"""
ROOT = str(Path(__file__).resolve().parents[2])


def new_copy(deploy: Path, label: str) -> Path:
    staging = new_staging(deploy)
    shutil.copytree(deploy, staging, dirs_exist_ok=True)
    (staging / "which").write_text(label)
    return staging


def new_source(deploy: Path, label: str) -> Path:
    source = deploy.with_name("source")
    shutil.copytree(deploy, source)
    (source / "which").write_text(label)
    return source


def swap_killed_at(point: str, source: Path, out: Path, how: str) -> None:
    """Run swap_in in a subprocess that sleeps at `point`, and kill -9 it there."""
    env = {**os.environ, PAUSE_ENV: point, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-c", SWAP, str(source), str(out), how], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == f"paused at {point}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_a_kill_right_after_the_exchange_leaves_the_new_deployment_and_debris_the_next_command_sweeps(
        folded: Path) -> None:
    (folded / "which").write_text("old")
    swap_killed_at("after-exchange", new_source(folded, "new"), folded, "exchange")
    assert (folded / "which").read_text() == "new"  # the path named a deployment throughout
    [debris] = leftovers(folded)
    assert (folded.parent / debris / "which").read_text() == "old"
    with locked(folded):  # the next writer sweeps what the killed export left
        pass
    assert leftovers(folded) == []
    assert read_manifest(folded).variants


def test_a_kill_between_the_fallbacks_two_renames_is_recovered_by_the_next_read(folded: Path) -> None:
    (folded / "which").write_text("old")
    swap_killed_at("between-renames", new_source(folded, "new"), folded, "no-exchange")
    assert not folded.exists() and len(leftovers(folded)) == 2  # what #21 found: no deployment at all
    assert read_manifest(folded).variants  # the next command puts the old one back
    assert (folded / "which").read_text() == "old"
    recover(folded)
    assert leftovers(folded) == []


def test_leftovers_of_a_live_process_or_another_host_are_left_alone(folded: Path) -> None:
    live = folded.with_name(f".{folded.name}.new-{os.getpid()}@{os.uname().nodename}@abcd")
    other = folded.with_name(f".{folded.name}.new-1@another-host@abcd")
    live.mkdir()
    other.mkdir()
    assert recover(folded) == [] and live.is_dir() and other.is_dir()


@pytest.mark.parametrize("how", ["exchange", "no-exchange"])
def test_swap_replaces_and_keeps_the_old_content_aside_for_deletion(folded: Path, how: str) -> None:
    (folded / "which").write_text("old")
    subprocess.run([sys.executable, "-c", SWAP, str(new_source(folded, "new")), str(folded), how], check=True,
                   env={**os.environ, "PYTHONPATH": ROOT})
    assert (folded / "which").read_text() == "new"
    [aside] = leftovers(folded)  # the old content, where the process (gone) would have deleted it
    assert (folded.parent / aside / "which").read_text() == "old"


def test_a_writer_waiting_on_a_swapped_folder_takes_the_lock_of_the_one_now_there(folded: Path) -> None:
    staging = new_copy(folded, "new")
    (staging / LOCKNAME).unlink(missing_ok=True)
    got = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with locked(folded):
            got.set()
            release.wait(10)

    with locked(folded):
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.2)
        assert not got.is_set()  # waiting on the old folder's lock
        swap_in(staging, folded)
    assert got.wait(10)
    fd = os.open(folded / LOCKNAME, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # the writer holds the lock of the deployment now at the path
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
        release.set()
        thread.join()


def test_an_update_after_the_deployment_was_replaced_records_nothing(folded: Path) -> None:
    started = read_manifest(folded)
    staging = new_copy(folded, "new")
    text = (staging / FILENAME).read_text().replace('"created": "', '"created": "x')
    (staging / FILENAME).write_text(text)
    with locked(folded):
        swap_in(staging, folded)
    before = (folded / FILENAME).read_bytes()
    with pytest.raises(ArtifactError, match=r"was replaced .* while this command ran"):
        update_variants(folded, lambda v: v.latency.clear(), expect=started)
    assert (folded / FILENAME).read_bytes() == before


def test_locked_is_reentrant_in_a_thread(folded: Path) -> None:
    with locked(folded), locked(folded):
        update_variants(folded, lambda v: None)
