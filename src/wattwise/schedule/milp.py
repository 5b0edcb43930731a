"""The suspend & resume problem as a mixed-integer program (PuLP), to cross-check the dynamic program.

Same model as :func:`wattwise.schedule.solvers.suspend_resume`, written independently:

* ``y[t,k] = 1``: work slot ``k`` runs in slot ``t``; ``z[t] = 1``: a (re)start begins in slot ``t`` and
  runs its startup in slots ``t … t+n_startup-1``.
* every work slot runs once; a slot holds at most one work slot or startup slot;
* work slot ``k`` runs at ``t`` only right after work slot ``k-1`` at ``t-1`` or right after a startup
  (``z[t-n_startup]``), and after work slot ``k-1`` (precedence by the time index);
* a startup is followed by work; under checkpoint-only, a job that may not stop after ``k`` slots runs
  work slot ``k`` right after ``k-1``; at most ``max_resumes + 1`` starts; blocked slots stay unused.

Minimise ``Σ y·work_j·c + Σ z·(startup energy · c over its slots)``. Exponential in the worst case: for
small instances (tests) only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wattwise.schedule.solvers import Block, Infeasible, Plan, start_costs
from wattwise.units import J_PER_KWH


def solver(msg: bool = False, time_limit_s: float | None = None) -> Any:  # a pulp solver object
    """HiGHS through highspy when available, else HiGHS_CMD, else CBC; ``time_limit_s`` caps the search."""
    import pulp

    limit = {} if time_limit_s is None else {"timeLimit": time_limit_s}
    available = set(pulp.listSolvers(onlyAvailable=True))
    if "HiGHS" in available:
        return pulp.HiGHS(msg=msg, mip_rel_gap=0.0, **limit)
    if "HiGHS_CMD" in available:
        return pulp.HiGHS_CMD(msg=msg, gapRel=0.0, **limit)
    return pulp.PULP_CBC_CMD(msg=msg, gapRel=0.0, **limit)


def suspend_resume_milp(c: np.ndarray, startup_j: np.ndarray, work_j: np.ndarray, *,
                        stop_ok: np.ndarray | None = None, max_resumes: int | None = None,
                        blocked: np.ndarray | None = None, startup_cost: bool = True,
                        time_limit_s: float | None = None) -> Plan:
    """The optimum by MILP; ``Infeasible`` also when the solver stops at ``time_limit_s`` without proving
    optimality (the benchmark's cap)."""
    import pulp

    c = np.asarray(c, dtype=float)
    s_j = np.asarray(startup_j, dtype=float)
    w_j = np.asarray(work_j, dtype=float)
    T, ns, L = c.size, s_j.size, w_j.size
    if ns + L > T:
        raise Infeasible("window too short")
    blocked_arr = np.zeros(T, dtype=bool) if blocked is None else np.asarray(blocked, dtype=bool)
    ok = np.ones(L, dtype=bool) if stop_ok is None else np.asarray(stop_ok, dtype=bool)
    startup_c = start_costs(c, s_j) if ns else np.zeros(T)
    prob = pulp.LpProblem("suspend_resume", pulp.LpMinimize)
    if hasattr(prob, "add_variable"):  # PuLP ≥ 3.3
        def binary(name: str) -> Any:
            return prob.add_variable(name, 0, 1, cat="Integer")
    else:
        def binary(name: str) -> Any:
            return pulp.LpVariable(name, cat="Binary")
    y = {(t, k): binary(f"y_{t}_{k}") for t in range(T) for k in range(L)}
    z = {t: binary(f"z_{t}") for t in range(T - ns)}
    for (t, _k), var in y.items():
        if blocked_arr[t]:
            prob += var == 0
    for t, var in z.items():
        if blocked_arr[t:t + ns].any():
            prob += var == 0
    objective = [w_j[k] * c[t] * y[t, k] for t in range(T) for k in range(L) if w_j[k] * c[t]]
    if startup_cost:
        objective += [startup_c[t] * z[t] for t in z if startup_c[t]]
    prob += pulp.lpSum(objective)
    for k in range(L):
        prob += pulp.lpSum(y[t, k] for t in range(T)) == 1
    for t in range(T):
        startup_here = [z[u] for u in range(t - ns + 1, t + 1) if u in z] if ns else []
        prob += pulp.lpSum([y[t, k] for k in range(L)] + startup_here) <= 1
    for t in range(T):
        for k in range(L):
            before = [y[t - 1, k - 1]] if t >= 1 and k >= 1 else []
            if t - ns in z:
                before.append(z[t - ns])
            prob += y[t, k] <= pulp.lpSum(before)
    for k in range(1, L):
        prob += (pulp.lpSum(t * y[t, k] for t in range(T))
                 >= pulp.lpSum(t * y[t, k - 1] for t in range(T)) + 1)
    for t, var in z.items():
        prob += var <= pulp.lpSum(y[t + ns, k] for k in range(L))
    for k in range(1, L):
        if not ok[k]:
            for t in range(T):
                prob += y[t, k - 1] <= (y[t + 1, k] if t + 1 < T else 0)
    if max_resumes is not None:
        prob += pulp.lpSum(z.values()) <= max_resumes + 1
    status = prob.solve(solver(time_limit_s=time_limit_s))
    if pulp.LpStatus[status] != "Optimal":
        raise Infeasible(f"MILP status {pulp.LpStatus[status]}")
    at = {k: next(t for t in range(T) if (y[t, k].value() or 0) > 0.5) for k in range(L)}
    starts = sorted(t for t in z if (z[t].value() or 0) > 0.5)
    blocks: list[Block] = []
    for s in starts:
        k0 = next(k for k in range(L) if at[k] == s + ns)
        k1 = k0 + 1
        while k1 < L and at[k1] == at[k1 - 1] + 1:
            k1 += 1
        blocks.append((s, k0, k1))
    value = pulp.value(prob.objective) or 0.0
    return Plan(blocks, float(value) / J_PER_KWH)
