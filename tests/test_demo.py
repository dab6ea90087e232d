"""`oatdeploy demo`: the whole pipeline runs, and its printout explains itself to a newcomer."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from oatdeploy.demo import QUICK, cli_number
from oatdeploy.demo_clock import DemoClock, DemoWork, duration
from tests.conftest import oatdeploy_cli


def test_the_quick_demo_runs_end_to_end_and_explains_itself(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = oatdeploy_cli("demo", "--quick", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    # it says it is quick and what it leaves out, then what the knob's two ends mean, before training
    assert text.index("quick demo (--quick)") < text.index("λ = 0  clean training") < text.index("== train")
    assert "the full demo: PGD-10 on 1,000" in text and "λ = 1  adversarial training only" in text
    for n, stage in enumerate(("train", "eval", "export", "profile", "select"), 1):
        assert f"== {stage} ({n}/5)" in text
    # time left for the whole demo: measured after the first steps, then on every later stage's line
    assert re.search(r"measured [0-9.]+ s per training step: about .+ left for the whole demo", text)
    assert len(re.findall(r"^== \w+ \([2-5]/5\).*about .+ left for the whole demo\]$", text, re.M)) == 4
    assert "derived from this run" in text and "budget 1 (p50 ≤" in text and "budget 2 (" in text
    manifest = json.loads((out / "deploy" / "manifest.json").read_text())
    assert len(manifest["variants"]) == len(QUICK.lambdas) * len(QUICK.train["widths"])
    assert all(v["latency"] for v in manifest["variants"])
    assert (out / "deploy" / "tradeoff-ort-fp32.png").read_bytes()[:4] == b"\x89PNG"
    # the next commands name this demo's folders and run as printed
    suggested = re.findall(r"^  (oatdeploy (?:select|predict|plot|info) .*)$", text, re.M)
    assert [c.split()[1] for c in suggested] == ["select", "predict", "plot", "info"]
    for command in suggested[:2]:
        ran = oatdeploy_cli(*shlex.split(command)[1:])
        assert ran.returncode == 0, (command, ran.stderr[-2000:])
    assert str(out / "images") in suggested[1] and len(list((out / "images").glob("*.png"))) == 4


@pytest.mark.parametrize(("value", "up", "text"), [(0.114571, True, "0.115"), (0.1025, False, "0.102"),
                                                    (4.0, True, "4"), (12.34, False, "12.3")])
def test_a_budget_becomes_options_that_admit_what_it_admits(value: float, up: bool, text: str) -> None:
    assert cli_number(value, up) == text
    assert (float(text) >= value) if up else (float(text) <= value)


def test_the_time_left_is_priced_from_measured_steps() -> None:
    work = DemoWork(batch_size=64, train_pgd_steps=3, attacked_share=0.5, lambdas=6, variants=12, eval_images=1000,
                    eval_pgd_steps=10, verify_images=500, profile_seconds=0.5)
    clock = DemoClock(work)
    clock.start("train")
    assert clock.left("train") is None and not clock.step(1, 100)
    assert not any(clock.step(done, 100) for done in range(2, 6)) and clock.step(6, 100)
    clock.per_pass = 1.0 / work.step_passes()  # one second a step, to price the rest
    assert clock.left("select") == pytest.approx(3.0)
    assert clock.left("train") == pytest.approx(94 + clock.left("eval"))
    # evaluation attacks 1,000 images, export 500: export's attack half of evaluation's
    assert clock.stage_seconds("export") - 12 * 0.5 == pytest.approx(clock.stage_seconds("eval") / 2)
    assert [duration(s) for s in (3, 42, 200, 4000)] == ["5 s", "40 s", "3 min 20 s", "1 h 5 min"]
