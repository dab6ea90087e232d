"""One vocabulary across the command line: every command and option walked, each with help, one spelling per
concept (batch, format, objective), choices taken from their one definition, old spellings kept with a warning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from oatdeploy.cli import COMMANDS, ORDER, cli
from oatdeploy.commands import WORKSTATION
from oatdeploy.runtime.commands import DEVICE
from oatdeploy.runtime.commands.options import FORMATS, Command, parse_shape
from tests.runtime.deploykit import make_deployment


def definitions() -> list[tuple[str, ...]]:
    """Every choice the command line may offer, from where it is defined."""
    from oatdeploy import config, data, reference
    from oatdeploy.eval_files import ATTACKS
    from oatdeploy.models import list_models
    from oatdeploy.runtime import selection
    from oatdeploy.runtime.backends import BACKENDS
    from oatdeploy.runtime.commands.info import REPORTS
    from oatdeploy.runtime.deployment import POWER_POLICIES
    from oatdeploy.runtime.manifest import MODES, PRECISIONS, REDUCED

    return [tuple(d) for d in (PRECISIONS, REDUCED, MODES, BACKENDS, selection.OBJECTIVES, POWER_POLICIES,
                               config.ENCODINGS, config.FILM_KINDS, config.OBJECTIVES, config.WIDTH_RULES, ATTACKS,
                               FORMATS, REPORTS, list_models(), data.DATASETS, reference.ARCHS, reference.DATASETS)]


def commands(group: click.Group = cli, prefix: str = "oatdeploy") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def options(command: click.Command) -> Iterator[click.Option]:
    for p in command.params:
        if isinstance(p, click.Option) and not p.hidden and "--help" not in p.opts:
            yield p


ALL = list(commands())
LONG_RUNNING = {"oatdeploy train", "oatdeploy eval", "oatdeploy export", "oatdeploy profile", "oatdeploy quantize",
                "oatdeploy verify", "oatdeploy build-engines", "oatdeploy bench latency"}
PRINTS_DATA = {"oatdeploy eval", "oatdeploy profile", "oatdeploy select", "oatdeploy info", "oatdeploy predict",
               "oatdeploy verify", "oatdeploy bench latency", "oatdeploy bench train-step"}


def test_top_level_help_lists_every_command_in_workflow_order() -> None:
    assert set(ORDER) == set(WORKSTATION) | set(DEVICE) and len(ORDER) == len(set(ORDER))
    assert list(COMMANDS) == list(ORDER)
    assert ORDER[1:7] == ("train", "eval", "export", "profile", "select", "predict")
    text = cli.get_help(click.Context(cli, info_name="oatdeploy"))
    listed = [line.split()[0] for line in text.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == list(ORDER)


def test_every_option_has_help_and_its_choices_come_from_their_definition() -> None:
    known = definitions()
    missing, foreign = [], []
    for where, command in ALL:
        for opt in options(command):
            if not (opt.help or "").strip():
                missing.append(f"{where} {opt.opts[0]}")
            if isinstance(opt.type, click.Choice) and tuple(opt.type.choices) not in known:
                foreign.append(f"{where} {opt.opts[0]}: {tuple(opt.type.choices)}")
    assert not missing, f"options without help: {missing}"
    assert not foreign, f"choices not taken from their one definition: {foreign}"
    assert len(ALL) >= 15  # every command and bench's two


def test_one_spelling_per_concept() -> None:
    """batch: --batch-size (build-engines: shapes); format: --format; objective: the budget's, clean|robust."""
    from oatdeploy.runtime.selection import OBJECTIVES

    second = []
    for where, command in ALL:
        for opt in options(command):
            for name in opt.opts + opt.secondary_opts:
                if "batch" in name and name != "--batch-size":
                    second.append(f"{where} {name}")
                if ("json" in name and name != "--eval-json") or ("format" in name and name != "--format"):
                    second.append(f"{where} {name}")
                if name == "--format" and not set(FORMATS) <= set(opt.type.choices):  # type: ignore[attr-defined]
                    second.append(f"{where} --format without {FORMATS}")
                if name == "--objective" and tuple(opt.type.choices) != OBJECTIVES:  # type: ignore[attr-defined]
                    second.append(f"{where} --objective means something else here")
    assert not second, second
    names = {where: {n for o in options(c) for n in o.opts} for where, c in ALL}
    assert [w for w in LONG_RUNNING if "--quiet" not in names[w]] == []
    assert [w for w in PRINTS_DATA if "--format" not in names[w]] == []
    for where, command in ALL:  # an old spelling points at a name the command has
        for old, new in getattr(command, "renamed", {}).items():
            assert isinstance(command, Command) and new.split()[0] in names[where], (where, old, new)
            assert old not in names[where]


def test_shapes_are_written_as_trtexec_writes_them_or_with_commas() -> None:
    assert parse_shape("3x32x32") == parse_shape("3,32,32") == parse_shape("3X32X32") == [3, 32, 32]
    for bad in ("3x32x", "3;32;32", ""):
        with pytest.raises(ValueError, match="a shape like 3x32x32"):
            parse_shape(bad)
    with pytest.raises(ValueError, match="positive"):
        parse_shape("0x32x32")


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_deployment(tmp_path_factory.mktemp("vocab") / "d")


def test_old_spellings_still_work_with_a_warning(cli, deploy: Path) -> None:
    new = cli("select", str(deploy), "--format", "json", "--batch-size", "1")
    old = cli("select", str(deploy), "--json", "--batch", "1")
    assert new.returncode == old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["id"] == json.loads(new.stdout)["id"] and new.stderr == ""
    assert "warning: --json is deprecated and will be removed in a later release; use --format json" in old.stderr
    assert "warning: --batch is deprecated" in old.stderr and "use --batch-size" in old.stderr
    table = cli("info", str(deploy), "--format", "table", "--no-verify")
    assert table.returncode == 0 and "use --format text" in table.stderr
    assert table.stdout == cli("info", str(deploy), "--no-verify").stdout
    loss = cli("train", "--objective", "bogus", "--out", "unused")
    assert loss.returncode == 2 and "use --loss" in loss.stderr and "'--loss'" in loss.stderr
    assert json.loads(cli("select", str(deploy), "--format", "json").stdout)["lambda"] == 0.0  # not "lam"


def test_build_engines_takes_shapes_that_must_match_the_model(cli, deploy: Path) -> None:
    from oatdeploy.runtime.commands.build_engines import profile_batches

    assert profile_batches((None, [8, 1, 8, 8], [16, 1, 8, 8]), [1, 8, 8]) == [1, 8, 16]
    wrong = cli("build-engines", str(deploy), "--max-shape", "32x3x32x32")
    assert wrong.returncode == 2
    assert "--max-shape 32x3x32x32 does not match the deployment's input 1x8x8; write it as Nx1x8x8" in wrong.stderr


def test_bench_train_step_names_the_machine(cli) -> None:
    done = cli("bench", "train-step", "--arch", "resnet20", "--input-shape", "1x8x8", "--batch-size", "2",
               "--pgd-steps", "1", "--steps", "1", "--warmup", "0", "--device", "cpu", "--format", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["machine"] and result["input_shape"] == [1, 8, 8]


def test_a_mistyped_command_gets_a_suggestion(cli) -> None:
    for args, hint in ((["selct"], "did you mean select?"), (["bench", "latncy"], "did you mean latency?"),
                       (["xyz"], "the commands are demo, train, eval, export")):
        done = cli(*args)
        assert done.returncode == 2 and hint in done.stderr, done.stderr
