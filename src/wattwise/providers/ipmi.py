"""Whole-machine power from the BMC via IPMI DCMI (Get Power Reading).

Two command-line tools are understood:

* ipmitool: ``ipmitool dcmi power reading`` prints, after a blank line::

      Instantaneous power reading:                   220 Watts
      Minimum during sampling period:                 90 Watts
      ...
      Power reading state is:                   activated

* FreeIPMI: ``ipmi-dcmi --get-system-power-statistics`` prints::

      Current Power                        : 220 Watts
      ...
      Power Measurement                    : Active

The BMC's power is measured at the power supplies (AC side) and updated about once a second, so
the default interval is 1 s. A BMC without DCMI power management answers with a completion code
that the tools print on stderr ("DCMI request failed because: Invalid command (c1)",
"ipmi_cmd_dcmi_get_power_reading: command invalid or unsupported"): that makes the provider
unavailable, with the tool's message as the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wattwise.errors import DcmiUnavailable as DcmiUnavailable
from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError, Scope

METRIC = "ipmi_power_w"
IPMITOOL_COMMAND = ("ipmitool", "dcmi", "power", "reading")
FREEIPMI_COMMAND = ("ipmi-dcmi", "--get-system-power-statistics")
#: in-band device nodes of the Linux IPMI driver (ipmi_devintf), as ipmitool looks for them
IPMI_DEVICES = ("/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0")
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CommandResult:
    """What a command printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def text(self) -> str:
        return self.stdout + ("\n" + self.stderr if self.stderr else "")


#: runs a command and returns its result; may also return a str (taken as stdout, exit code 0)
Runner = Callable[[Sequence[str]], CommandResult | str]


def run_command(command: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandResult:
    """Run `command` without a shell; ProviderError if it cannot be started or times out."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ProviderError(f"{command[0]}: command not found") from exc
    except PermissionError as exc:
        raise ProviderError(f"{command[0]}: permission denied") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProviderError(f"{' '.join(command)} did not finish within {timeout_s:g} s") from exc
    except OSError as exc:
        raise ProviderError(f"cannot run {' '.join(command)}: {exc}") from exc
    return CommandResult(done.returncode, done.stdout, done.stderr)


def call_runner(runner: Runner, command: Sequence[str]) -> CommandResult:
    result = runner(list(command))
    return CommandResult(0, result) if isinstance(result, str) else result


@dataclass(frozen=True)
class DcmiPowerReading:
    power_w: float  # instantaneous ("current") power
    minimum_w: float | None = None
    maximum_w: float | None = None
    average_w: float | None = None
    sampling_period_s: float | None = None
    active: bool = True  # "Power reading state is: activated" / "Power Measurement : Active"


# Messages the tools print when the BMC rejects the command or has no BMC.
_UNSUPPORTED_MARKERS = (
    "dcmi request failed because",
    "unable to get dcmi information",
    "a valid dcmi command was not returned",
    "ipmi_cmd_dcmi_get_power_reading",
    "invalid command",
    "not supported",
    "unsupported",
    "could not open device",
    "could not find inband device",
    "no response from bmc",
)


def _excerpt(text: str, limit: int = 300) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _unsupported_message(text: str) -> str | None:
    for line in text.splitlines():
        lowered = line.strip().lower()
        if lowered and any(marker in lowered for marker in _UNSUPPORTED_MARKERS):
            return line.strip()
    return None


def _field(text: str, label: str) -> str | None:
    match = re.search(rf"^\s*{label}\s*:\s*(.*?)\s*$", text, re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else None


def _watts(value: str | None, label: str, text: str) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*watts?", value, re.IGNORECASE)
    if not match:
        raise ProviderError(f"cannot read the {label!r} value {value!r} in DCMI output {_excerpt(text)}")
    return float(match.group(1))


def _no_reading(text: str, tool_output: str) -> ProviderError:
    """Why a tool's output holds no power reading: the BMC refuses (DcmiUnavailable), or it is not that output."""
    unsupported = _unsupported_message(text)
    if unsupported:
        return DcmiUnavailable(f"BMC gives no DCMI power reading: {unsupported}")
    return ProviderError(f"not {tool_output} output: {_excerpt(text)}")


def parse_ipmitool_dcmi(text: str) -> DcmiPowerReading:
    """Parse ``ipmitool dcmi power reading`` output.

    Raises DcmiUnavailable for the tool's "not supported"-style errors, ProviderError naming the
    text for anything else that is not a power reading.
    """
    power = _watts(_field(text, "Instantaneous power reading"), "Instantaneous power reading", text)
    if power is None:
        raise _no_reading(text, "ipmitool 'dcmi power reading'")
    period_text = _field(text, "Sampling period")
    period_s: float | None = None
    if period_text:
        match = re.match(r"(\d+)\s*(seconds?|milliseconds?)", period_text, re.IGNORECASE)
        if match:
            period_s = int(match.group(1)) * (1e-3 if match.group(2).lower().startswith("milli") else 1.0)
    state = (_field(text, "Power reading state is") or "activated").lower()
    return DcmiPowerReading(
        power_w=power,
        minimum_w=_watts(_field(text, "Minimum during sampling period"), "Minimum", text),
        maximum_w=_watts(_field(text, "Maximum during sampling period"), "Maximum", text),
        average_w=_watts(_field(text, "Average power reading over sample period"), "Average", text),
        sampling_period_s=period_s,
        active=state.startswith("activ"),  # "activated" vs "deactivated"
    )


def parse_freeipmi_dcmi(text: str) -> DcmiPowerReading:
    """Parse FreeIPMI ``ipmi-dcmi --get-system-power-statistics`` output (same errors as above)."""
    power = _watts(_field(text, "Current Power"), "Current Power", text)
    if power is None:
        raise _no_reading(text, "ipmi-dcmi --get-system-power-statistics")
    period_text = _field(text, "Statistics reporting time period")
    period_s: float | None = None
    if period_text:
        match = re.match(r"(\d+)\s*milliseconds?", period_text, re.IGNORECASE)
        if match:
            period_s = int(match.group(1)) / 1000
    state = (_field(text, "Power Measurement") or "Active").lower()
    return DcmiPowerReading(
        power_w=power,
        minimum_w=_watts(_field(text, "Minimum Power over sampling duration"), "Minimum Power", text),
        maximum_w=_watts(_field(text, "Maximum Power over sampling duration"), "Maximum Power", text),
        average_w=_watts(_field(text, "Average Power over sampling duration"), "Average Power", text),
        sampling_period_s=period_s,
        active=state == "active",  # "Active" vs "Not Available"
    )


def parse_dcmi_power(text: str) -> DcmiPowerReading:
    """Parse the output of either tool, recognised by its labels."""
    if re.search(r"^\s*Current Power\s*:", text, re.MULTILINE):
        return parse_freeipmi_dcmi(text)
    return parse_ipmitool_dcmi(text)


def default_command() -> list[str] | None:
    """ipmitool if installed, else FreeIPMI's ipmi-dcmi, else None."""
    for command in (IPMITOOL_COMMAND, FREEIPMI_COMMAND):
        if shutil.which(command[0]):
            return list(command)
    return None


class IpmiDcmiProvider(Provider):
    """Machine (wall) power in watts from the BMC, one gauge."""

    name = "ipmi"
    description = "Whole-machine power from the BMC via IPMI DCMI (ipmitool or FreeIPMI ipmi-dcmi)"
    scope = Scope.MACHINE
    default_interval_s = 1.0
    metric_units = {METRIC: "W"}

    def __init__(
        self,
        command: Sequence[str] | None = None,
        runner: Runner | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        check_device: bool | None = None,
    ) -> None:
        """`command`: the tool and its arguments (default: ipmitool, else ipmi-dcmi, found on PATH;
        add ``-I lanplus -H ...`` yourself for a remote BMC). `runner` runs it (default: a subprocess
        with `timeout_s`). `check_device`: look for /dev/ipmi0 before running (default: only for
        the auto-detected local command without a custom runner)."""
        self.command = list(command) if command is not None else None
        self.timeout_s = timeout_s
        self._runner: Runner = runner if runner is not None else self._run_subprocess
        local_default = command is None and runner is None
        self._check_device = check_device if check_device is not None else local_default
        self._availability: Availability | None = None
        self._opened = False
        self.last_reading: DcmiPowerReading | None = None

    def _run_subprocess(self, command: Sequence[str]) -> CommandResult:
        return run_command(command, self.timeout_s)

    def _resolved_command(self) -> list[str]:
        if self.command is None:
            found = default_command()
            if found is None:
                raise DcmiUnavailable(
                    "neither ipmitool nor ipmi-dcmi (FreeIPMI) is installed: install the ipmitool or "
                    "freeipmi-tools package")
            self.command = found
        return self.command

    def query(self) -> DcmiPowerReading:
        """Run the command once and parse its output."""
        command = self._resolved_command()
        result = call_runner(self._runner, command)
        if result.returncode != 0:
            unsupported = _unsupported_message(result.text)
            if unsupported:
                raise DcmiUnavailable(f"BMC gives no DCMI power reading: {unsupported}")
            raise ProviderError(f"{' '.join(command)} exited with status {result.returncode}: "
                                f"{_excerpt(result.text)}")
        reading = parse_dcmi_power(result.stdout if result.stdout.strip() else result.text)
        self.last_reading = reading
        return reading

    def availability(self) -> Availability:
        if self._availability is not None:
            return self._availability
        try:
            if self._check_device and not any(os.path.exists(d) for d in IPMI_DEVICES):
                availability = Availability.no(
                    "no IPMI device (/dev/ipmi0): no BMC, or the ipmi_si and ipmi_devintf modules are not "
                    "loaded")
            else:
                reading = self.query()
                if reading.active:
                    availability = Availability.yes(f"{' '.join(self.command or [])}: {reading.power_w:g} W")
                else:
                    availability = Availability.no("the BMC reports that power measurement is not active")
        except ProviderError as exc:
            availability = Availability.no(str(exc))
        except Exception as exc:  # availability must never raise
            availability = Availability.no(f"cannot query the BMC: {exc}")
        self._availability = availability
        return availability

    def open(self) -> None:
        self._resolved_command()
        self._opened = True

    def specs(self) -> Sequence[MetricSpec]:
        return [MetricSpec(METRIC, "W", Kind.GAUGE, "bmc",
                           description="whole-machine power at the power supplies, from the BMC (DCMI)")]

    def read(self) -> Sequence[float | None]:
        """The instantaneous power; None while the BMC reports measurement as not active."""
        reading = self.query()
        return [reading.power_w if reading.active else None]

    def close(self) -> None:
        self._opened = False
