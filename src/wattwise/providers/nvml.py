"""NVIDIA GPU energy and power through NVML (the `nvidia-ml-py` package, imported as `pynvml`).

Per GPU, the best source it supports:

* ``nvmlDeviceGetTotalEnergyConsumption`` (Volta and newer): millijoules since the driver was
  loaded, 64 bit; exposed as the counter ``gpu_energy_j`` (J, cumulative since :meth:`open`);
* else ``nvmlDeviceGetPowerUsage``: milliwatts, exposed as the gauge ``gpu_power_w``.

Optionally ``gpu_utilization_ratio`` (``nvmlDeviceGetUtilizationRates().gpu`` / 100) and
``gpu_memory_used_b`` (``nvmlDeviceGetMemoryInfo().used``). The NVML module is a constructor
argument so that a machine without a GPU can test the provider with a stand-in.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wattwise.providers.base import (
    Availability,
    CounterAccumulator,
    Kind,
    MetricSpec,
    Provider,
    ProviderError,
    Scope,
)

ENERGY_METRIC = "gpu_energy_j"
POWER_METRIC = "gpu_power_w"
UTILIZATION_METRIC = "gpu_utilization_ratio"
MEMORY_METRIC = "gpu_memory_used_b"
INSTALL_HINT = "nvidia-ml-py is not installed (pip install 'wattwise[gpu]')"

# NVML return codes (nvml.h), used when the module does not define the constant
_CODES = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_RESET_REQUIRED": 16,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
}
#: errors after which the GPU or the library cannot be read again without reopening
_FATAL = ("NVML_ERROR_UNINITIALIZED", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIBRARY_NOT_FOUND",
          "NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_RESET_REQUIRED", "NVML_ERROR_LIB_RM_VERSION_MISMATCH")
_UNSUPPORTED = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")


def load_nvml() -> Any:
    """Import pynvml; ProviderError if nvidia-ml-py is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise ProviderError(INSTALL_HINT) from exc


def short_uuid(uuid: str | bytes) -> str:
    """'GPU-5f7c2e3a-91d4-...' -> '5f7c2e3a'."""
    text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    for prefix in ("GPU-", "MIG-"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text[:8]


@dataclass
class _Column:
    spec: MetricSpec
    read: Callable[[], float]


class NvmlProvider(Provider):
    """Energy (or power) of each NVIDIA GPU, optionally utilization and memory."""

    name = "nvml"
    description = "NVIDIA GPU energy (Volta+) or power via NVML (nvidia-ml-py), per GPU"
    scope = Scope.MACHINE
    default_interval_s = 0.1
    metric_units = {ENERGY_METRIC: "J", POWER_METRIC: "W", UTILIZATION_METRIC: "ratio", MEMORY_METRIC: "B"}

    def __init__(
        self,
        nvml: Any = None,
        utilization: bool = False,
        memory: bool = False,
        devices: Sequence[int] | None = None,
    ) -> None:
        """`nvml`: the pynvml module or an object with the same functions (default: import pynvml).
        `devices`: GPU indices to read (default: all)."""
        self._nvml = nvml
        self.utilization = utilization
        self.memory = memory
        self.devices = list(devices) if devices is not None else None
        self._columns: list[_Column] = []
        self._initialized = False

    # --- helpers -------------------------------------------------------------------------------

    def _module(self) -> Any:
        if self._nvml is None:
            self._nvml = load_nvml()
        return self._nvml

    def _code(self, name: str) -> int:
        return int(getattr(self._nvml, name, _CODES[name]))

    def _is_nvml_error(self, exc: BaseException) -> bool:
        error_class = getattr(self._nvml, "NVMLError", None)
        return isinstance(error_class, type) and isinstance(exc, error_class)

    def _has_code(self, exc: BaseException, names: Sequence[str]) -> bool:
        value = getattr(exc, "value", None)
        return value is not None and value in {self._code(n) for n in names}

    def _reason(self, exc: BaseException, what: str) -> str:
        if self._has_code(exc, ("NVML_ERROR_LIBRARY_NOT_FOUND",)):
            return f"no NVIDIA driver (libnvidia-ml.so.1 not found): {exc}"
        if self._has_code(exc, ("NVML_ERROR_DRIVER_NOT_LOADED",)):
            return f"no NVIDIA driver loaded: {exc}"
        if self._has_code(exc, ("NVML_ERROR_NO_PERMISSION",)):
            return f"{what}: permission denied by NVML ({exc})"
        return f"{what}: NVML error: {exc}"

    def _init(self) -> Any:
        nvml = self._module()
        try:
            nvml.nvmlInit()
        except Exception as exc:
            if self._is_nvml_error(exc):
                raise ProviderError(self._reason(exc, "nvmlInit")) from exc
            raise
        self._initialized = True
        return nvml

    def _shutdown(self) -> None:
        if self._initialized:
            self._initialized = False
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:
                if not self._is_nvml_error(exc):
                    raise

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except Exception as exc:
            if self._is_nvml_error(exc):
                raise ProviderError(self._reason(exc, what)) from exc
            raise

    def _probe(self, function: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, value) if supported, (False, None) if NVML says not supported; other errors raise."""
        try:
            return True, function()
        except Exception as exc:
            if self._is_nvml_error(exc) and self._has_code(exc, _UNSUPPORTED):
                return False, None
            raise

    # --- protocol --------------------------------------------------------------------------------

    def availability(self) -> Availability:
        try:
            nvml = self._init()
            try:
                count = int(self._call("nvmlDeviceGetCount", nvml.nvmlDeviceGetCount))
            finally:
                self._shutdown()
        except ProviderError as exc:
            return Availability.no(str(exc))
        except Exception as exc:  # availability must never raise
            return Availability.no(f"NVML is not usable: {exc}")
        if count == 0:
            return Availability.no("the NVIDIA driver is loaded but reports no GPU")
        return Availability.yes(f"{count} NVIDIA GPU{'s' if count != 1 else ''}")

    def open(self) -> None:
        nvml = self._init()
        try:
            self._columns = self._discover(nvml)
        except Exception as exc:
            self._shutdown()
            if self._is_nvml_error(exc):
                raise ProviderError(self._reason(exc, "reading the GPUs")) from exc
            raise
        if not self._columns:
            self._shutdown()
            raise ProviderError("no NVIDIA GPU reports energy or power through NVML")

    def _discover(self, nvml: Any) -> list[_Column]:
        count = int(nvml.nvmlDeviceGetCount())
        indices = self.devices if self.devices is not None else list(range(count))
        columns: list[_Column] = []
        for index in indices:
            if not 0 <= index < count:
                raise ProviderError(f"GPU index {index} does not exist (NVML reports {count} GPUs)")
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            gpu_name = nvml.nvmlDeviceGetName(handle) if hasattr(nvml, "nvmlDeviceGetName") else "GPU"
            gpu_name = gpu_name.decode() if isinstance(gpu_name, bytes) else str(gpu_name)
            detail = f"gpu{index}:{short_uuid(uuid)}"
            columns.extend(self._device_columns(nvml, handle, detail, gpu_name))
        return columns

    def _device_columns(self, nvml: Any, handle: Any, detail: str, gpu_name: str) -> list[_Column]:
        columns: list[_Column] = []
        supported, first_mj = self._probe(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        if supported:
            accumulator = CounterAccumulator(float(first_mj), None)

            def energy_j() -> float:
                return accumulator.update(float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))) / 1000

            columns.append(_Column(
                MetricSpec(ENERGY_METRIC, "J", Kind.COUNTER, detail,
                           description=f"{gpu_name} energy (nvmlDeviceGetTotalEnergyConsumption)"),
                energy_j))
        else:
            supported, _ = self._probe(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
            if supported:
                columns.append(_Column(
                    MetricSpec(POWER_METRIC, "W", Kind.GAUGE, detail,
                               description=f"{gpu_name} board power (nvmlDeviceGetPowerUsage)"),
                    lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000))
        if self.utilization:
            supported, _ = self._probe(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
            if supported:
                columns.append(_Column(
                    MetricSpec(UTILIZATION_METRIC, "ratio", Kind.GAUGE, detail,
                               description=f"{gpu_name}: share of time a kernel was running"),
                    lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100))
        if self.memory:
            supported, _ = self._probe(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
            if supported:
                columns.append(_Column(
                    MetricSpec(MEMORY_METRIC, "B", Kind.GAUGE, detail,
                               description=f"{gpu_name}: device memory in use"),
                    lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).used)))
        return columns

    def specs(self) -> Sequence[MetricSpec]:
        return [c.spec for c in self._columns]

    def read(self) -> Sequence[float | None]:
        """One value per spec. A value NVML cannot give this time is None; a lost GPU or driver
        raises ProviderError."""
        if not self._columns:
            raise ProviderError("NvmlProvider.read() called before open()")
        values: list[float | None] = []
        for column in self._columns:
            try:
                values.append(float(column.read()))
            except Exception as exc:
                if not self._is_nvml_error(exc):
                    raise
                if self._has_code(exc, _FATAL):
                    raise ProviderError(self._reason(exc, column.spec.detail)) from exc
                values.append(None)
        return values

    def close(self) -> None:
        self._columns = []
        self._shutdown()
