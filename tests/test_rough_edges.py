"""What a new user met at the edges (issue 23): Ctrl-C, hints that point the right way, one bad file among good ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


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
