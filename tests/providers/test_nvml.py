"""NvmlProvider with a small stand-in for the pynvml module (no NVIDIA GPU on the test machine).

The stand-in implements only the pynvml functions the provider calls, with pynvml's units (mJ, mW,
bytes, percent) and its error style (NVMLError carrying an NVML return code in `.value`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from wattwise.providers.base import Kind, ProviderError, Scope
from wattwise.providers.nvml import INSTALL_HINT, NvmlProvider, short_uuid

NOT_SUPPORTED, NO_PERMISSION, DRIVER_NOT_LOADED, TIMEOUT, LIBRARY_NOT_FOUND, GPU_IS_LOST = 3, 4, 9, 10, 12, 15


class NVMLError(Exception):
    _names = {NOT_SUPPORTED: "Not Supported", NO_PERMISSION: "Insufficient Permissions",
              DRIVER_NOT_LOADED: "Driver Not Loaded", TIMEOUT: "Timeout",
              LIBRARY_NOT_FOUND: "NVML Shared Library Not Found", GPU_IS_LOST: "GPU is lost"}

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self._names.get(self.value, f"NVML Error with code {self.value}")


@dataclass
class Gpu:
    uuid: str | bytes
    name: str
    energy_mj: list[int] | None = None  # successive counter values; None: not supported (pre-Volta)
    power_mw: int | None = 0  # None: not supported
    utilization_pct: int = 0
    memory_used_b: int = 0
    fail_with: dict[str, int] = field(default_factory=dict)  # function name -> error code


class FakeNvml:
    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
    NVML_ERROR_DRIVER_NOT_LOADED = DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = LIBRARY_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = GPU_IS_LOST

    def __init__(self, gpus: list[Gpu], init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.initialized = 0

    def _check(self, gpu: Gpu, function: str) -> None:
        if function in gpu.fail_with:
            raise NVMLError(gpu.fail_with[function])

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        assert self.initialized > 0, "nvmlShutdown without nvmlInit"
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        assert self.initialized
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Gpu:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, gpu: Gpu) -> str | bytes:
        return gpu.uuid

    def nvmlDeviceGetName(self, gpu: Gpu) -> str:
        return gpu.name

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: Gpu) -> int:
        self._check(gpu, "energy")
        if gpu.energy_mj is None:
            raise NVMLError(NOT_SUPPORTED)
        return gpu.energy_mj.pop(0) if len(gpu.energy_mj) > 1 else gpu.energy_mj[0]

    def nvmlDeviceGetPowerUsage(self, gpu: Gpu) -> int:
        self._check(gpu, "power")
        if gpu.power_mw is None:
            raise NVMLError(NOT_SUPPORTED)
        return gpu.power_mw

    def nvmlDeviceGetUtilizationRates(self, gpu: Gpu) -> SimpleNamespace:
        self._check(gpu, "utilization")
        return SimpleNamespace(gpu=gpu.utilization_pct, memory=0)

    def nvmlDeviceGetMemoryInfo(self, gpu: Gpu) -> SimpleNamespace:
        self._check(gpu, "memory")
        return SimpleNamespace(total=80 * 2**30, free=80 * 2**30 - gpu.memory_used_b, used=gpu.memory_used_b)


A100 = "GPU-5f7c2e3a-91d4-4c61-b0b4-2f4e0d7a9c11"
P100 = "GPU-0b8e7d21-3c55-11e9-a2b1-6d2c5f1e0a77"


def test_class_attributes_and_no_argument_constructor() -> None:
    provider = NvmlProvider()
    assert provider.name == "nvml"
    assert provider.scope is Scope.MACHINE
    assert provider.metric_units == {"gpu_energy_j": "J", "gpu_power_w": "W",
                                     "gpu_utilization_ratio": "ratio", "gpu_memory_used_b": "B"}
    availability = provider.availability()  # real pynvml (or none): must answer, not raise
    if not availability.available:
        assert availability.reason


def test_energy_counter_and_power_only_gpus() -> None:
    nvml = FakeNvml([
        Gpu(A100, "NVIDIA A100-SXM4-80GB", energy_mj=[1_000_000, 1_000_000, 1_250_500, 1_400_000]),
        Gpu(P100, "Tesla P100-PCIE-16GB", energy_mj=None, power_mw=187_250),
    ])
    provider = NvmlProvider(nvml=nvml)
    assert provider.availability().available
    assert provider.availability().reason == "2 NVIDIA GPUs"
    assert nvml.initialized == 0  # availability shuts NVML down again
    provider.open()
    specs = provider.specs()
    assert [(s.name, s.unit, s.kind, s.detail) for s in specs] == [
        ("gpu_energy_j", "J", Kind.COUNTER, "gpu0:5f7c2e3a"),
        ("gpu_power_w", "W", Kind.GAUGE, "gpu1:0b8e7d21"),
    ]
    assert "A100" in specs[0].description
    assert provider.read() == [0.0, 187.25]
    assert provider.read() == [250.5, 187.25]
    assert provider.read() == [400.0, 187.25]
    provider.close()
    assert nvml.initialized == 0


def test_energy_counter_reset_by_driver_reload() -> None:
    nvml = FakeNvml([Gpu(A100, "A100", energy_mj=[5_000_000, 5_000_000, 6_000_000, 200_000, 700_000])])
    provider = NvmlProvider(nvml=nvml)
    provider.open()
    assert provider.read() == [0.0]
    assert provider.read() == [1000.0]
    assert provider.read() == [1200.0]  # the counter restarted: its new value counts as new energy
    assert provider.read() == [1700.0]


def test_utilization_and_memory_are_optional() -> None:
    gpu = Gpu(A100, "A100", energy_mj=[0], utilization_pct=87, memory_used_b=12 * 2**30)
    plain = NvmlProvider(nvml=FakeNvml([gpu]))
    plain.open()
    assert [s.name for s in plain.specs()] == ["gpu_energy_j"]
    provider = NvmlProvider(nvml=FakeNvml([gpu]), utilization=True, memory=True)
    provider.open()
    assert [(s.name, s.unit) for s in provider.specs()] == [
        ("gpu_energy_j", "J"), ("gpu_utilization_ratio", "ratio"), ("gpu_memory_used_b", "B")]
    assert provider.read() == [0.0, 0.87, 12 * 2**30]


def test_unsupported_optional_metric_is_left_out() -> None:
    gpu = Gpu(A100, "A100", energy_mj=[0], fail_with={"utilization": NOT_SUPPORTED})
    provider = NvmlProvider(nvml=FakeNvml([gpu]), utilization=True)
    provider.open()
    assert [s.name for s in provider.specs()] == ["gpu_energy_j"]


def test_gpu_with_neither_energy_nor_power() -> None:
    nvml = FakeNvml([Gpu(A100, "GRID vGPU", energy_mj=None, power_mw=None)])
    with pytest.raises(ProviderError, match="no NVIDIA GPU reports energy or power"):
        NvmlProvider(nvml=nvml).open()
    assert nvml.initialized == 0


def test_no_driver_and_no_gpu() -> None:
    no_library = NvmlProvider(nvml=FakeNvml([], init_error=LIBRARY_NOT_FOUND)).availability()
    assert not no_library.available
    assert no_library.reason == ("no NVIDIA driver (libnvidia-ml.so.1 not found): "
                                 "NVML Shared Library Not Found")
    not_loaded = NvmlProvider(nvml=FakeNvml([], init_error=DRIVER_NOT_LOADED)).availability()
    assert not_loaded.reason == "no NVIDIA driver loaded: Driver Not Loaded"
    no_gpu = NvmlProvider(nvml=FakeNvml([])).availability()
    assert no_gpu.reason == "the NVIDIA driver is loaded but reports no GPU"
    with pytest.raises(ProviderError, match="no NVIDIA driver loaded"):
        NvmlProvider(nvml=FakeNvml([], init_error=DRIVER_NOT_LOADED)).open()


def test_nvidia_ml_py_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    availability = NvmlProvider().availability()
    assert not availability.available
    assert availability.reason == INSTALL_HINT
    assert INSTALL_HINT == "nvidia-ml-py is not installed (pip install 'wattwise[gpu]')"
    with pytest.raises(ProviderError, match="nvidia-ml-py is not installed"):
        NvmlProvider().open()


def test_real_pynvml_without_driver() -> None:
    pynvml = pytest.importorskip("pynvml")
    availability = NvmlProvider(nvml=pynvml).availability()
    if availability.available:
        pytest.skip("this machine has an NVIDIA GPU")
    assert availability.reason.startswith("no NVIDIA driver")


def test_lost_gpu_raises_and_transient_error_gives_none() -> None:
    gpu0 = Gpu(A100, "A100", energy_mj=[0, 0, 3_000])
    gpu1 = Gpu(P100, "P100", energy_mj=None, power_mw=50_000)
    nvml = FakeNvml([gpu0, gpu1])
    provider = NvmlProvider(nvml=nvml)
    provider.open()
    gpu1.fail_with["power"] = TIMEOUT
    assert provider.read() == [0.0, None]
    del gpu1.fail_with["power"]
    assert provider.read() == [3.0, 50.0]
    gpu0.fail_with["energy"] = GPU_IS_LOST
    with pytest.raises(ProviderError, match="gpu0:5f7c2e3a: NVML error: GPU is lost"):
        provider.read()
    provider.close()
    assert nvml.initialized == 0


def test_permission_error_while_opening() -> None:
    nvml = FakeNvml([Gpu(A100, "A100", fail_with={"energy": NO_PERMISSION})])
    with pytest.raises(ProviderError, match="permission denied by NVML"):
        NvmlProvider(nvml=nvml).open()
    assert nvml.initialized == 0


def test_device_selection_and_bytes_uuid() -> None:
    nvml = FakeNvml([Gpu(A100, "A100", energy_mj=[0]), Gpu(P100.encode(), "P100", energy_mj=[0])])
    provider = NvmlProvider(nvml=nvml, devices=[1])
    provider.open()
    assert [s.detail for s in provider.specs()] == ["gpu1:0b8e7d21"]
    with pytest.raises(ProviderError, match="GPU index 2 does not exist"):
        NvmlProvider(nvml=nvml, devices=[2]).open()
    assert short_uuid("MIG-9e3d7a10-7f0c-5b3c-8f0e-1a2b3c4d5e6f") == "9e3d7a10"
