"""Simulate a scheduling policy over a job trace and a carbon trace.

Time runs on one grid of ``resolution_s`` slots from ``origin_s`` (the Unix time of job time 0; default the
carbon trace's start). A job arriving at ``arrival_s`` may start from the first slot at or after it; its
window lasts one uninterrupted run (startup + work, in whole slots) plus its waiting time (whole slots), so
``deadline = arrival + startup + length + wait`` on the grid, and ``agnostic`` always meets it.

Policies decide on the *forecast* intensity (the true trace, or the true trace with a seeded relative error
per trace sample) and are accounted on the true trace; energy and carbon count every startup run.

With a finite ``capacity`` (CPUs, a job holds its ``cpus`` from the first slot of a startup to the end of its
last work slot), jobs are taken in arrival order and each books the free capacity its policy chooses,
seeing only what earlier jobs left free. A job whose policy finds no schedule within its deadline runs
uninterrupted at the first free slots after its arrival (``deadline_met`` = false).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from wattwise.carbon import forecast
from wattwise.carbon.trace import CarbonTrace
from wattwise.errors import ConfigError, WattwiseError
from wattwise.jobmodel import JobModel
from wattwise.schedule import policies, solvers
from wattwise.schedule.jobs import Job
from wattwise.schedule.profile import SlotProfile, slot_profile
from wattwise.schedule.solvers import Block, Infeasible
from wattwise.units import J_PER_KWH

#: the registered policy names (see wattwise.schedule.policies)
POLICIES = tuple(policies.POLICIES)
_EPS = 1e-9
QUEUES = ("backfill", "fifo")
#: the policy savings are measured against
BASELINE = "agnostic"
_CHUNK = 512


def _is_constant(model: JobModel) -> bool:
    return not model.startup and len(model.work) == 1


@dataclass(frozen=True)
class Options:
    policy: str
    wait_s: float = 0.0
    resolution_s: float = 60.0
    max_resumes: int | None = None
    checkpoint_only: bool = False
    capacity: int | None = None
    #: with a capacity: "backfill" (a job may use any capacity left free, also before earlier jobs' starts)
    #: or "fifo" (jobs start in arrival order)
    queue: str = "backfill"
    #: further baselines (policy names) to report savings against, besides the carbon-agnostic start
    compare_with: tuple[str, ...] = ()
    forecast_error: float = 0.0
    seed: int = 0
    #: see wattwise.carbon.forecast: multiplicative (default), additive, ar1 or issued (forecast_file)
    forecast_model: str = "multiplicative"
    forecast_phi: float = 0.9
    #: ar1: ((lead_h, relative error), ...); None = forecast.DEFAULT_PROFILE
    forecast_profile: tuple[tuple[float, float], ...] | None = None
    forecast_file: str | None = None
    threshold_percentile: float = 30.0
    threshold_horizon_s: float = 86400.0
    origin_s: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in policies.POLICIES:
            raise ConfigError(f"unknown policy {self.policy!r}; allowed: {', '.join(policies.POLICIES)}")
        if not self.resolution_s > 0:
            raise ConfigError(f"resolution must be > 0 s, got {self.resolution_s}")
        if self.wait_s < 0:
            raise ConfigError(f"waiting time must be ≥ 0, got {self.wait_s}")
        if self.max_resumes is not None and self.max_resumes < 0:
            raise ConfigError(f"max resumes must be ≥ 0, got {self.max_resumes}")
        if self.capacity is not None and self.capacity < 1:
            raise ConfigError(f"capacity must be ≥ 1 CPU, got {self.capacity}")
        for name in self.compare_with:
            if name not in policies.POLICIES:
                raise ConfigError(f"unknown baseline policy {name!r}; allowed: {', '.join(policies.POLICIES)}")
        if self.queue not in QUEUES:
            raise ConfigError(f"unknown queue {self.queue!r}; allowed: {', '.join(QUEUES)}")
        if self.forecast_error < 0:
            raise ConfigError(f"forecast error must be ≥ 0, got {self.forecast_error}")
        if self.forecast_model not in forecast.MODELS:
            raise ConfigError(f"unknown forecast model {self.forecast_model!r}; allowed: "
                              f"{', '.join(forecast.MODELS)}")
        if self.forecast_model == "issued" and not self.forecast_file:
            raise ConfigError("the issued forecast model needs a forecast file (issue_time,target_time,g_per_kwh)")
        if not -1 < self.forecast_phi < 1:
            raise ConfigError(f"the AR(1) coefficient must be in (-1, 1), got {self.forecast_phi}")
        if not 0 <= self.threshold_percentile <= 100:
            raise ConfigError(f"threshold percentile must be in [0, 100], got {self.threshold_percentile}")


@dataclass
class JobResult:
    id: int
    arrival_s: float
    start_s: float
    exit_s: float
    waiting_s: float
    energy_j: float
    carbon_g: float
    interruptions: int
    policy: str
    cpus: int
    length_s: float
    startup_s: float
    deadline_s: float
    run_s: float
    starts: int
    deadline_met: bool
    agnostic_carbon_g: float = math.nan
    agnostic_energy_j: float = math.nan
    #: energy and carbon of the startups after the first (every resume repeats the startup), included above
    restart_energy_j: float = 0.0
    restart_carbon_g: float = 0.0
    blocks: list[Block] = field(default_factory=list, repr=False)


CSV_COLUMNS = ("id", "arrival_s", "start_s", "exit_s", "waiting_s", "energy_j", "carbon_g", "interruptions",
               "policy", "cpus", "length_s", "startup_s", "deadline_s", "run_s", "starts", "deadline_met",
               "agnostic_carbon_g", "agnostic_energy_j", "restart_energy_j", "restart_carbon_g")


@dataclass
class Simulation:
    options: Options
    results: list[JobResult]
    origin_s: float
    intensity: np.ndarray          # true g/kWh per slot of the grid
    forecast: np.ndarray           # what the policies saw
    elapsed_s: float
    baseline: list[JobResult] | None = field(repr=False, default=None)
    #: with a finite capacity: the carbon of the same policy with infinite capacity (a bound for exact ones)
    capacity_bound_carbon_g: float | None = None
    #: carbon (g) and energy (J) of each further baseline policy (Options.compare_with)
    other_baselines: dict[str, tuple[float, float]] = field(default_factory=dict)

    def totals(self) -> dict[str, float]:
        r = self.results
        return {
            "jobs": len(r),
            "energy_j": math.fsum(x.energy_j for x in r),
            "carbon_g": math.fsum(x.carbon_g for x in r),
            "run_s": math.fsum(x.run_s for x in r),
            "waiting_s_mean": math.fsum(x.waiting_s for x in r) / len(r) if r else 0.0,
            "interruptions": sum(x.interruptions for x in r),
            "deadlines_missed": sum(not x.deadline_met for x in r),
            # restart accounting: every resume repeats the startup and is billed (energy_j and carbon_g
            # include these); subtract them to compare with results that bill no restart
            "restarts": sum(x.starts - 1 for x in r),
            "restart_energy_j": math.fsum(x.restart_energy_j for x in r),
            "restart_carbon_g": math.fsum(x.restart_carbon_g for x in r),
        }


def forecast_intensity(trace: CarbonTrace, error: float, seed: int) -> CarbonTrace:
    """The trace with a seeded relative error: each sample times ``max(0, 1 + error·N(0, 1))``."""
    if error <= 0:
        return trace
    rng = np.random.default_rng(seed)
    factor = np.maximum(0.0, 1.0 + error * rng.standard_normal(len(trace)))
    return trace.with_intensity(trace.intensity_g_per_kwh * factor, source=f"{trace.source} (forecast ±{error:g})")


def simulate(jobs: Sequence[Job], trace: CarbonTrace, options: Options, *,
             progress: Callable[[int], None] | None = None, baseline: bool = True) -> Simulation:
    """Run ``options.policy`` on ``jobs``; with ``baseline`` also ``agnostic`` (same capacity) for savings."""
    started = time.perf_counter()
    R = options.resolution_s
    origin = trace.start_s if options.origin_s is None else options.origin_s
    if origin < trace.start_s:
        raise ConfigError(f"the simulation start is before the carbon trace ({trace.source}) begins")
    n = trace.n_slots(origin, R)
    true_c = trace.slots(origin, R, n)
    source = make_forecast(trace, options, origin, n, true_c)
    seen_c = source.values() if source.fixed else true_c
    results = _Engine(options, true_c, source, n).run(jobs, progress)
    base: list[JobResult] | None = None
    if getattr(_make_policy(options), "baseline", False):
        base = results
    elif baseline:
        base = _Engine(replace(options, policy=BASELINE), true_c, source, n).run(jobs, None)
    if base is not None:
        by_id = {r.id: r for r in base}
        for r in results:
            r.agnostic_carbon_g = by_id[r.id].carbon_g
            r.agnostic_energy_j = by_id[r.id].energy_j
    sim = Simulation(options, results, origin, true_c, seen_c, time.perf_counter() - started, base)
    for name in options.compare_with:
        other = _Engine(replace(options, policy=name), true_c, source, n).run(jobs, None)
        sim.other_baselines[name] = (math.fsum(r.carbon_g for r in other), math.fsum(r.energy_j for r in other))
    if options.capacity is not None:
        # the same policy without the capacity limit: a lower bound for the exact policies
        free = _Engine(replace(options, capacity=None), true_c, source, n).run(jobs, None)
        sim.capacity_bound_carbon_g = math.fsum(r.carbon_g for r in free)
    return sim


def _make_policy(options: Options) -> policies.Policy:
    horizon = max(1, round(options.threshold_horizon_s / options.resolution_s))
    settings = policies.Settings(max_resumes=options.max_resumes, checkpoint_only=options.checkpoint_only,
                                 threshold_percentile=options.threshold_percentile, threshold_horizon=horizon)
    return policies.create(options.policy, settings)


def make_forecast(trace: CarbonTrace, options: Options, origin: float, n: int,
                  true_c: np.ndarray) -> forecast.Forecast:
    """The forecast the policies decide on (module doc of wattwise.carbon.forecast)."""
    model = options.forecast_model
    if model in ("multiplicative", "additive") and options.forecast_error <= 0:
        model = "perfect"
    source = forecast.Forecast(true_c, model, options.forecast_error, options.seed, options.forecast_phi,
                               options.forecast_profile or forecast.DEFAULT_PROFILE, options.resolution_s, origin)
    if model == "multiplicative":
        noisy = forecast_intensity(trace, options.forecast_error, options.seed)
        source.fixed_values = noisy.slots(origin, options.resolution_s, n)
    if model == "issued":
        assert options.forecast_file is not None
        source.issues = forecast.read_issued(options.forecast_file)
    return source


class _Engine:
    def __init__(self, options: Options, true_c: np.ndarray, source: forecast.Forecast, n_grid: int) -> None:
        self.o = options
        self.policy = _make_policy(options)
        self.true_c = true_c
        self.source = source
        self.seen_c = source.values() if source.fixed else true_c
        self.n = n_grid
        self.usage = np.zeros(n_grid, dtype=np.int64) if options.capacity is not None else None
        #: the latest first slot booked so far (FIFO queue: no job starts before an earlier one)
        self.fifo_start = 0
        self._prefix: tuple[np.ndarray, np.ndarray] | None = None

    def run(self, jobs: Sequence[Job], progress: Callable[[int], None] | None) -> list[JobResult]:
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival_s, jobs[i].id))
        out: list[JobResult | None] = [None] * len(jobs)
        done = 0
        if self.usage is None and self.source.fixed and isinstance(self.policy, policies.StartPicker):
            batch = [i for i in order if _is_constant(jobs[i].model)]
            for chunk_start in range(0, len(batch), _CHUNK):
                chunk = batch[chunk_start:chunk_start + _CHUNK]
                for i, result in zip(chunk, self.batch([jobs[i] for i in chunk]), strict=True):
                    out[i] = result
                done += len(chunk)
                if progress is not None:
                    progress(done)
            order = [i for i in order if out[i] is None]
        if self.usage is None and isinstance(self.policy, policies.SuspendResume):
            groups: dict[tuple[Any, int], list[int]] = {}
            for i in order:
                p, a, d = self.window(jobs[i])
                if not self.policy.cheapest_slots_optimal(p):
                    groups.setdefault((jobs[i].model, d - a), []).append(i)
            for members in groups.values():
                for i, result in zip(members, self.dp_batch([jobs[i] for i in members]), strict=True):
                    out[i] = result
                done += len(members)
                if progress is not None:
                    progress(done)
            order = [i for i in order if out[i] is None]
        for i in order:
            out[i] = self.one(jobs[i])
            done += 1
            if progress is not None and (done % 64 == 0 or done == len(jobs)):
                progress(done)
        return [r for r in out if r is not None]

    def batch(self, jobs: list[Job]) -> list[JobResult]:
        """Agnostic, oracle or carbon-time for constant-power jobs without startup, many at once: the cost
        of every start of every job from prefix sums of the intensity (no per-job profile)."""
        o, R = self.o, self.o.resolution_s
        if self._prefix is None:
            self._prefix = (np.concatenate(([0.0], np.cumsum(self.seen_c))),
                            np.concatenate(([0.0], np.cumsum(self.true_c))))
        seen_p, true_p = self._prefix
        power = np.array([j.model.work[0].power_w for j in jobs])
        length = np.array([j.model.work_s for j in jobs])
        n = np.maximum(1, np.ceil(length / R - _EPS).astype(np.int64))
        last_s = length - (n - 1) * R
        wait = np.array([o.wait_s if j.wait_s is None else j.wait_s for j in jobs])
        a = np.maximum(0, np.ceil(np.array([j.arrival_s for j in jobs]) / R - _EPS).astype(np.int64))
        m = np.floor(wait / R + _EPS).astype(np.int64) + 1  # possible starts
        d = a + n + m - 1
        late = np.flatnonzero(d > self.n)
        if late.size:
            self.one(jobs[int(late[0])])  # raises the error naming the job
        full_w, last_w = power * R, power * last_s
        picker = self.policy
        assert isinstance(picker, policies.StartPicker)
        if getattr(picker, "baseline", False):  # starts at arrival: no costs needed
            s = a
        else:
            width = int(m.max())
            cols = np.arange(width)
            starts = a[:, None] + cols[None, :]
            np.minimum(starts, (d - n)[:, None], out=starts)  # padding of shorter windows
            ends = starts + (n - 1)[:, None]
            cost = seen_p.take(ends)
            cost -= seen_p.take(starts)
            cost *= full_w[:, None]
            tail = self.seen_c.take(ends)
            tail *= last_w[:, None]
            cost += tail
            if (m < width).any():
                cost[cols[None, :] >= m[:, None]] = np.inf
            s = a + picker.pick(cost)
        end = s + n - 1
        carbon = (full_w * (true_p[end] - true_p[s]) + last_w * self.true_c[end]) / J_PER_KWH
        exit_s = end * R + last_s
        columns = zip(s.tolist(), n.tolist(), exit_s.tolist(), (d * R).tolist(), (power * length).tolist(),
                      carbon.tolist(), length.tolist(), strict=True)
        results = []
        for job, (start, slots, exit_t, deadline, energy, grams, work) in zip(jobs, columns, strict=True):
            results.append(JobResult(
                job.id, job.arrival_s, start * R, exit_t, max(0.0, exit_t - job.arrival_s - work), energy, grams,
                0, o.policy, job.cpus, job.length_s, 0.0, deadline, work, 1, exit_t <= deadline + 1e-6,
                blocks=[(start, 0, slots)],
            ))
        return results

    def window(self, job: Job) -> tuple[SlotProfile, int, int]:
        """The job's profile, arrival slot and deadline slot (checked against the grid)."""
        o, R = self.o, self.o.resolution_s
        p = slot_profile(job.model, R)
        if p.n_work == 0:
            raise WattwiseError(f"job {job.id}: length must be > 0")
        if o.capacity is not None and job.cpus > o.capacity:
            raise ConfigError(f"job {job.id} needs {job.cpus} CPUs but the cluster has {o.capacity}")
        wait = o.wait_s if job.wait_s is None else job.wait_s
        a = max(0, math.ceil(job.arrival_s / R - _EPS))
        d = a + p.n_slots + math.floor(wait / R + _EPS)
        if d > self.n:
            raise ConfigError(
                f"job {job.id}: its window (arrival {job.arrival_s:g} s + {p.n_slots * R:g} s run + "
                f"{wait:g} s wait) ends after the carbon trace, {self.n * R:g} s after the simulation start; "
                "use a longer trace, an earlier --start or shorter waits"
            )
        return p, a, d

    def one(self, job: Job) -> JobResult:
        p, a, d = self.window(job)
        blocked = None
        if self.usage is not None and self.o.capacity is not None:
            blocked = self.usage[a:d] + job.cpus > self.o.capacity
            if self.o.queue == "fifo" and self.fifo_start > a:
                blocked[:self.fifo_start - a] = True  # no start before an earlier job's start
            if not blocked.any():
                blocked = None
        met = True
        try:
            blocks = self.plan(job, p, a, d, blocked)
        except Infeasible:
            if blocked is None:
                raise
            blocks, met = self.fallback(job, p, a), False
        blocks = [(a + s, k0, k1) for s, k0, k1 in blocks]
        if self.usage is not None:
            self.usage[solvers.occupied_slots(blocks, p.n_startup)] += job.cpus
            self.fifo_start = max(self.fifo_start, blocks[0][0])
        return self.account(job, p, blocks, d, met)

    def dp_batch(self, jobs: list[Job]) -> list[JobResult]:
        """Suspend-resume or wait-awhile for jobs with the same model and window length, solved together."""
        policy = self.policy
        assert isinstance(policy, policies.SuspendResume)
        windows = [self.window(job) for job in jobs]
        p = windows[0][0]
        C = np.stack([self.source.window(a, a, d) for _, a, d in windows])
        plans = solvers.suspend_resume_many(C, p.startup_j, p.work_j, stop_ok=policy.stop_ok(p),
                                            max_resumes=policy.max_resumes, startup_cost=policy.startup_cost)
        results = []
        for job, (_, a, d), plan in zip(jobs, windows, plans, strict=True):
            if plan is None:
                raise Infeasible(f"job {job.id}: no schedule fits its window")
            results.append(self.account(job, p, [(a + s, k0, k1) for s, k0, k1 in plan.blocks], d, True))
        return results

    def plan(self, job: Job, p: SlotProfile, a: int, d: int, blocked: np.ndarray | None) -> list[Block]:
        if self.source.fixed:
            return self.policy.plan(policies.Request(p, self.seen_c[a:d], self.seen_c[a:], blocked))
        horizon = max(d, min(self.n, a + round(self.o.threshold_horizon_s / self.o.resolution_s)))
        ahead = self.source.window(a, a, horizon)
        return self.policy.plan(policies.Request(p, ahead[:d - a], ahead, blocked))

    def fallback(self, job: Job, p: SlotProfile, a: int) -> list[Block]:
        assert self.usage is not None and self.o.capacity is not None
        blocked = self.usage[a:] + job.cpus > self.o.capacity
        if self.o.queue == "fifo" and self.fifo_start > a:
            blocked[:self.fifo_start - a] = True
        try:
            s = solvers.first_fit(p.n_slots, blocked, blocked.size - p.n_slots)
        except Infeasible:
            raise ConfigError(f"job {job.id}: no free capacity for it before the carbon trace ends") from None
        return [(s, 0, p.n_work)]

    def account(self, job: Job, p: SlotProfile, blocks: list[Block], d: int, met: bool) -> JobResult:
        R = self.o.resolution_s
        ns = p.n_startup
        energy = 0.0
        carbon = 0.0
        restart_carbon = 0.0
        c = self.true_c
        for i, (start, k0, k1) in enumerate(blocks):
            energy += p.startup_energy_j + float(p.work_j[k0:k1].sum())
            startup = float(np.dot(p.startup_j, c[start:start + ns]))
            carbon += startup
            if i:
                restart_carbon += startup
            carbon += float(np.dot(p.work_j[k0:k1], c[start + ns:start + ns + k1 - k0]))
        first = blocks[0][0]
        last_start, k0, k1 = blocks[-1]
        last_slot = last_start + ns + (k1 - k0) - 1
        exit_s = last_slot * R + (p.last_work_slot_s if k1 == p.n_work else R)
        starts = len(blocks)
        run_s = starts * p.startup_s + p.work_s
        deadline_s = d * R
        return JobResult(
            id=job.id, arrival_s=job.arrival_s, start_s=first * R, exit_s=exit_s,
            waiting_s=max(0.0, exit_s - job.arrival_s - run_s), energy_j=energy, carbon_g=carbon / J_PER_KWH,
            interruptions=starts - 1, policy=self.o.policy, cpus=job.cpus, length_s=job.length_s,
            startup_s=p.startup_s, deadline_s=deadline_s, run_s=run_s, starts=starts,
            deadline_met=met and exit_s <= deadline_s + 1e-6, blocks=blocks,
            restart_energy_j=(starts - 1) * p.startup_energy_j, restart_carbon_g=restart_carbon / 3.6e6,
        )


def summary(sim: Simulation) -> dict[str, Any]:
    """Totals, the agnostic baseline and the savings against it."""
    totals = sim.totals()
    base_c = math.fsum(r.agnostic_carbon_g for r in sim.results)
    base_e = math.fsum(r.agnostic_energy_j for r in sim.results)
    saved = base_c - totals["carbon_g"]
    o = sim.options
    return {
        "policy": o.policy,
        "options": {k: v for k, v in asdict(o).items() if k != "policy"},
        "origin_s": sim.origin_s,
        "slots": int(sim.intensity.size),
        "totals": totals,
        "agnostic": {"carbon_g": base_c, "energy_j": base_e},
        "savings": {"carbon_g": saved, "carbon_pct": 100.0 * saved / base_c if base_c > 0 else 0.0,
                    "energy_j": base_e - totals["energy_j"]},
        "elapsed_s": sim.elapsed_s,
        **({} if sim.capacity_bound_carbon_g is None else {"capacity": {
            "queue": o.queue, "unlimited_carbon_g": sim.capacity_bound_carbon_g,
            "gap_to_unlimited_pct": 100.0 * (totals["carbon_g"] - sim.capacity_bound_carbon_g)
            / sim.capacity_bound_carbon_g if sim.capacity_bound_carbon_g > 0 else 0.0}}),
        "baseline": "agnostic: starts at arrival (with capacity: at the first free slots) and runs to the end",
        "against": {name: {"carbon_g": c, "energy_j": e,
                           "saving_pct": 100.0 * (c - totals["carbon_g"]) / c if c > 0 else 0.0}
                    for name, (c, e) in sim.other_baselines.items()},
    }
