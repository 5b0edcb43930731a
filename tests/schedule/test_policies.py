"""Invariants of every policy on a small mixed job set over the shipped Germany trace."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from wattwise.carbon.trace import read_trace
from wattwise.errors import ConfigError
from wattwise.jobmodel import JobModel, Phase, ml
from wattwise.schedule import simulate as sim_module
from wattwise.schedule.jobs import Job, make_job, read_jobs
from wattwise.schedule.profile import slot_profile
from wattwise.schedule.simulate import POLICIES, Options, simulate, summary

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "schedule"
TRACE = read_trace(ROOT / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv")
REL = 1e-9

ALTERNATING = JobModel(
    (Phase("boot", 600, 150),),
    (Phase("high", 1800, 200), Phase("low", 1800, 100, is_checkpoint=True)),
)
NO_STARTUP = JobModel((), (Phase("high", 1800, 200), Phase("low", 1800, 100, is_checkpoint=True)))
ML = ml(epochs=3, start_s=300, start_w=80, train_s=2400, train_w=250, evaluate_s=300, evaluate_w=120,
        save_s=300, save_w=90)


def mixed_jobs() -> list[Job]:
    jobs = []
    for i, arrival_h in enumerate([0, 5, 13, 27, 40, 52]):
        arrival = arrival_h * 3600.0 + 17 * i  # not on the slot grid
        jobs.append(make_job(4 * i, arrival, 2 * 3600.0 + 30 * i, 1, power_w=100.0))
        jobs.append(make_job(4 * i + 1, arrival, 3 * 3600.0, 1, base=ALTERNATING, kind="phases"))
        jobs.append(make_job(4 * i + 2, arrival, 2.5 * 3600.0, 2, base=NO_STARTUP, kind="phases"))
        jobs.append(make_job(4 * i + 3, arrival, 3 * 3000.0, 1, base=ML, kind="ml"))
    return jobs


JOBS = mixed_jobs()


def run(policy: str, **options) -> sim_module.Simulation:
    return simulate(JOBS, TRACE, Options(policy, wait_s=12 * 3600.0, **options))


@pytest.fixture(scope="module")
def results() -> dict[str, sim_module.Simulation]:
    return {policy: run(policy) for policy in POLICIES}


def carbon(sim: sim_module.Simulation) -> np.ndarray:
    return np.array([r.carbon_g for r in sim.results])


def check_result(job: Job, r: sim_module.JobResult, options: Options) -> None:
    R = options.resolution_s
    p = slot_profile(job.model, R)
    arrival_slot = int(np.ceil(job.arrival_s / R - 1e-9))
    k = 0
    free_from = arrival_slot
    for start, k0, k1 in r.blocks:
        assert k0 == k and k1 > k0
        assert start >= free_from
        if options.checkpoint_only and k1 < p.n_work:
            assert p.stop_ok[k1]
        free_from = start + p.n_startup + k1 - k0
        k = k1
    assert k == p.n_work, "work completed"
    assert free_from * R <= r.deadline_s + 1e-6
    assert r.deadline_met and r.exit_s <= r.deadline_s + 1e-6
    assert r.start_s >= job.arrival_s - 1e-9
    assert r.deadline_s == pytest.approx(
        (arrival_slot + p.n_slots + int(options.wait_s // R)) * R)
    # energy: every start pays the whole startup again
    assert r.starts == len(r.blocks) and r.interruptions == r.starts - 1
    assert r.energy_j == pytest.approx(r.starts * job.model.startup_energy_j + job.model.work_energy_j, rel=REL)
    assert r.run_s == pytest.approx(r.starts * job.model.startup_s + job.length_s)
    # carbon recounted slot by slot on the true trace
    c = TRACE.slots(TRACE.start_s, R, free_from + 1)
    grams = 0.0
    for start, k0, k1 in r.blocks:
        grams += np.dot(p.startup_j, c[start:start + p.n_startup])
        grams += np.dot(p.work_j[k0:k1], c[start + p.n_startup:start + p.n_startup + k1 - k0])
    assert r.carbon_g == pytest.approx(grams / 3.6e6, rel=REL)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_job_complete_in_time_and_accounted(results, policy: str) -> None:
    sim = results[policy]
    assert [r.id for r in sim.results] == [j.id for j in JOBS]
    for job, r in zip(JOBS, sim.results, strict=True):
        check_result(job, r, sim.options)


def test_agnostic_starts_at_arrival_and_saves_nothing(results) -> None:
    sim = results["agnostic"]
    assert summary(sim)["savings"]["carbon_g"] == 0
    for job, r in zip(JOBS, sim.results, strict=True):
        assert r.start_s == pytest.approx(np.ceil(job.arrival_s / 60 - 1e-9) * 60)
        assert r.interruptions == 0


def test_policy_order(results) -> None:
    agnostic, oracle = carbon(results["agnostic"]), carbon(results["oracle"])
    sr, carbon_time = carbon(results["suspend-resume"]), carbon(results["carbon-time"])
    assert np.all(oracle <= agnostic * (1 + REL))
    assert np.all(carbon_time <= agnostic * (1 + REL))
    assert np.all(oracle <= carbon_time * (1 + REL))
    assert np.all(sr <= oracle * (1 + REL))
    assert sr.sum() < oracle.sum() < agnostic.sum()  # on this trace both save something
    for r in results["oracle"].results + results["carbon-time"].results:
        assert r.interruptions == 0
    # wait-awhile plans as if restarts were free: never better than the optimum on the true cost
    assert np.all(carbon(results["wait-awhile"]) >= sr * (1 - REL))


def test_wait_awhile_is_optimal_when_startup_is_free(results) -> None:
    free = [i for i, job in enumerate(JOBS) if not job.model.startup]
    wait_awhile = carbon(results["wait-awhile"])[free]
    np.testing.assert_allclose(wait_awhile, carbon(results["suspend-resume"])[free], rtol=REL)
    limited = carbon(run("suspend-resume", max_resumes=1))[free]
    assert np.all(wait_awhile <= limited * (1 + REL))


def test_no_resume_is_the_oracle(results) -> None:
    np.testing.assert_allclose(carbon(run("suspend-resume", max_resumes=0)), carbon(results["oracle"]), rtol=REL)


def test_resume_limit_and_checkpoint_only_cost_more(results) -> None:
    sr = carbon(results["suspend-resume"])
    limited = run("suspend-resume", max_resumes=1)
    assert all(r.interruptions <= 1 for r in limited.results)
    assert np.all(carbon(limited) >= sr * (1 - REL))
    checkpoint = run("suspend-resume", checkpoint_only=True)
    for job, r in zip(JOBS, checkpoint.results, strict=True):
        check_result(job, r, checkpoint.options)
    assert np.all(carbon(checkpoint) >= sr * (1 - REL))
    assert np.all(carbon(checkpoint) <= carbon(results["oracle"]) * (1 + REL))


@pytest.mark.parametrize("policy", ["oracle", "suspend-resume"])
def test_forecast_error_decides_on_forecast_pays_on_truth(results, policy: str) -> None:
    noisy = run(policy, forecast_error=0.3, seed=5)
    assert not np.array_equal(noisy.forecast, noisy.intensity)
    for job, r in zip(JOBS, noisy.results, strict=True):
        check_result(job, r, noisy.options)
    assert np.all(carbon(noisy) >= carbon(results[policy]) * (1 - REL))
    assert carbon(noisy).sum() > carbon(results[policy]).sum()
    again = run(policy, forecast_error=0.3, seed=5)
    np.testing.assert_array_equal(carbon(again), carbon(noisy))


@pytest.mark.parametrize("policy", POLICIES)
def test_batched_paths_equal_job_by_job(results, policy: str) -> None:
    """A huge finite capacity takes the job-by-job path; the infinite one the batched paths."""
    one_by_one = run(policy, capacity=10**6)
    np.testing.assert_allclose(carbon(one_by_one), carbon(results[policy]), rtol=REL)
    assert [r.blocks for r in one_by_one.results] == [r.blocks for r in results[policy].results]


@pytest.mark.parametrize("policy", POLICIES)
def test_finite_capacity_is_never_exceeded(policy: str) -> None:
    jobs = read_jobs(ROOT / "data" / "jobs" / "alibaba-pai-1k.csv")[:150]
    options = Options(policy, wait_s=6 * 3600.0, capacity=8, resolution_s=300.0)
    sim = simulate(jobs, TRACE, options)
    usage = np.zeros(sim.intensity.size, dtype=int)
    for job, r in zip(jobs, sim.results, strict=True):
        p = slot_profile(job.model, options.resolution_s)
        assert sum(k1 - k0 for _, k0, k1 in r.blocks) == p.n_work
        for start, k0, k1 in r.blocks:
            usage[start:start + p.n_startup + k1 - k0] += job.cpus
    assert usage.max() <= 8
    assert summary(sim)["totals"]["jobs"] == 150


def test_per_job_waiting_time() -> None:
    jobs = read_jobs(FIXTURES / "carbs-waiting.csv")
    sim = simulate(jobs, TRACE, Options("oracle", wait_s=86400.0))
    assert sim.results[0].start_s == 0 and sim.results[0].deadline_s == 3600
    assert sim.results[1].deadline_s == 3600 + 7200


def test_window_beyond_the_trace_is_an_error() -> None:
    late = [make_job(0, TRACE.end_s - TRACE.start_s - 3600, 7200.0)]
    with pytest.raises(ConfigError, match=r"job 0: its window .* ends after the carbon trace"):
        simulate(late, TRACE, Options("agnostic"))


def test_threshold_percentile_matters() -> None:
    low = simulate(JOBS, TRACE, Options("threshold", wait_s=12 * 3600.0, threshold_percentile=10))
    high = simulate(JOBS, TRACE, Options("threshold", wait_s=12 * 3600.0, threshold_percentile=90))
    assert [r.blocks for r in low.results] != [r.blocks for r in high.results]


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown policy 'fastest'"):
        Options("fastest")
    with pytest.raises(ConfigError, match="capacity"):
        Options("oracle", capacity=0)
    with pytest.raises(ConfigError, match="needs 3 CPUs"):
        simulate([replace(JOBS[0], cpus=3)], TRACE, Options("oracle", capacity=2))
