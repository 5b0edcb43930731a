"""The exact solvers: the suspend-resume dynamic program against a MILP of the same model, and the others
against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wattwise.schedule import solvers
from wattwise.schedule.milp import suspend_resume_milp
from wattwise.schedule.solvers import Infeasible, plan_cost


def check_schedule(blocks: list[tuple[int, int, int]], T: int, ns: int, L: int, *, stop_ok=None,
                   blocked=None, max_resumes=None) -> None:
    """The schedule is feasible in the model: work in order and complete, a full startup before every run,
    no overlap, inside the window, only free slots, stops only where allowed, the resume limit kept."""
    k = 0
    free_from = 0
    for start, k0, k1 in blocks:
        assert k0 == k, blocks
        assert k1 > k0, blocks
        assert start >= free_from, blocks
        end = start + ns + (k1 - k0)
        assert end <= T, blocks
        if blocked is not None:
            assert not np.asarray(blocked)[start:end].any(), blocks
        if stop_ok is not None and k1 < L:
            assert stop_ok[k1], blocks
        free_from = end
        k = k1
    assert k == L
    if max_resumes is not None:
        assert len(blocks) <= max_resumes + 1


def random_instance(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    L = int(rng.integers(1, 6))
    ns = int(rng.integers(0, 4))
    T = ns + L + int(rng.integers(0, 10))
    instance = {
        "c": rng.integers(50, 500, T).astype(float),
        "startup_j": rng.integers(0, 300, ns).astype(float) * 60,
        "work_j": rng.integers(0, 300, L).astype(float) * 60,
        "stop_ok": (rng.random(L) < 0.4) if seed % 2 else None,
        "max_resumes": [None, 0, 1, 2][seed % 4],
        "blocked": (rng.random(T) < 0.15) if seed % 3 == 0 else None,
        "startup_cost": seed % 5 != 0,
    }
    if instance["stop_ok"] is not None:
        instance["stop_ok"][0] = True
    return instance


@pytest.mark.parametrize("seed", range(48))
def test_dp_matches_milp(seed: int) -> None:
    inst = random_instance(seed)
    c, s_j, w_j = inst["c"], inst["startup_j"], inst["work_j"]
    kwargs = {k: inst[k] for k in ("stop_ok", "max_resumes", "blocked", "startup_cost")}
    try:
        milp = suspend_resume_milp(c, s_j, w_j, **kwargs)
    except Infeasible:
        with pytest.raises(Infeasible):
            solvers.suspend_resume(c, s_j, w_j, **kwargs)
        return
    dp = solvers.suspend_resume(c, s_j, w_j, **kwargs)
    assert dp.cost_g == pytest.approx(milp.cost_g, rel=1e-6, abs=1e-9)
    check_schedule(dp.blocks, c.size, s_j.size, w_j.size, stop_ok=inst["stop_ok"], blocked=inst["blocked"],
                   max_resumes=inst["max_resumes"])
    check_schedule(milp.blocks, c.size, s_j.size, w_j.size, stop_ok=inst["stop_ok"], blocked=inst["blocked"],
                   max_resumes=inst["max_resumes"])
    counted = plan_cost(c, s_j if inst["startup_cost"] else np.zeros_like(s_j), w_j, dp.blocks)
    assert counted == pytest.approx(dp.cost_g, rel=1e-9, abs=1e-9)


def test_dp_matches_milp_with_resumes_that_pay() -> None:
    """A valley in the middle: with a cheap startup the optimum suspends; with an expensive one it does not;
    with a limit of 0 resumes it runs uninterrupted."""
    c = np.array([100, 100, 900, 900, 900, 100, 100, 100], dtype=float)
    w = np.full(4, 60.0)
    cheap = solvers.suspend_resume(c, np.full(1, 1.0), w)
    assert len(cheap.blocks) == 2
    assert cheap.cost_g == pytest.approx(suspend_resume_milp(c, np.full(1, 1.0), w).cost_g)
    dear = solvers.suspend_resume(c, np.full(1, 10_000.0), w)
    assert len(dear.blocks) == 1
    assert dear.cost_g == pytest.approx(suspend_resume_milp(c, np.full(1, 10_000.0), w).cost_g)
    limited = solvers.suspend_resume(c, np.full(1, 1.0), w, max_resumes=0)
    assert len(limited.blocks) == 1
    assert limited.cost_g >= cheap.cost_g


def test_batched_dp_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(7)
    C = rng.integers(50, 500, (5, 40)).astype(float)
    s_j = np.full(3, 6000.0)
    w_j = np.tile([12000.0, 6000.0], 6)
    blocked = rng.random((5, 40)) < 0.1
    for max_resumes in (None, 1):
        many = solvers.suspend_resume_many(C, s_j, w_j, max_resumes=max_resumes, blocked=blocked)
        for b in range(5):
            one = solvers.suspend_resume(C[b], s_j, w_j, max_resumes=max_resumes, blocked=blocked[b])
            assert many[b] is not None
            assert many[b].blocks == one.blocks
            assert many[b].cost_g == one.cost_g


def test_dp_infeasible_window() -> None:
    with pytest.raises(Infeasible):
        solvers.suspend_resume(np.ones(3), np.ones(2), np.ones(2))
    with pytest.raises(Infeasible):
        solvers.suspend_resume(np.ones(4), np.ones(2), np.ones(2), blocked=np.array([0, 0, 1, 0], bool))


@pytest.mark.parametrize("seed", range(30))
def test_cheapest_slots_last_is_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 25))
    n = int(rng.integers(1, T + 1))
    c = rng.integers(100, 110, T).astype(float)  # many ties
    blocked = rng.random(T) < 0.2
    weight, last = 60.0, float(rng.choice([60.0, 30.0, 0.0]))
    work = np.full(n, weight)
    work[-1] = last
    try:
        dp = solvers.suspend_resume(c, np.zeros(0), work, blocked=blocked)
    except Infeasible:
        with pytest.raises(Infeasible):
            solvers.cheapest_slots_last(np.where(blocked, np.inf, c), n, weight, last)
        return
    blocks = solvers.cheapest_slots_last(np.where(blocked, np.inf, c), n, weight, last)
    check_schedule(blocks, T, 0, n, blocked=blocked)
    assert plan_cost(c, np.zeros(0), work, blocks) == pytest.approx(dp.cost_g, rel=1e-12)


@pytest.mark.parametrize("profile", [[60.0] * 7, [0.0, 60.0, 60.0, 30.0], list(np.arange(80.0))])
def test_start_costs_brute_force(profile: list[float]) -> None:
    rng = np.random.default_rng(3)
    c = rng.random(200) * 500
    run = np.asarray(profile)
    blocked = rng.random(200) < 0.02
    costs = solvers.start_costs(c, run, blocked)
    for s in range(200 - run.size + 1):
        if blocked[s:s + run.size].any():
            assert costs[s] == np.inf
        else:
            assert costs[s] == pytest.approx(float(np.dot(run, c[s:s + run.size])), rel=1e-9)


def test_carbon_time_saving_per_delay() -> None:
    c = np.array([10, 10, 10, 1, 10, 10, 0, 10], dtype=float)
    # start at 3 saves 9 over 3 slots (3/slot), at 6 saves 10 over 6 slots (1.67/slot)
    assert solvers.carbon_time_start(c, np.ones(1)) == 3
    assert solvers.best_start(c, np.ones(1))[0] == 6
    assert solvers.carbon_time_start(np.full(5, 7.0), np.ones(2)) == 0


def test_threshold_plan_runs_below_and_meets_deadline() -> None:
    c = np.array([9, 9, 1, 1, 9, 9, 1, 9, 9, 9, 9, 9], dtype=float)
    blocks = solvers.threshold_plan(c, n_startup=0, n_work=3, threshold=1.0)
    assert blocks == [(2, 0, 2), (6, 2, 3)]
    # with a 1-slot startup and little slack it is forced to start at the latest moment
    forced = solvers.threshold_plan(np.full(6, 9.0), n_startup=1, n_work=3, threshold=1.0)
    assert forced == [(2, 0, 3)]
    rng = np.random.default_rng(0)
    for _ in range(50):
        T = int(rng.integers(6, 30))
        ns, L = int(rng.integers(0, 3)), int(rng.integers(1, 5))
        if ns + L > T:
            continue
        cc = rng.random(T)
        plan = solvers.threshold_plan(cc, ns, L, float(np.percentile(cc, 30)))
        check_schedule(plan, T, ns, L)


def brute_force_uninterrupted(c: np.ndarray, run: np.ndarray) -> float:
    return min(float(np.dot(run, c[s:s + run.size])) for s in range(c.size - run.size + 1)) / 3.6e6


def test_suspend_resume_never_worse_than_best_uninterrupted_run() -> None:
    rng = np.random.default_rng(11)
    for s_len, w_len, T in itertools.product((0, 2), (1, 4), (8, 15)):
        c = rng.random(T) * 400
        s_j, w_j = rng.random(s_len) * 6000, rng.random(w_len) * 6000
        sr = solvers.suspend_resume(c, s_j, w_j)
        assert sr.cost_g <= brute_force_uninterrupted(c, np.concatenate((s_j, w_j))) * (1 + 1e-12)
