"""docs/serving.md runs as written: its service, started on a real deployment, answers the requests the doc shows."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

DOC = Path(__file__).resolve().parents[1] / "docs" / "serving.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def post(url: str, data: bytes) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def curl(line: str, base: str, files: Path) -> tuple[int, dict]:
    """One of the doc's `curl` lines, sent with urllib (curl itself may be missing): its data and its URL."""
    args = shlex.split(line.split("#")[0])
    data = args[args.index("--data-binary" if "--data-binary" in args else "-d") + 1]
    body = (files / data[1:]).read_bytes() if data.startswith("@") else data.encode()
    return post(args[-1].replace("http://127.0.0.1:8080", base), body)


def test_the_serving_example_runs_as_written(profiled_deploy: Path, tmp_path: Path) -> None:
    from oatdeploy.runtime import Deployment

    (app,) = blocks("python")
    (tmp_path / "serve.py").write_text(app)
    start, *requests = [ln for ln in blocks("bash")[0].splitlines() if ln.strip()]
    assert start == "python serve.py deploy/fm 8080 &"
    with np.load(profiled_deploy / "verify" / "clean.npz") as npz:
        Image.fromarray(np.round(npz["x"][0, 0] * 255).astype(np.uint8)).save(tmp_path / "shirt.png")
    server = subprocess.Popen([sys.executable, "serve.py", str(profiled_deploy), "0"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stdout.readline()
        base = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert base, (banner, server.stderr.read() if server.poll() is not None else "")
        base = base.group(0)
        dep = Deployment.load(profiled_deploy)

        status, reply = curl(requests[0], base, tmp_path)
        assert status == 200 and reply["variant"] == dep.select().id  # no budget: the best clean accuracy
        assert reply["class"] and isinstance(reply["label"], int)

        most_robust = max(v.robust_acc for v in dep.variants)
        # The doc's RA budget 0.6 becomes this tiny model's best RA: the only substitution, so the budget is met.
        status, reply = curl(requests[1].replace("0.6", str(most_robust)), base, tmp_path)
        assert status == 200 and reply["variant"] == dep.select(min_robust_acc=most_robust).id
        assert post(base + "/predict", (tmp_path / "shirt.png").read_bytes())[1]["variant"] == reply["variant"]

        status, reply = post(base + "/budget", b'{"min_robust_acc": 1.01}')
        assert status == 400 and "no variant meets the budget" in reply["error"]
        status, reply = post(base + "/predict", b"not an image")
        assert status == 400 and "cannot read" in reply["error"]
    finally:
        server.terminate()
        server.wait(timeout=30)
