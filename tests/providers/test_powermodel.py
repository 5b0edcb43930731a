"""The SPECpower power model at run time: tree evaluation by hand, the shipped model's curve and interval,
machine facts from fixture trees, a VM's share of its host, and the interval figures of a phase."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattwise.errors import ConfigError
from wattwise.providers.estimate import (
    EstimatedPowerProvider,
    PowerCurve,
    default_power_curve,
    estimate_interval,
    format_estimate,
)
from wattwise.providers.machine_facts import described_facts, model_input, read_machine_facts
from wattwise.providers.powermodel import FEATURES, LOAD_LEVELS, MachineSpec, PowerModel, load_model

MACHINES = Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "machines"


def _leaf(value: float) -> dict[str, list[float]]:
    return {"feature": [0], "threshold": [0.0], "left": [0], "right": [0], "value": [value], "leaf": [1],
            "missing_left": [0]}


def tiny_model() -> PowerModel:
    """ln P = 4 + (0.5 if utilization > 0.5 else 0) + (0.1 if log_threads > ln 8 else −0.1)."""
    u, threads = FEATURES.index("utilization"), FEATURES.index("log_threads")
    split_u = {"feature": [u, 0, 0], "threshold": [0.5, 0, 0], "left": [1, 0, 0], "right": [2, 0, 0],
               "value": [0, 0.0, 0.5], "leaf": [0, 1, 1], "missing_left": [1, 0, 0]}
    split_t = {"feature": [threads, 0, 0], "threshold": [math.log(8), 0, 0], "left": [1, 0, 0],
               "right": [2, 0, 0], "value": [0, -0.1, 0.1], "leaf": [0, 1, 1], "missing_left": [1, 0, 0]}
    return PowerModel({
        "features": list(FEATURES), "baseline": 4.0, "trees": [split_u, split_t, _leaf(0.0)],
        "interval": {"levels": [0.0, 1.0], "quantiles": [0.05, 0.95], "log_ratio_low": [-0.2, -0.1],
                     "log_ratio_high": [0.3, 0.1], "time_split_coverage": 0.9},
        "defaults": {"host": {"tdp_w": 150, "chips": 2, "cores": 48, "threads": 96, "base_ghz": 2.2,
                              "turbo_ghz": 3.5, "memory_gb": 384}, "year": 2020},
    })


SPEC = MachineSpec(tdp_w=150, chips=2, cores=40, threads=80, base_ghz=2.5, turbo_ghz=3.9, memory_gb=384)


def test_trees_evaluated_by_hand() -> None:
    model = tiny_model()
    small = MachineSpec(tdp_w=65, chips=1, cores=4, threads=8, base_ghz=3.0, turbo_ghz=4.0, memory_gb=16)
    curve = model.curve(small, levels=(0.0, 0.5, 1.0))
    # 8 threads: ln 8 <= threshold -> -0.1; u <= 0.5 -> 0; u = 1 -> 0.5
    assert curve[0].power_w == pytest.approx(math.exp(3.9))
    assert curve[1].power_w == pytest.approx(math.exp(3.9))
    assert curve[2].power_w == pytest.approx(math.exp(4.4))
    # interval ratios interpolated between 0 and 1: at 0.5, low −0.15, high +0.2
    assert curve[1].power_w_low == pytest.approx(math.exp(3.9) * math.exp(-0.15))
    # … but the bounds are kept monotone: the high bound at 0 % (e^3.9 · e^0.3) exceeds e^3.9 · e^0.2
    assert curve[1].power_w_high == pytest.approx(math.exp(3.9) * math.exp(0.3))
    assert curve[2].power_w_high == pytest.approx(math.exp(4.4) * math.exp(0.1))
    assert model.curve(SPEC, levels=(1.0,))[0].power_w == pytest.approx(math.exp(4.6))


def test_model_file_with_other_features_is_refused() -> None:
    with pytest.raises(ConfigError, match="features"):
        PowerModel({"features": ["x"], "baseline": 0, "trees": [], "interval": {}})
    with pytest.raises(ConfigError, match="not a wattwise power model"):
        PowerModel({"features": list(FEATURES)})


def test_shipped_model_curve_is_plausible_and_monotone() -> None:
    model = load_model()
    curve = model.curve(SPEC)
    assert [p.utilization for p in curve] == list(LOAD_LEVELS)
    powers = [p.power_w for p in curve]
    assert powers == sorted(powers)
    # a 2-socket 150 W Cascade Lake server: SPECpower results of such machines idle at 50–150 W and reach
    # 300–600 W at full load
    assert 40 < powers[0] < 160 and 250 < powers[-1] < 650
    for p in curve:
        assert p.power_w_low < p.power_w < p.power_w_high
    assert 0.5 < (model.coverage or 0) <= 1
    assert model.interval_percent == 90


@settings(max_examples=40, deadline=None)
@given(tdp=st.floats(25, 300), chips=st.sampled_from([1, 2, 4]), cores=st.integers(2, 64),
       smt=st.sampled_from([1, 2]), memory=st.floats(4, 2048), base=st.floats(1.5, 3.8), year=st.integers(2007, 2030))
def test_shipped_model_monotone_for_any_machine(tdp: float, chips: int, cores: int, smt: int, memory: float,
                                                base: float, year: int) -> None:
    spec = MachineSpec(tdp_w=tdp, chips=chips, cores=cores * chips, threads=cores * chips * smt, base_ghz=base,
                       turbo_ghz=base + 0.5, memory_gb=memory, year=year)
    curve = load_model().curve(spec)
    for a, b in itertools.pairwise(curve):
        assert a.power_w <= b.power_w and a.power_w_low <= b.power_w_low and a.power_w_high <= b.power_w_high


def test_facts_of_a_bare_metal_server() -> None:
    root = MACHINES / "xeon-6248-2s"
    facts = read_machine_facts(root, (root / "lscpu.txt").read_text())
    assert facts.cpu_model == "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    assert (facts.chips, facts.cores, facts.threads) == (2, 40, 80)
    assert facts.base_ghz == 2.5 and facts.max_ghz == 3.9
    assert facts.memory_gb == pytest.approx(384.0)
    assert facts.hypervisor is None
    # without lscpu, sockets and cores come from cpuinfo's physical/core ids
    alone = read_machine_facts(root, "")
    assert (alone.chips, alone.cores, alone.threads) == (2, 40, 80)
    assert alone.sources["chips"].endswith("cpuinfo")


def test_bare_metal_found_and_assumed() -> None:
    root = MACHINES / "xeon-6248-2s"
    given_ = model_input(read_machine_facts(root, (root / "lscpu.txt").read_text()), tiny_model(), tdp_w=150,
                         tdp_source="table")
    assert given_.share == 1.0
    assert given_.spec == MachineSpec(tdp_w=150, chips=2, cores=40, threads=80, base_ghz=2.5, turbo_ghz=3.9,
                                      memory_gb=384.0, year=2020)  # 402653184 kB = 384 GiB
    assert set(given_.found) >= {"cpu", "tdp", "chips", "threads", "cores", "memory", "base clock"}
    assert set(given_.assumed) == {"year", "psu"}


def test_vm_is_a_share_of_an_assumed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATTWISE_VHOST_RATIO", raising=False)
    root = MACHINES / "kvm-2vcpu"
    facts = read_machine_facts(root, (root / "lscpu.txt").read_text())
    assert facts.hypervisor == "KVM" and facts.threads == 2
    given_ = model_input(facts, tiny_model())
    assert given_.share == pytest.approx(2 / 96)
    assert given_.spec.threads == 96 and given_.spec.chips == 2
    assert {"host", "vhost_ratio", "tdp"} <= set(given_.assumed)
    # configured like GMT's vhost_ratio
    monkeypatch.setenv("WATTWISE_VHOST_RATIO", "0.25")
    assert model_input(facts, tiny_model()).share == 0.25
    assert "vhost_ratio" in model_input(facts, tiny_model()).found
    monkeypatch.setenv("WATTWISE_VHOST_RATIO", "3")
    with pytest.raises(ConfigError, match="WATTWISE_VHOST_RATIO=3"):
        model_input(facts, tiny_model())
    # the cpuinfo flag alone also marks a VM
    assert read_machine_facts(root, "").hypervisor == "yes"


def test_default_curve_on_a_vm_fixture_says_what_it_assumed(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    for name in ("WATTWISE_VHOST_RATIO", "WATTWISE_TDP_W", "WATTWISE_POWER_CURVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WATTWISE_CALIBRATION_DIR", str(tmp_path))
    curve = default_power_curve(cpuinfo=MACHINES / "kvm-2vcpu" / "cpuinfo")
    assert curve.has_interval
    assert "VM share" in curve.source and "assumed" in curve.source
    host = load_model().curve(model_input(read_machine_facts(MACHINES / "kvm-2vcpu", ""), load_model()).spec)
    share = 2 / load_model().defaults["host"]["threads"]
    assert curve.power_w(1.0) == pytest.approx(host[-1].power_w * share)
    low, high = curve.interval_w(0.35) or (0, 0)
    assert low < curve.power_w(0.35) < high
    assert any(a.startswith("vhost_ratio") for a in curve.assumed)


def test_provider_reports_the_interval(tmp_path: Path) -> None:
    from wattwise.providers.procstat import USER_HZ

    curve = PowerCurve(((0.0, 100.0), (1.0, 200.0)), "t", (80.0, 170.0), (120.0, 240.0))
    stat = tmp_path / "stat"
    stat.write_text(f"cpu  0 0 0 {USER_HZ} 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")
    provider = EstimatedPowerProvider(curve, proc_root=tmp_path)
    provider.open()
    stat.write_text(f"cpu  {USER_HZ} 0 0 {2 * USER_HZ} 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")  # half busy since
    assert [s.name for s in provider.specs()] == ["estimated_power_w", "estimated_power_low_w",
                                                  "estimated_power_high_w"]
    assert provider.read() == [pytest.approx(150.0), pytest.approx(125.0), pytest.approx(180.0)]


def test_interval_of_phase_figures_by_hand() -> None:
    # 1000 J in all: 800 J estimated (interval 600–1100 J) + 200 J measured GPU energy
    figures = {"energy_j": 1000.0, "mean_power_w": 100.0, "carbon_g": 0.1, "unit_energy_j": None}
    out = estimate_interval(figures, 800.0, 600.0, 1100.0)
    assert out["energy_j_low"] == pytest.approx(800.0) and out["energy_j_high"] == pytest.approx(1300.0)
    assert out["mean_power_w_low"] == pytest.approx(80.0) and out["mean_power_w_high"] == pytest.approx(130.0)
    assert out["carbon_g_low"] == pytest.approx(0.08) and out["carbon_g_high"] == pytest.approx(0.13)
    assert out["unit_energy_j_low"] is None
    assert estimate_interval(figures, 800.0, None, None) == {}


def test_format_estimate() -> None:
    assert format_estimate(182.4, 150.2, 214.0, "W") == "≈ 182 W (150–214)"
    assert format_estimate(1234.0, 1010.0, 1450.0, "J") == "≈ 1.23 kJ (1.01–1.45)"
    assert format_estimate(924e-6, 753e-6, 1.14e-3, "g") == "≈ 924 µg (753–1140)"
    assert format_estimate(182.4, None, None, "W") == "≈ 182 W"
    assert format_estimate(None, None, None, "W") == "–"


def test_described_machine_checks_its_values() -> None:
    facts = described_facts("AMD EPYC 7763 64-Core Processor", chips=2, threads=256)
    assert facts.vendor == "AuthenticAMD"
    with pytest.raises(ConfigError, match="--threads"):
        described_facts("x", cores=8, threads=4)
    with pytest.raises(ConfigError, match="--memory-gb must be positive"):
        described_facts("x", memory_gb=-1)


def test_calibration_csv_with_interval_round_trips(tmp_path: Path) -> None:
    curve = PowerCurve(((0.0, 50.0), (0.5, 90.0), (1.0, 120.0)), "t", (45.0, 85.0, 110.0), (55.0, 95.0, 130.0))
    path = tmp_path / "cal.csv"
    curve.to_csv(path)
    back = PowerCurve.from_csv(path)
    assert back.points == curve.points and back.low == curve.low and back.high == curve.high
    path.write_text("utilization,power_w,power_w_low,power_w_high\n0,50,60,70\n1,100,90,110\n")
    with pytest.raises(ConfigError, match=r"cal.csv:2: power_w=50 must be ≥ 0 and lie within"):
        PowerCurve.from_csv(path)
