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
from oatdeploy.runtime.selection import choose, tied_latency
from oatdeploy.runtime.stats import intervals_overlap
from tests.runtime.deploykit import edit_manifest, oatdeploy, set_outcomes, set_profile


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


def v(vid: str, sa: float, ra: float, p50: float | None, sa_ci: tuple | None = None, ra_ci: tuple | None = None,
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
    strict = oatdeploy("select", str(folded), "--max-latency-ms", "10", "--strict", "--format", "json")
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
    result = oatdeploy("select", str(folded), "--max-latency-ms", "1000", "--min-robust-acc", "0", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"].startswith("lam")
    result = oatdeploy("select", str(folded), "--max-latency-ms", "0.000001")
    assert result.returncode == 2 and "latency binds" in result.stderr and "Traceback" not in result.stderr
    result = oatdeploy("select", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no manifest.json" in result.stderr
    result = oatdeploy("profile", str(folded), "--backend", "trt")
    assert result.returncode == 2 and "TensorRT" in result.stderr and "Traceback" not in result.stderr
    result = oatdeploy("bench", "latency", str(folded), "--runs", "5", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["variants"]) == 6 and all(r["p50_ms"] > 0 for r in report["variants"])
    (folded / "manifest.json").write_text("{not json")
    result = oatdeploy("select", str(folded), "--min-robust-acc", "0.1")
    assert result.returncode == 2 and "not valid JSON" in result.stderr and "Traceback" not in result.stderr


N = 300  # test images every variant below was scored on


def right_on(*ranges: tuple[int, int]) -> list[bool]:
    """Per image of N, whether a variant got it right: right exactly on the given [start, stop) ranges."""
    return [any(a <= i < b for a, b in ranges) for i in range(N)]


def as_bits(outcomes: list[bool]) -> int:
    return int("".join("1" if o else "0" for o in outcomes), 2)


def scored(vid: str, p50: float | None, clean: list[bool], robust: list[bool] | None = None,
           images: str = "fp32:eval") -> Variant:
    """A variant whose SA/RA, Wilson intervals and per-image outcomes all come from the same N images."""
    from oatdeploy.runtime.selection import PerImage
    from oatdeploy.runtime.stats import wilson_interval

    robust = robust if robust is not None else right_on((0, 120))
    k, r = sum(clean), sum(robust)
    return Variant(vid, 0.0, 1.0, k / N, r / N, p50, f"{vid}.onnx", clean_ci95=wilson_interval(k, N),
                   robust_ci95=wilson_interval(r, N), outcomes=PerImage(images, N, as_bits(clean), as_bits(robust)))


BEST = right_on((0, 225))  # SA 0.750
EIGHT_LOWER = right_on((0, 191), (225, 235))  # SA 0.670: 34 images only BEST gets right, 10 only this one
INDISTINGUISHABLE = right_on((0, 215), (225, 232))  # SA 0.740: 10 only BEST, 7 only this one
MORE_ACCURATE = right_on((0, 240))  # SA 0.800


def three() -> tuple[Variant, Variant, Variant]:
    """slow: the best SA, over a 4 ms budget; best: the best within it; near: faster, 1 point below best."""
    return scored("slow", 5.0, MORE_ACCURATE), scored("best", 3.0, BEST), scored("near", 1.5, INDISTINGUISHABLE)


def test_eight_points_apart_on_300_images_the_better_sa_wins_though_intervals_overlap() -> None:
    slow, best, fast = scored("slow", 5.0, MORE_ACCURATE), scored("best", 3.0, BEST), scored("fast", 1.0, EIGHT_LOWER)
    assert intervals_overlap(best.clean_ci95, fast.clean_ci95)  # the old rule called this a tie: fast won
    choice = choose([slow, best, fast], max_latency_ms=4.0)  # latency binds: slow (SA 0.80) is over it
    assert choice.variant.id == "best"
    assert dict(choice.paired_p)["fast"] < 0.05
    assert any("latency binds (slow is over it), but a paired test on the 300 shared images tells each faster "
               "variant from best" in r for r in choice.reasons())
    assert select([best, fast]).id == "best"  # no budget: the highest SA


def test_indistinguishable_on_the_shared_images_the_faster_serves_when_latency_binds() -> None:
    slow, best, near = three()
    choice = choose([slow, best, near], max_latency_ms=4.0)
    assert choice.variant.id == "near" and choice.best.id == "best"
    line = [r for r in choice.reasons() if r.startswith("tie:")]
    assert len(line) == 1 and "latency binds (slow, SA 0.800, is over it)" in line[0]
    assert "cannot tell near from the best, best (exact McNemar p = 0.63 >= 0.05), so the faster near serves" in line[0]


def test_latency_that_does_not_bind_never_trades_accuracy_for_speed() -> None:
    best, near = scored("best", 3.0, BEST), scored("near", 1.5, INDISTINGUISHABLE)
    choice = choose([best, near], max_latency_ms=4.0)  # both meet it: nothing better is kept out
    assert choice.variant.id == "best"
    assert any("latency does not bind" in r for r in choice.reasons())
    nobudget = choose([best, near])
    assert nobudget.variant.id == "best" and any("no latency limit" in r for r in nobudget.reasons())
    # the case: a robustness limit, a latency limit every variant meets
    assert select([best, near, scored("robust", 0.5, EIGHT_LOWER, right_on((0, 200)))], max_latency_ms=4.0,
                  min_robust_acc=0.35).id == "best"


def test_strict_says_what_it_did_in_one_line() -> None:
    slow, best, near = three()
    choice = choose([slow, best, near], max_latency_ms=4.0, strict=True)
    assert choice.variant.id == "best"
    assert [r for r in choice.reasons() if "strict" in r] == [
        "strict: the highest SA point estimate wins, ties to the lower p50; no paired test, no latency tie-break"]


def test_without_shared_outcomes_the_old_rule_decides_and_says_so() -> None:
    slow, best, near = three()
    old = [Variant(u.id, u.lam, u.width, u.clean_acc, u.robust_acc, u.latency_ms, u.path, clean_ci95=u.clean_ci95,
                   robust_ci95=u.robust_ci95) for u in (slow, best, near)]
    choice = choose(old, max_latency_ms=4.0)
    assert any(r.startswith("no per-image outcomes to pair SAs on") for r in choice.reasons())
    other_images = scored("near", 1.5, INDISTINGUISHABLE, images="int8:verify")  # not the same images: no pairing
    assert any("falling back" in r for r in choose([best, other_images]).reasons())


def test_unprofiled_latencies_are_not_a_latency_tie() -> None:
    a = v("a", 0.80, 0.30, None, (0.75, 0.85), (0.25, 0.35))
    b = v("b", 0.80, 0.50, None, (0.75, 0.85), (0.45, 0.55))
    reasons = choose([a, b]).reasons()
    assert not any("p50" in r for r in reasons), reasons  # "p50 n/a" twice is not "within the spread"
    assert not tied_latency(a, b)


def test_cli_select_pairs_the_variants_on_the_exported_outcomes(folded: Path) -> None:
    """A real deployment (ONNX graphs, manifest, sha256-checked outcomes file), profiled 1.0, 1.1, ... ms."""
    with_intervals_and_a_profile(folded)
    set_outcomes(folded, {"lam0-w0.5": (INDISTINGUISHABLE, right_on((0, 90))),
                          "lam0.4-w0.5": (EIGHT_LOWER, right_on((0, 120))),
                          "lam1-w0.5": (BEST, right_on((0, 150))),
                          "lam0-w1": (MORE_ACCURATE, right_on((0, 100))),
                          "lam0.4-w1": (right_on((0, 210)), right_on((0, 130))),
                          "lam1-w1": (right_on((0, 180)), right_on((0, 160)))})
    done = oatdeploy("select", str(folded), "--max-latency-ms", "1.25")  # lam0-w1 (SA 0.80, 1.3 ms) is over it
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("lam0-w0.5 (SA 0.740"), done.stdout
    assert "cannot tell lam0-w0.5 from the best, lam1-w0.5 (exact McNemar p = 0.63" in done.stdout
    strict = oatdeploy("select", str(folded), "--max-latency-ms", "1.25", "--strict", "--format", "json")
    assert json.loads(strict.stdout)["id"] == "lam1-w0.5"
    loose = json.loads(oatdeploy("select", str(folded), "--max-latency-ms", "10", "--format", "json").stdout)
    assert loose["id"] == "lam0-w1" and loose["lambda"] == 0.0 and "lam" not in loose
    (folded / "outcomes.npz").write_bytes(b"changed")
    damaged = oatdeploy("select", str(folded))
    assert damaged.returncode == 2 and "outcomes.npz does not match its sha256" in damaged.stderr
