"""Exact schedule solvers on per-slot arrays.

Every solver works in a job's window of ``T`` slots (local slot 0 = the job's arrival slot, slot ``T`` = its
deadline) with ``c[t]``, the carbon intensity (g/kWh) of slot ``t``, and the job's per-slot energies (J):
``startup_j`` (one (re)start) and ``work_j`` (the work, in order). A schedule is a list of *blocks*
``(start, k0, k1)``: a (re)start in slots ``[start, start + n_startup)`` followed by work slots ``k0 … k1-1``
in the next slots. Costs are in grams (J × g/kWh / 3.6e6). ``blocked[t]`` marks slots the job may not use
(finite cluster capacity).

``suspend_resume`` is the optimal schedule when every (re)start repeats the startup: a dynamic program over
(time slot, work progress, hot or suspended[, number of starts]) — see docs/scheduling.md for the recurrence.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from wattwise.errors import Infeasible as Infeasible
from wattwise.errors import WattwiseError
from wattwise.schedule import dp
from wattwise.units import J_PER_KWH

Block = dp.Block


@dataclass(frozen=True)
class Plan:
    """A schedule in local slots and its cost on the intensity it was planned with (g)."""

    blocks: list[Block]
    cost_g: float

    @property
    def starts(self) -> int:
        return len(self.blocks)


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encoding: begin, end and value of each run of equal values."""
    if values.size == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    change = np.flatnonzero(np.diff(values) != 0) + 1
    begin = np.concatenate(([0], change))
    end = np.concatenate((change, [values.size]))
    return begin, end, values[begin]


def start_costs(c: np.ndarray, run_j: np.ndarray, blocked: np.ndarray | None = None) -> np.ndarray:
    """Cost (J·g/kWh) of running ``run_j`` uninterrupted from each start ``s = 0 … T-D``; ``inf`` where the
    run would touch a blocked slot. Piecewise-constant profiles use prefix sums (one pass per run of equal
    power), others an FFT correlation."""
    c = np.asarray(c, dtype=float)
    run_j = np.asarray(run_j, dtype=float)
    n = c.size - run_j.size + 1
    if n <= 0:
        return np.zeros(0)
    if run_j.size == 0:
        cost = np.zeros(n)
    else:
        begin, end, value = _runs(run_j)
        if begin.size <= 48:
            prefix = np.concatenate(([0.0], np.cumsum(c)))
            cost = np.zeros(n)
            for b, e, v in zip(begin.tolist(), end.tolist(), value.tolist(), strict=True):
                if v:
                    cost += v * (prefix[e:e + n] - prefix[b:b + n])
        else:
            from scipy.signal import correlate

            cost = correlate(c, run_j, mode="valid", method="fft")
            np.maximum(cost, 0.0, out=cost)
    if blocked is not None and run_j.size:
        count = np.concatenate(([0], np.cumsum(np.asarray(blocked, dtype=np.int64))))
        cost[(count[run_j.size:run_j.size + n] - count[:n]) > 0] = np.inf
    return cost


def plan_cost(c: np.ndarray, startup_j: np.ndarray, work_j: np.ndarray, blocks: list[Block]) -> float:
    """Exact cost (g) of a schedule on intensity ``c``, counting every startup it runs."""
    total = 0.0
    ns = startup_j.size
    for start, k0, k1 in blocks:
        total += float(np.dot(startup_j, c[start:start + ns]))
        total += float(np.dot(work_j[k0:k1], c[start + ns:start + ns + k1 - k0]))
    return total / J_PER_KWH


def occupied_slots(blocks: list[Block], n_startup: int) -> np.ndarray:
    """The slots a schedule occupies (startup and work)."""
    parts = [np.arange(start, start + n_startup + k1 - k0) for start, k0, k1 in blocks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=int)


# -- uninterrupted runs ------------------------------------------------------------------------------------
def best_start(c: np.ndarray, run_j: np.ndarray, blocked: np.ndarray | None = None) -> tuple[int, float]:
    """The earliest start with the least cost of one uninterrupted run, and that cost (g)."""
    cost = start_costs(c, run_j, blocked)
    if cost.size == 0 or not np.isfinite(cost).any():
        raise Infeasible("no uninterrupted run fits the window")
    s = int(np.argmin(cost))
    return s, float(cost[s]) / J_PER_KWH


def first_fit(run_slots: int, blocked: np.ndarray | None, limit: int) -> int:
    """The earliest start ``s ≤ limit`` whose ``run_slots`` slots are all free."""
    if blocked is None or not blocked.any():
        return 0
    count = np.concatenate(([0], np.cumsum(blocked.astype(np.int64))))
    n = min(limit + 1, blocked.size - run_slots + 1)
    if n <= 0:
        raise Infeasible("the job does not fit")
    free = np.flatnonzero((count[run_slots:run_slots + n] - count[:n]) == 0)
    if free.size == 0:
        raise Infeasible("no free capacity for an uninterrupted run")
    return int(free[0])


def carbon_time_start(c: np.ndarray, run_j: np.ndarray, blocked: np.ndarray | None = None) -> int:
    """Carbon-time: the start that maximises the carbon saved per slot of delay against the earliest
    possible start; the earliest start when no delay saves anything."""
    cost = start_costs(c, run_j, blocked)
    finite = np.flatnonzero(np.isfinite(cost))
    if finite.size == 0:
        raise Infeasible("no uninterrupted run fits the window")
    s0 = int(finite[0])
    later = finite[finite > s0]
    if later.size == 0:
        return s0
    rate = (cost[s0] - cost[later]) / (later - s0)
    best = int(np.argmax(rate))
    return int(later[best]) if rate[best] > 0 else s0


# -- suspend & resume ---------------------------------------------------------------------------------------
#: bytes of backtrack bits one batch of `suspend_resume_many` may use
DP_MEMORY_BYTES = 128_000_000
#: the largest single window `suspend_resume` accepts (bytes of backtrack bits)
DP_MAX_BYTES = 4_000_000_000
#: the implementations of the suspend-resume program (see `suspend_resume_many`)
DP_ALGORITHMS = ("progress", "progress-numpy", "slots")


def suspend_resume(c: np.ndarray, startup_j: np.ndarray, work_j: np.ndarray, *,
                   stop_ok: np.ndarray | None = None, max_resumes: int | None = None,
                   blocked: np.ndarray | None = None, startup_cost: bool = True) -> Plan:
    """The least-carbon schedule of a job that may be suspended and resumed, every (re)start repeating the
    startup slots, finishing within the ``T = len(c)`` slots.

    ``stop_ok[k]``: the job may stop after ``k`` work slots (default: anywhere). ``max_resumes``: at most this
    many resumes (starts - 1). ``startup_cost=False`` plans as if startups drew no energy (they still take
    their time): the wait-awhile scheduler, which believes suspend & resume are free.

    Dynamic program, forward in time. At the start of slot ``t``, ``H[g, k]`` is the least cost of being
    *hot* (startup done) with ``k`` work slots done and ``g`` starts made, ``S[g, k]`` of being *suspended*
    (or not started, ``k = 0``). Per slot: a hot job may stop (``S = min(S, H)`` where allowed), a suspended
    one may begin a startup (arriving hot ``n_startup`` slots later, ``g+1``, at the cost of those slots),
    and a hot one works slot ``t`` (``H'[k+1] = H[k] + work_j[k]·c[t]``). The optimum is the least
    ``H[·, L]`` over time. ``O(T · L · G)`` time with ``G = 1`` without a resume limit, one byte per state
    and slot for the backtrack. Ties go to the earliest finish and the fewest starts.
    """
    blocked_b = None if blocked is None else np.asarray(blocked, dtype=bool)[None, :]
    plan = suspend_resume_many(np.asarray(c, dtype=float)[None, :], startup_j, work_j, stop_ok=stop_ok,
                               max_resumes=max_resumes, blocked=blocked_b, startup_cost=startup_cost)[0]
    if plan is None:
        raise Infeasible("no schedule fits the window and the free capacity")
    return plan


def suspend_resume_many(c: np.ndarray, startup_j: np.ndarray, work_j: np.ndarray, *,
                        stop_ok: np.ndarray | None = None, max_resumes: int | None = None,
                        blocked: np.ndarray | None = None, startup_cost: bool = True,
                        algorithm: str | None = None) -> list[Plan | None]:
    """:func:`suspend_resume` for one job profile in ``B`` windows of equal length at once (``c`` and
    ``blocked`` of shape ``(B, T)``): the same recurrence, vectorised over the batch as well. ``None`` for
    windows without a feasible schedule.

    ``algorithm`` (see :mod:`wattwise.schedule.dp`): ``"progress"`` (default; a compiled loop over the ``L``
    work slots, each step over the slack), ``"progress-numpy"`` (the same in numpy steps, also the fallback
    without numba) or ``"slots"`` (the original loop over the ``T`` time slots, kept as the reference that the
    benchmark and the tests compare with). All return the same plans, bit for bit. Without the argument the
    environment variable ``WATTWISE_DP`` chooses (default ``progress``), so that a benchmark can run a whole
    sweep, worker processes included, on the reference."""
    c = np.atleast_2d(np.asarray(c, dtype=float))
    s_j = np.asarray(startup_j, dtype=float)
    w_j = np.asarray(work_j, dtype=float)
    B, T = c.shape
    ns, L = s_j.size, w_j.size
    if L == 0:
        raise ValueError("a job needs at least one work slot")
    if ns + L > T:
        raise Infeasible(f"the job needs {ns + L} slots but its window has {T}")
    if max_resumes is not None and max_resumes < 0:
        raise ValueError("max_resumes must be ≥ 0")
    ok = None if stop_ok is None else np.asarray(stop_ok, dtype=bool)
    if ok is not None and ok.all():
        ok = None
    blocked_arr = None if blocked is None else np.atleast_2d(np.asarray(blocked, dtype=bool))
    G = 1 if max_resumes is None else max_resumes + 2
    algorithm = algorithm or os.environ.get("WATTWISE_DP") or "progress"
    if algorithm not in DP_ALGORITHMS:
        raise ValueError(f"unknown suspend-resume algorithm {algorithm!r}; allowed: {', '.join(DP_ALGORITHMS)}")
    per_window = (T + 1) * G * (2 * L + 1) if algorithm == "slots" else 2 * L * G * (T - ns - L + 1)
    if per_window > DP_MAX_BYTES:
        raise WattwiseError(
            f"suspend-resume for {L} work slots in a window of {T} slots"
            f"{f' with at most {max_resumes} resumes' if max_resumes is not None else ''} needs "
            f"{per_window / 1e9:.1f} GB of decisions (limit {DP_MAX_BYTES / 1e9:.0f} GB); use a coarser "
            "--resolution or a shorter waiting time"
        )
    sc = np.zeros((B, T - ns + 1))
    if ns:
        for b in range(B):
            row_blocked = None if blocked_arr is None else blocked_arr[b]
            sc[b] = start_costs(c[b] if startup_cost else np.zeros(T), s_j, row_blocked)
    layered = max_resumes is not None
    U = T - ns - L + 1
    shared = _SHARED.get("tables")
    if (algorithm != "slots" and blocked_arr is None and shared is not None
            and shared.fits(c, sc, w_j, ok, G, layered, ns, algorithm)):
        results = [r for tables in shared.tables for r in dp.backtrack(tables, ns, layered, U)]
        return [None if r is None else Plan(r[0], r[1] / J_PER_KWH) for r in results]
    step = max(1, DP_MEMORY_BYTES // per_window)
    keep = algorithm != "slots" and blocked_arr is None and "tables" in _SHARED
    kept: list[dp.Tables] = []
    plans: list[Plan | None] = []
    for b0 in range(0, B, step):
        part = slice(b0, b0 + step)
        sub_blocked = None if blocked_arr is None else blocked_arr[part]
        if algorithm == "slots":
            results = dp.slots(c[part], sc[part], w_j, ok, G, layered, ns, sub_blocked)
        else:
            tables = dp.progress_tables(c[part], sc[part], w_j, ok, G, layered, ns, sub_blocked,
                                        compiled=algorithm == "progress")
            results = dp.backtrack(tables, ns, layered, U)
            if keep:
                kept.append(tables)
        plans += [None if r is None else Plan(r[0], r[1] / J_PER_KWH) for r in results]
    if keep and sum(t[0].nbytes + t[1].nbytes for t in kept) <= 4 * DP_MEMORY_BYTES:
        _SHARED["tables"] = _SharedTables(c, sc, w_j, ok, G, layered, ns, algorithm, kept)
    return plans


@dataclass
class _SharedTables:
    """The tables of the last program solved while sharing (see :func:`sharing_deadlines`)."""

    c: np.ndarray
    sc: np.ndarray
    w: np.ndarray
    ok: np.ndarray | None
    G: int
    layered: bool
    ns: int
    algorithm: str
    tables: list[dp.Tables]

    def fits(self, c: np.ndarray, sc: np.ndarray, w: np.ndarray, ok: np.ndarray | None, G: int, layered: bool,
             ns: int, algorithm: str) -> bool:
        """Windows with the same arrivals, job and settings whose deadlines are not later: their intensity
        (and startup costs) must equal the first slots of these windows, bit for bit."""
        T = c.shape[1]
        return (algorithm == self.algorithm and G == self.G and layered == self.layered and ns == self.ns
                and c.shape[0] == self.c.shape[0] and self.c.shape[1] >= T and np.array_equal(w, self.w)
                and ((ok is None and self.ok is None)
                     or (ok is not None and self.ok is not None and np.array_equal(ok, self.ok)))
                and np.array_equal(c, self.c[:, :T]) and np.array_equal(sc, self.sc[:, :sc.shape[1]]))


_SHARED: dict[str, _SharedTables | None] = {}


@contextlib.contextmanager
def sharing_deadlines() -> Iterator[None]:
    """Inside: a suspend-resume program is kept until the next one, and windows that are a prefix of its
    windows (same arrivals, earlier deadlines: e.g. the cells of a sweep that differ only in the waiting
    time, largest first) are answered from its tables instead of being solved again. Same plans, bit for
    bit; memory: the kept tables (at most ``DP_MEMORY_BYTES`` per chunk of windows)."""
    _SHARED["tables"] = None
    try:
        yield
    finally:
        _SHARED.pop("tables", None)


def cheapest_slots(c: np.ndarray, n: int) -> list[Block]:
    """Free suspend & resume of a job with equal energy in every slot and no startup: its ``n`` cheapest
    slots (ties to the earliest), as blocks."""
    if n <= 0 or n > int(np.isfinite(c).sum()):
        raise Infeasible("not enough free slots in the window")
    return _blocks_of_slots(np.sort(np.argsort(c, kind="stable")[:n]))


# -- threshold -----------------------------------------------------------------------------------------------
def threshold_plan(c: np.ndarray, n_startup: int, n_work: int, threshold: float,
                   blocked: np.ndarray | None = None) -> list[Block]:
    """Work while ``c[t] ≤ threshold`` and suspend otherwise; once the slack is used up, run to the end.

    A suspended job (re)starts so that its first work slot is below the threshold (the startup runs just
    before), or at the last moment that still meets the deadline. A hot job stops at a slot above the
    threshold only if it can afford a new startup later. Blocked slots (no free capacity) suspend it.
    """
    T = c.size
    free = np.ones(T, dtype=bool) if blocked is None else ~np.asarray(blocked, dtype=bool)
    low = (c <= threshold) & free
    count = np.concatenate(([0], np.cumsum(~free)))
    m = T - n_startup
    startable = np.zeros(T, dtype=bool)  # startup slots free and the first work slot free
    if m > 0:
        startable[:m] = (count[n_startup + 1:n_startup + 1 + m] - count[:m]) == 0
    wanted_start = np.zeros(T, dtype=bool)
    if m > 0:
        wanted_start[:m] = startable[:m] & low[n_startup:]
    blocks: list[Block] = []
    k = 0
    t = 0
    while k < n_work:
        latest = T - n_startup - (n_work - k)
        if latest < t:
            raise Infeasible("the job's slack is used up")
        wanted = np.flatnonzero(wanted_start[t:latest + 1])
        forced = wanted.size == 0
        if not forced:
            start = t + int(wanted[0])
        else:
            fits = np.flatnonzero(startable[t:latest + 1])
            if fits.size == 0:
                raise Infeasible("no free capacity before the deadline")
            start = t + int(fits[-1])
        t = start + n_startup
        k0 = k
        while k < n_work and t < T and free[t]:
            if not forced and not low[t] and (T - t) - (n_work - k) - n_startup >= 1:
                break
            k += 1
            t += 1
        if k == k0:  # cannot happen (the first work slot of a start is free and low or forced); be safe
            t = start + 1
            continue
        blocks.append((start, k0, k))
    return blocks


def cheapest_slots_last(c: np.ndarray, n: int, weight: float, last_weight: float) -> list[Block]:
    """Free suspend & resume without startup when every work slot weighs ``weight`` except the last one
    (``last_weight``, a partly used slot): the exact optimum in ``O(T log T)``. For each position ``p`` of
    the last slot the best is the ``n-1`` cheapest slots before ``p``; a heap keeps them while ``p`` moves.
    Ties go to the earliest slots. ``inf`` in ``c`` marks unusable slots."""
    import heapq

    usable = np.flatnonzero(np.isfinite(c))
    if n <= 0 or n > usable.size:
        raise Infeasible("not enough free slots in the window")
    values = c[usable].tolist()
    heap: list[tuple[float, int]] = []  # the n-1 cheapest so far, as a max-heap (later slots leave first)
    total = 0.0
    best, best_i = np.inf, -1
    for i, v in enumerate(values):
        if len(heap) == n - 1:
            cost = weight * total + last_weight * v
            if cost < best:
                best, best_i = cost, i
        if n == 1:
            continue
        if len(heap) < n - 1:
            heapq.heappush(heap, (-v, -i))
            total += v
        elif v < -heap[0][0]:
            total += v + heapq.heappushpop(heap, (-v, -i))[0]
    before = np.argsort(np.asarray(values[:best_i]), kind="stable")[: n - 1]
    slots = usable[np.append(np.sort(before), best_i)]
    return _blocks_of_slots(slots)


def _blocks_of_slots(slots: np.ndarray) -> list[Block]:
    cuts = np.flatnonzero(np.diff(slots) != 1) + 1
    blocks: list[Block] = []
    k = 0
    for run in np.split(slots, cuts):
        blocks.append((int(run[0]), k, k + run.size))
        k += run.size
    return blocks
