"""The suspend-resume program's implementations (schedule/dp.py) return the same plans, bit for bit: the
compiled and numpy forms by work progress against the original slot-by-slot reference, on random
instances full of ties (few distinct intensities, equal slot energies), with resume limits, checkpoints,
blocked slots and free startups, several windows at once."""

from __future__ import annotations

import numpy as np
import pytest

from wattwise.schedule import solvers


def instance(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    L = int(rng.integers(1, 8))
    ns = int(rng.integers(0, 4))
    T = ns + L + int(rng.integers(0, 14))
    B = int(rng.integers(1, 4))
    c = rng.integers(1, 6, (B, T)).astype(float) * 50
    if seed % 7 == 0:
        c[:] = 100.0
    ok = (rng.random(L) < 0.5) if seed % 2 else None
    if ok is not None:
        ok[0] = True
    return {
        "c": c,
        "startup_j": rng.integers(0, 3, ns).astype(float) * 60,
        "work_j": rng.integers(0, 3, L).astype(float) * 60,
        "stop_ok": ok,
        "max_resumes": [None, 0, 1, 2][seed % 4],
        "blocked": (rng.random((B, T)) < 0.15) if seed % 3 == 0 else None,
        "startup_cost": seed % 5 != 0,
    }


@pytest.mark.parametrize("algorithm", ["progress", "progress-numpy"])
def test_same_plans_as_the_reference(algorithm: str) -> None:
    compared = 0
    for seed in range(600):
        inst = instance(seed)
        reference = solvers.suspend_resume_many(**inst, algorithm="slots")
        plans = solvers.suspend_resume_many(**inst, algorithm=algorithm)
        for ref, plan in zip(reference, plans, strict=True):
            assert (ref is None) == (plan is None), seed
            if ref is not None and plan is not None:
                assert plan.blocks == ref.blocks, (seed, inst)
                assert plan.cost_g == ref.cost_g, (seed, inst)  # exactly: same sums in the same order
                compared += 1
    assert compared > 1000


def test_real_trace_windows_identical() -> None:
    """Hourly intensities at 60 s slots (ties everywhere), a 2 h job of alternating phases with a 10 min
    startup, 30 windows of 10 h."""
    rng = np.random.default_rng(3)
    hourly = rng.uniform(100, 500, 400).round()
    c_all = np.repeat(hourly, 60)
    T = 600 + 120 + 10
    C = np.stack([c_all[d * 60:d * 60 + T] for d in range(30)])
    work = np.tile(np.r_[np.full(30, 200 * 60.0), np.full(30, 100 * 60.0)], 2)
    startup = np.full(10, 100 * 60.0)
    for max_resumes in (None, 2):
        ref = solvers.suspend_resume_many(C, startup, work, max_resumes=max_resumes, algorithm="slots")
        new = solvers.suspend_resume_many(C, startup, work, max_resumes=max_resumes, algorithm="progress")
        assert [(p.blocks, p.cost_g) for p in new if p] == [(p.blocks, p.cost_g) for p in ref if p]


def test_environment_chooses_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTWISE_DP", "nonsense")
    with pytest.raises(ValueError, match="unknown suspend-resume algorithm"):
        solvers.suspend_resume(np.ones(4), np.zeros(0), np.ones(2))


def test_shorter_deadlines_answered_from_the_longest_window() -> None:
    """solvers.sharing_deadlines: the windows of the same arrivals with earlier deadlines, read from the
    first program's tables, give the reference's plans."""
    compared = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        inst = instance(seed)
        inst.pop("blocked")
        c = inst.pop("c")
        ns, L = inst["startup_j"].size, inst["work_j"].size
        lengths = sorted({c.shape[1], *rng.integers(ns + L, c.shape[1] + 1, 3).tolist()}, reverse=True)
        with solvers.sharing_deadlines():
            shared = [solvers.suspend_resume_many(c[:, :T], **inst) for T in lengths]
        for T, plans in zip(lengths, shared, strict=True):
            reference = solvers.suspend_resume_many(c[:, :T], **inst, algorithm="slots")
            for ref, plan in zip(reference, plans, strict=True):
                assert (ref is None) == (plan is None)
                if ref is not None and plan is not None:
                    assert (plan.blocks, plan.cost_g) == (ref.blocks, ref.cost_g), (seed, T)
                    compared += 1
    assert compared > 500
