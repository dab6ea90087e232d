"""Budget selection against brute force, the Pareto front, and what an infeasible budget says. Pure Python."""

from __future__ import annotations

import itertools
import random

import pytest

from oatdeploy.runtime import NoFeasibleVariant, Variant, pareto_front, select


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
                select(variants, lat, ra, sa, objective)
            named = [name for name in meets if f"{name} bind" in str(info.value) or f"and {name}" in str(info.value)]
            assert named, str(info.value)
            if "even alone" in str(info.value):
                assert not meets[named[0]]
            continue
        best = max((v.clean_acc if objective == "clean" else v.robust_acc) for v in ok)
        fastest = min(v.latency_ms for v in ok if (v.clean_acc if objective == "clean" else v.robust_acc) == best)
        chosen = select(variants, lat, ra, sa, objective)
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
