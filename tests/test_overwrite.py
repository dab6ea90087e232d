"""Nothing is replaced silently: runs, deployments and evaluations need --resume/--force, or get their own name."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import train_run

# A training run of seconds (2 variants): the refusals are what is under test, not the model.
QUICK = {"lambdas": [0.0, 1.0], "widths": [0.5], "batch_size": 16, "pgd_steps": 1, "train_limit": 64}
QUICK_TRAIN = ["--lambdas", "0,1", "--widths", "0.5", "--batch-size", "16", "--pgd-steps", "1", "--train-limit", "64",
               "--max-steps", "1"]
QUICK_EXPORT = ["--verify-samples", "8", "--calib-samples", "8", "--quiet"]


@pytest.fixture(scope="module")
def quick_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(tmp_path_factory.mktemp("quick"), **QUICK, max_steps=1)


def one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2 and one line on stderr (after any progress bars of the work done before the refusal)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith(("eval:", "train:"))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_train_refuses_a_folder_holding_a_checkpoint(cli, quick_ckpt: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(quick_ckpt, run / "supernet.pt")
    before = (run / "supernet.pt").read_bytes()
    result = cli("train", *QUICK_TRAIN, "--out", str(run))
    one_error_line(result, str(run / "supernet.pt"), "--resume", "--force")
    assert (run / "supernet.pt").read_bytes() == before
    assert not (run / "config.json").exists()  # refused before writing anything

    result = cli("train", *QUICK_TRAIN, "--resume", "--force", "--out", str(run))
    one_error_line(result, "--resume", "--force", "one of them")

    result = cli("train", *QUICK_TRAIN, "--force", "--out", str(run))
    assert result.returncode == 0, result.stderr
    assert (run / "supernet.pt").read_bytes() != before
    assert json.loads((run / "config.json").read_text())["widths"] == [0.5]


def test_train_starts_in_an_empty_or_new_folder(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new"):
        result = cli("train", *QUICK_TRAIN, "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert (out / "supernet.pt").is_file()


def test_demo_refuses_an_earlier_demo_before_any_work(cli, quick_ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "demo" / "run").mkdir(parents=True)
    shutil.copy(quick_ckpt, tmp_path / "demo" / "run" / "supernet.pt")
    result = cli("demo", "--out", str(tmp_path / "demo"), "--max-steps", "1")
    one_error_line(result, "already holds a checkpoint", "--force")
    assert "== train" not in result.stdout


def test_export_refuses_an_existing_deployment(cli, quick_ckpt: Path, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    assert cli("export", str(quick_ckpt), "--out", str(deploy), *QUICK_EXPORT).returncode == 0
    manifest = json.loads((deploy / "manifest.json").read_text())
    manifest["variants"][0]["latency"]["a device|ort|fp32|b1"] = {"p50_ms": 1.0}  # what `profile` would add
    (deploy / "manifest.json").write_text(json.dumps(manifest))
    before = {p: p.read_bytes() for p in deploy.rglob("*") if p.is_file()}
    result = cli("export", str(quick_ckpt), "--out", str(deploy), *QUICK_EXPORT)
    one_error_line(result, f"{deploy} already holds a deployment", "--force")
    assert {p: p.read_bytes() for p in deploy.rglob("*") if p.is_file()} == before

    result = cli("export", str(quick_ckpt), "--out", str(deploy), "--force", *QUICK_EXPORT)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((deploy / "manifest.json").read_text())
    assert all(v["latency"] == {} for v in manifest["variants"])  # a fresh deployment: the old profile went with it


def test_eval_names_its_file_by_what_it_holds(cli, quick_ckpt: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "supernet.pt"
    shutil.copy(quick_ckpt, ckpt)
    for limit in ("8", "4"):
        result = cli("eval", str(ckpt), "--limit", limit, "--pgd-steps", "2")
        assert result.returncode == 0, result.stderr
        assert f"wrote {tmp_path / f'eval-pgd2-n{limit}.json'}" in result.stdout
    result = cli("eval", str(ckpt), "--limit", "4", "--pgd-steps", "1", "--eps", "0.05")
    assert result.returncode == 0, result.stderr
    reports = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("eval*.json")}
    assert sorted(reports) == ["eval-pgd1-eps0.05-n4.json", "eval-pgd2-n4.json", "eval-pgd2-n8.json"]
    assert [reports[n]["num_samples"] for n in sorted(reports)] == [4, 4, 8]
    assert reports["eval-pgd1-eps0.05-n4.json"]["attack"]["eps"] == 0.05


def test_eval_out_never_replaces_another_evaluation(cli, quick_ckpt: Path, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "supernet.pt", tmp_path / "eval.json"
    shutil.copy(quick_ckpt, ckpt)
    assert cli("eval", str(ckpt), "--out", str(out), "--limit", "8", "--pgd-steps", "2").returncode == 0
    before = out.read_text()
    result = cli("eval", str(ckpt), "--out", str(out), "--limit", "4", "--pgd-steps", "2")
    one_error_line(result, f"{out} holds another evaluation (pgd-2, eps 0.1, 8 images; this one is pgd-2, eps 0.1, "
                   "4 images)", "--force", f"saved as {tmp_path / 'eval-pgd2-n4.json'}")
    assert out.read_text() == before
    assert json.loads((tmp_path / "eval-pgd2-n4.json").read_text())["num_samples"] == 4
    # The same evaluation again may replace its file; --force replaces another one.
    assert cli("eval", str(ckpt), "--out", str(out), "--limit", "8", "--pgd-steps", "2").returncode == 0
    result = cli("eval", str(ckpt), "--out", str(out), "--limit", "4", "--pgd-steps", "2", "--force")
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["num_samples"] == 4


def test_eval_refuses_to_write_over_a_file_that_is_not_an_evaluation(cli, quick_ckpt: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    result = cli("eval", str(quick_ckpt), "--out", str(notes), "--limit", "4", "--pgd-steps", "1")
    assert result.returncode == 2 and "not an evaluation written by `oatdeploy eval`" in result.stderr
    assert notes.read_text() == '{"mine": true}'


def test_export_chooses_among_evaluations_explicitly(cli, quick_ckpt: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    ckpt = str(shutil.copy(quick_ckpt, run / "supernet.pt"))
    assert cli("eval", ckpt, "--out", str(run / "eval.json"), "--limit", "8", "--pgd-steps", "2").returncode == 0
    result = cli("export", ckpt, "--out", str(tmp_path / "one"), *QUICK_EXPORT)
    assert result.returncode == 0, result.stderr
    assert f"SA/RA from {run / 'eval.json'}" in result.stdout  # the only evaluation is taken

    assert cli("eval", ckpt, "--limit", "4", "--pgd-steps", "1").returncode == 0
    result = cli("export", ckpt, "--out", str(tmp_path / "two"), *QUICK_EXPORT)
    one_error_line(result, "2 evaluations of", "eval.json (pgd-2, eps 0.1, 8 images)",
                   "eval-pgd1-n4.json (pgd-1, eps 0.1, 4 images)", "--eval-json")
    assert not (tmp_path / "two").exists()

    chosen = run / "eval-pgd1-n4.json"
    result = cli("export", ckpt, "--out", str(tmp_path / "two"), "--eval-json", str(chosen), *QUICK_EXPORT)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["metrics_source"]["origin"] == str(chosen) and manifest["metrics_source"]["num_samples"] == 4


def test_one_helper_serves_commands_that_cannot_resume(tmp_path: Path) -> None:
    """`import-reference` writes a run it cannot continue: only --force is offered."""
    from oatdeploy.overwrite import check_run_folder
    from oatdeploy.runtime.errors import OatError

    check_run_folder(tmp_path, resumable=False)  # nothing there yet
    (tmp_path / "supernet.pt").write_bytes(b"a finished run")
    with pytest.raises(OatError, match=r"pass --force to replace it, or choose another --out") as info:
        check_run_folder(tmp_path, resumable=False)
    assert "--resume" not in str(info.value)
    check_run_folder(tmp_path, force=True, resumable=False)


def test_evaluation_names_say_what_they_hold() -> None:
    from oatdeploy.eval_files import evaluation_name
    from oatdeploy.runtime.manifest import describe_evaluation

    pgd = {"attack": {"name": "pgd", "eps": 0.1, "steps": 20}, "num_samples": 1000}
    auto = {"attack": {"name": "autoattack", "eps": 8 / 255, "version": "standard"}, "num_samples": 500}
    assert evaluation_name(pgd) == "eval-pgd20-n1000.json"
    assert evaluation_name(pgd, with_eps=True) == "eval-pgd20-eps0.1-n1000.json"
    assert evaluation_name(auto) == "eval-autoattack-standard-n500.json"
    assert describe_evaluation(pgd) == "pgd-20, eps 0.1, 1000 images"
    assert describe_evaluation(auto) == "autoattack-standard, eps 0.03137, 500 images"
    val = {**auto, "split": "val"}  # the reference code's validation split
    assert evaluation_name(val) == "eval-autoattack-standard-val-n500.json"
    assert describe_evaluation(val) == "autoattack-standard, eps 0.03137, 500 images of the val split"
