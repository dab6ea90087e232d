"""What a new user met at the edges (issue 23): Ctrl-C, hints that point the right way, one bad file among good ones."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest


def test_ctrl_c_in_any_command_exits_130_with_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    proc = subprocess.Popen([sys.executable, "-m", "oatdeploy.cli", "eval", str(tiny_ckpt), "--pgd-steps", "200",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    while b"eval" not in seen:  # its progress bar: the command is at work
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, f"eval ended before it could be interrupted: {seen[-2000:]!r}"
        seen += chunk
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = (seen + rest).decode()
    assert proc.returncode == 130, err[-2000:]
    assert err.rstrip().splitlines()[-1] == "interrupted (Ctrl-C)", err[-2000:]
    assert "Aborted" not in err and "Traceback" not in err and not out.exists()


def test_float_pixels_left_at_0_255_warn_where_images_are_served(profiled_deploy: Path, tiny_ckpt: Path) -> None:
    import numpy as np

    import oatdeploy
    from oatdeploy.runtime import Deployment
    from oatdeploy.runtime.errors import OatWarning

    x = np.load(profiled_deploy / "verify" / "clean.npz")["x"][:2].astype(np.float32)
    with Deployment.load(profiled_deploy).switcher() as sw, warnings.catch_warnings():
        warnings.simplefilter("error")  # images in [0, 1]: not a word
        sw(x)
        with pytest.warns(OatWarning, match=r"scaled to \[0, 1\] \(8-bit pixels: x / 255\)"):
            sw(x * 255)
    sn = oatdeploy.load_checkpoint(tiny_ckpt)
    with pytest.warns(OatWarning, match="x / 255"):
        sn.predict(x * 255, lam=0.4, width=0.5)


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_hints_point_the_right_way(cli, tiny_ckpt: Path, profiled_deploy: Path, tmp_path: Path) -> None:
    run = tiny_ckpt.parent
    # a run folder where a deployment belongs: export it into a folder of its own (not into the run)
    one_line(cli("select", str(run)), "is a training run", f"oatdeploy export {run / 'supernet.pt'} --out DEPLOY")
    # a run folder where a checkpoint belongs: the file inside it
    for command in ("export", "eval"):
        one_line(cli(command, str(run), "--out", str(tmp_path / "x")), f"oatdeploy {command} {run / 'supernet.pt'}")
    # our own checkpoint given to import-reference: nothing to import
    one_line(cli("import-reference", str(tiny_ckpt), "--arch", "resnet34", "--lambdas", "0,1", "--encoding", "rand",
                 "--dataset", "cifar10", "--out", str(tmp_path / "r")), "already an oatdeploy checkpoint")
    assert not (tmp_path / "r").exists()
    # a damaged deployment: info says how to look at it anyway
    deploy = Path(shutil.copytree(profiled_deploy, tmp_path / "d"))
    (deploy / "verify" / "clean.npz").write_bytes(b"changed")
    one_line(cli("info", str(deploy)), "does not match its sha256", f"oatdeploy info {deploy} --no-verify")
    assert cli("info", str(deploy), "--no-verify").returncode == 0


@pytest.mark.parametrize("bad", [{"arch": "resnet18"}, {"batch_size": 4096}])
def test_training_refused_for_a_bad_option_leaves_no_run_folder(tmp_path: Path, bad: dict[str, object]) -> None:
    from oatdeploy.runtime.errors import OatError
    from oatdeploy.trainer import TrainConfig, train
    from tests.conftest import TINY

    with pytest.raises(OatError, match="resnet20" if "arch" in bad else "lower --batch-size"):
        train(TrainConfig(**{**TINY, **bad, "out": str(tmp_path / "run")}), progress=False)
    assert not (tmp_path / "run").exists()  # no train.log, no folder


def test_the_checkout_imported_from_the_folder_that_holds_it_says_so(tmp_path: Path) -> None:
    """From a checkout's parent folder, `import oatdeploy` finds the checkout (no __init__.py: an empty namespace
    package) before an editable install's finder; importing anything in it then names the fix."""
    (tmp_path / "oatdeploy").symlink_to(Path(__file__).resolve().parents[1], target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def python(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    if python("import oatdeploy; assert oatdeploy.__file__ is None").returncode:
        pytest.skip("a regular install: Python finds the installed package before the checkout")
    for module in ("oatdeploy.runtime", "oatdeploy.export", "oatdeploy.oatdeploy"):
        result = python(f"import {module}")
        assert result.returncode == 1, (module, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"ImportError: `import oatdeploy` found the folder {tmp_path / 'oatdeploy'}"), last
        assert last.endswith(f"run Python from another folder, e.g. `cd {tmp_path / 'oatdeploy'}`"), last
