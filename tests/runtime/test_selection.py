"""Budget selection against brute force, the tie rule (accuracy intervals, latency spread), the Pareto front, and
what an infeasible budget says."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from oatdeploy.runtime import NoFeasibleVariant, Variant, pareto_front, select
from oatdeploy.runtime.device import cpu_name
from oatdeploy.runtime.folder import read_manifest
from oatdeploy.runtime.selection import choose
from tests.runtime.deploykit import edit_manifest, oatdeploy, set_profile


def random_variants(rng: random.Random, n: int) -> list[Variant]:
    return [Variant(id=f"v{i}", lam=0.0, width=1.0, clean_acc=round(rng.uniform(0.5, 1), 2),
                    robust_acc=round(rng.uniform(0, 0.8), 2), latency_ms=round(rng.uniform(0.5, 5), 1),
                    path=f"v{i}.onnx") for i in range(n)]


def test_selection_equals_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        variants = random_variants(rng, rng.randint(1, 12))
        lat, ra = rng.choice([None, rng.uniform(0.5, 5)]), rng.choice([None, rng.uniform(0, 0.8)])
        sa, objective = rng.choice([None, rng.uniform(0.5, 1)]), rng.choice(["clean", "robust"])
        meets = {"latency": {v.id for v in variants if lat is None or v.latency_ms <= lat},
                 "robust accuracy": {v.id for v in variants if ra is None or v.robust_acc >= ra},
                 "clean accuracy": {v.id for v in variants if sa is None or v.clean_acc >= sa}}
        ok = [v for v in variants if all(v.id in m for m in meets.values())]
        if not ok:
            with pytest.raises(NoFeasibleVariant) as info:
                select(variants, max_latency_ms=lat, min_robust_acc=ra, min_clean_acc=sa, objective=objective)
            named = [name for name in meets if f"{name} bind" in str(info.value) or f"and {name}" in str(info.value)]
            assert named, str(info.value)
            if "even alone" in str(info.value):
                assert not meets[named[0]]
            continue
        best = max((v.clean_acc if objective == "clean" else v.robust_acc) for v in ok)
        fastest = min(v.latency_ms for v in ok if (v.clean_acc if objective == "clean" else v.robust_acc) == best)
        chosen = select(variants, max_latency_ms=lat, min_robust_acc=ra, min_clean_acc=sa, objective=objective)
        assert (chosen.clean_acc if objective == "clean" else chosen.robust_acc) == best
        assert chosen.latency_ms == fastest


def test_pareto_front_is_the_non_dominated_set() -> None:
    rng = random.Random(1)
    for _ in range(100):
        variants = random_variants(rng, 10)
        front = {v.id for v in pareto_front(variants)}
        for a, b in itertools.permutations(variants, 2):
            if (a.clean_acc >= b.clean_acc and a.robust_acc >= b.robust_acc and a.latency_ms <= b.latency_ms
                    and (a.clean_acc, a.robust_acc, a.latency_ms) != (b.clean_acc, b.robust_acc, b.latency_ms)):
                assert b.id not in front


def test_infeasible_names_the_binding_constraint_and_the_closest() -> None:
    variants = [Variant("fast", 0, 0.5, 0.9, 0.2, 1.0, "a"), Variant("robust", 1, 1, 0.8, 0.7, 4.0, "b")]
    with pytest.raises(NoFeasibleVariant, match=r"latency binds; the closest is robust"):
        select(variants, max_latency_ms=3.5, min_robust_acc=0.6)
    with pytest.raises(NoFeasibleVariant, match=r"robust accuracy binds, no variant reaches it even alone; "
                                                 r"the closest is robust .*relax min_robust_acc"):
        select(variants, min_robust_acc=0.75, max_latency_ms=10.0)
    with pytest.raises(NoFeasibleVariant, match=r"latency binds, .*closest is fast \(SA 0.900, RA 0.200, p50 1.000"):
        select(variants, max_latency_ms=0.5)
    assert select(variants, max_latency_ms=2.0).id == "fast"
    assert select(variants, objective="robust").id == "robust"


def v(vid: str, sa: float, ra: float, p50: float, sa_ci: tuple | None = None, ra_ci: tuple | None = None,
      spread: tuple | None = None) -> Variant:
    return Variant(vid, 0.0, 1.0, sa, ra, p50, f"{vid}.onnx", clean_ci95=sa_ci, robust_ci95=ra_ci,
                   latency_spread_ms=spread)


def test_accuracies_within_their_intervals_are_tied_and_the_faster_wins_unless_strict() -> None:
    best = v("best", 0.780, 0.60, 2.0, (0.754, 0.804), (0.57, 0.63))
    near = v("near", 0.770, 0.61, 1.0, (0.743, 0.795), (0.58, 0.64))
    far = v("far", 0.700, 0.70, 0.5, (0.671, 0.727), (0.67, 0.73))
    assert select([best, near, far]).id == "near"  # SA 0.77 vs 0.78 on 1,000 images is noise
    assert select([best, near, far], strict=True).id == "best"
    choice = choose([best, near, far])
    assert choice.best.id == "best" and [u.id for u in choice.accuracy_tied] == ["best", "near"]
    assert any("the SA 95 % intervals of near overlap that of the best, best," in r and "--strict" in r
               for r in choice.reasons())
    assert any("strict: the highest SA point estimate wins" in r for r in choose([best, near], strict=True).reasons())
    assert select([best, near, far], objective="robust").id == "far"  # RA intervals do not overlap


def test_without_intervals_point_estimates_decide_as_before() -> None:
    best, near = v("best", 0.780, 0.60, 2.0), v("near", 0.770, 0.61, 1.0)
    assert select([best, near]).id == "best"
    assert any("records no 95 % intervals" in r for r in choose([best, near]).reasons())
    mixed = v("near", 0.770, 0.61, 1.0, (0.743, 0.795))  # one side without an interval: no tie either
    assert select([best, mixed]).id == "best"


def test_latencies_within_their_profiling_spread_are_tied_and_the_more_robust_wins() -> None:
    quick = v("quick", 0.78, 0.55, 1.00, spread=(0.95, 1.20))
    steady = v("steady", 0.78, 0.65, 1.10, spread=(1.05, 1.30))
    slow = v("slow", 0.78, 0.75, 2.00, spread=(1.90, 2.10))
    assert select([quick, steady, slow]).id == "steady"
    assert select([quick, steady, slow], strict=True).id == "quick"
    assert any("p50 of steady is within the spread between profiling rounds of the fastest, quick" in r
               for r in choose([quick, steady, slow]).reasons())
    assert select([v("a", 0.78, 0.55, 1.0), v("b", 0.78, 0.65, 1.1)]).id == "a"  # no spread recorded: as before


def test_budget_limits_apply_to_point_estimates_not_intervals() -> None:
    almost = v("almost", 0.80, 0.59, 1.0, (0.77, 0.83), (0.56, 0.62), (0.9, 1.2))
    enough = v("enough", 0.70, 0.61, 3.0, (0.67, 0.73), (0.58, 0.64), (2.9, 3.1))
    assert select([almost, enough], min_robust_acc=0.6).id == "enough"  # 0.59 misses 0.6 though its interval holds it
    assert select([almost, enough], max_latency_ms=1.1).id == "almost"
    with pytest.raises(NoFeasibleVariant, match="latency binds"):
        select([almost, enough], max_latency_ms=0.95)  # inside almost's spread, below its p50
    assert any("on point estimates" in r for r in choose([almost, enough], min_robust_acc=0.6).reasons())


def test_the_tie_rule_against_its_definition() -> None:
    rng = random.Random(3)
    for _ in range(1000):
        variants = []
        for i in range(rng.randint(1, 8)):
            sa, ra, p50 = round(rng.uniform(0.6, 0.9), 3), round(rng.uniform(0.2, 0.7), 3), round(rng.uniform(1, 3), 2)
            h, s = rng.uniform(0, 0.04), rng.uniform(0, 0.4)
            variants.append(v(f"v{i}", sa, ra, p50, (sa - h, sa + h), (ra - h, ra + h), (p50 - s, p50 + s)))
        objective, strict = rng.choice(["clean", "robust"]), rng.random() < 0.3
        c = choose(variants, objective=objective, strict=strict)

        def acc(u: Variant, objective: str = objective) -> float:
            return u.clean_acc if objective == "clean" else u.robust_acc

        def ci(u: Variant, objective: str = objective) -> tuple:
            return u.clean_ci95 if objective == "clean" else u.robust_ci95

        top = max(acc(u) for u in variants)
        assert acc(c.best) == top
        if strict:
            assert acc(c.variant) == top and c.variant.latency_ms == min(u.latency_ms for u in variants
                                                                         if acc(u) == top)
            continue
        assert ci(c.variant)[0] <= ci(c.best)[1] and ci(c.best)[0] <= ci(c.variant)[1]  # tied with the best
        tied = [u for u in variants if ci(u)[0] <= ci(c.best)[1] and ci(c.best)[0] <= ci(u)[1]]
        fastest = min(tied, key=lambda u: u.latency_ms)
        lo, hi = c.variant.latency_spread_ms
        assert lo <= fastest.latency_spread_ms[1] and fastest.latency_spread_ms[0] <= hi  # as fast, within noise
        assert all(u.robust_acc <= c.variant.robust_acc for u in c.latency_tied)


def with_intervals_and_a_profile(folded: Path) -> None:
    """Wilson intervals on the deployment's 32 images, and p50s that rise 0.1 ms per variant (no spread)."""
    from oatdeploy.runtime.stats import wilson_interval

    def intervals(m: dict) -> None:
        for u in m["variants"]:
            met = u["metrics"]
            for kind in ("clean", "robust"):
                lo, hi = wilson_interval(round(met[f"{kind}_acc"] * 32), 32)
                met[f"{kind}_ci95"] = [min(lo, met[f"{kind}_acc"]), max(hi, met[f"{kind}_acc"])]

    edit_manifest(folded, intervals)
    set_profile(folded, f"{cpu_name()}|ort|fp32|b1", {u.id: 1.0 + 0.1 * i for i, u in
                                                      enumerate(read_manifest(folded).variants)})


def test_cli_select_says_how_it_compared(folded: Path) -> None:
    with_intervals_and_a_profile(folded)
    done = oatdeploy("select", str(folded), "--max-latency-ms", "10")
    assert done.returncode == 0, done.stderr
    assert "count as tied and the faster wins (--strict compares point estimates)" in done.stdout
    assert "p50 <= 10, on point estimates" in done.stdout and "SA/RA: fp32 (pgd-2 on 32 images)" in done.stdout
    assert done.stdout.startswith("lam0-w0.5 (SA 0.900 [")  # the fastest of those tied with lam0-w1 (SA 0.94)
    strict = oatdeploy("select", str(folded), "--max-latency-ms", "10", "--strict", "--json")
    assert json.loads(strict.stdout)["id"] == "lam0-w1" and json.loads(strict.stdout)["strict"] is True


def test_the_switcher_ties_the_same_way_unless_strict(folded: Path) -> None:
    from oatdeploy.runtime import Deployment

    with_intervals_and_a_profile(folded)
    dep = Deployment.load(folded)
    assert dep.switcher(max_latency_ms=10).current.id == "lam0-w0.5"
    sw = dep.switcher(max_latency_ms=10, strict=True)
    assert sw.current.id == "lam0-w1" and sw.budget.strict is True
    assert sw.set_budget(strict=False).id == "lam0-w0.5"


def test_cli_profile_and_select(folded: Path, tmp_path: Path) -> None:
    result = oatdeploy("profile", str(folded), "--runs", "5", "--quiet")
    assert result.returncode == 0 and "p50 ms" in result.stdout, result.stderr
    result = oatdeploy("select", str(folded), "--max-latency-ms", "1000", "--min-robust-acc", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"].startswith("lam")
    result = oatdeploy("select", str(folded), "--max-latency-ms", "0.000001")
    assert result.returncode == 2 and "latency binds" in result.stderr and "Traceback" not in result.stderr
    result = oatdeploy("select", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no manifest.json" in result.stderr
    result = oatdeploy("profile", str(folded), "--backend", "trt")
    assert result.returncode == 2 and "TensorRT" in result.stderr and "Traceback" not in result.stderr
    result = oatdeploy("bench", "latency", str(folded), "--runs", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["variants"]) == 6 and all(r["p50_ms"] > 0 for r in report["variants"])
    (folded / "manifest.json").write_text("{not json")
    result = oatdeploy("select", str(folded), "--min-robust-acc", "0.1")
    assert result.returncode == 2 and "not valid JSON" in result.stderr and "Traceback" not in result.stderr
