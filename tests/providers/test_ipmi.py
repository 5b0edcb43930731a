"""IpmiDcmiProvider and the DCMI parsers on recorded ipmitool / FreeIPMI outputs."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest

from wattwise.providers.base import Kind, ProviderError, Scope
from wattwise.providers.ipmi import (
    CommandResult,
    DcmiPowerReading,
    DcmiUnavailable,
    IpmiDcmiProvider,
    parse_dcmi_power,
    parse_freeipmi_dcmi,
    parse_ipmitool_dcmi,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "ipmi"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class Recorded:
    """A runner that replays recorded outputs in turn and remembers the commands it was given."""

    def __init__(self, *results: CommandResult | str) -> None:
        self.results = list(results)
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> CommandResult | str:
        self.commands.append(list(command))
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


def test_class_attributes_and_no_argument_constructor() -> None:
    provider = IpmiDcmiProvider()
    assert provider.name == "ipmi"
    assert provider.scope is Scope.MACHINE
    assert provider.default_interval_s == 1.0
    assert provider.metric_units == {"ipmi_power_w": "W"}
    availability = provider.availability()  # this machine has no BMC: must say so, not raise
    if not availability.available:
        assert availability.reason


def test_parse_ipmitool_output() -> None:
    reading = parse_ipmitool_dcmi(fixture("ipmitool_power_reading.txt"))
    assert reading == DcmiPowerReading(power_w=312.0, minimum_w=96.0, maximum_w=488.0, average_w=305.0,
                                       sampling_period_s=1.0, active=True)


def test_parse_freeipmi_output() -> None:
    reading = parse_freeipmi_dcmi(fixture("freeipmi_power_statistics.txt"))
    assert reading == DcmiPowerReading(power_w=187.0, minimum_w=12.0, maximum_w=1292.0, average_w=194.0,
                                       sampling_period_s=1.0, active=True)


def test_parse_recognises_the_tool() -> None:
    assert parse_dcmi_power(fixture("ipmitool_power_reading.txt")).power_w == 312.0
    assert parse_dcmi_power(fixture("freeipmi_power_statistics.txt")).power_w == 187.0
    # the bare line, as in the task's examples
    assert parse_ipmitool_dcmi("Instantaneous power reading: 123 Watts").power_w == 123.0
    assert parse_freeipmi_dcmi("Current Power : 123 Watts").power_w == 123.0


def test_measurement_not_active() -> None:
    assert parse_ipmitool_dcmi(fixture("ipmitool_power_reading_deactivated.txt")).active is False
    assert parse_freeipmi_dcmi(fixture("freeipmi_power_statistics_not_available.txt")).active is False
    for name in ("ipmitool_power_reading_deactivated.txt", "freeipmi_power_statistics_not_available.txt"):
        provider = IpmiDcmiProvider(command=["tool"], runner=Recorded(fixture(name)))
        availability = provider.availability()
        assert not availability.available
        assert availability.reason == "the BMC reports that power measurement is not active"
        provider.open()
        assert provider.read() == [None]  # a zero from an inactive BMC is not a measurement


@pytest.mark.parametrize("parse", [parse_ipmitool_dcmi, parse_freeipmi_dcmi])
def test_garbage_names_the_offending_text(parse) -> None:
    with pytest.raises(ProviderError, match="502 Bad Gateway") as caught:
        parse(fixture("garbage.txt"))
    assert not isinstance(caught.value, DcmiUnavailable)
    with pytest.raises(ProviderError):
        parse("")


def test_garbled_value_names_the_value() -> None:
    with pytest.raises(ProviderError, match=r"'ERR Watts'"):
        parse_ipmitool_dcmi(fixture("ipmitool_garbled_value.txt"))


def test_not_supported_outputs_are_unavailability() -> None:
    with pytest.raises(DcmiUnavailable, match=r"Invalid command \(c1\)"):
        parse_ipmitool_dcmi(fixture("ipmitool_invalid_command.stderr"))
    with pytest.raises(DcmiUnavailable, match="command invalid or unsupported"):
        parse_freeipmi_dcmi(fixture("freeipmi_unsupported.stderr"))
    cases = {
        "ipmitool_invalid_command.stderr": "DCMI request failed because: Invalid command (c1)",
        "ipmitool_no_device.stderr": "Could not open device at /dev/ipmi0",
        "freeipmi_unsupported.stderr": "ipmi_cmd_dcmi_get_power_reading: command invalid or unsupported",
        "freeipmi_no_device.stderr": "could not find inband device",
    }
    for name, message in cases.items():
        provider = IpmiDcmiProvider(command=["tool"], runner=Recorded(CommandResult(1, "\n", fixture(name))))
        availability = provider.availability()
        assert not availability.available
        assert availability.reason.startswith("BMC gives no DCMI power reading: " + message)
        with pytest.raises(DcmiUnavailable):
            provider.read()


def test_failing_command_with_unknown_message() -> None:
    provider = IpmiDcmiProvider(command=["tool"], runner=Recorded(CommandResult(3, "", "Segmentation fault")))
    availability = provider.availability()
    assert availability.reason == "tool exited with status 3: 'Segmentation fault'"


def test_reads_through_a_runner() -> None:
    changed = fixture("ipmitool_power_reading.txt").replace(" 312 Watts", " 298 Watts")
    runner = Recorded(fixture("ipmitool_power_reading.txt"), fixture("freeipmi_power_statistics.txt"),
                      CommandResult(0, changed))
    provider = IpmiDcmiProvider(command=["ipmitool", "-I", "open", "dcmi", "power", "reading"], runner=runner)
    provider.open()
    [spec] = provider.specs()
    assert (spec.name, spec.unit, spec.kind, spec.detail) == ("ipmi_power_w", "W", Kind.GAUGE, "bmc")
    assert provider.read() == [312.0]
    assert provider.read() == [187.0]
    assert provider.read() == [298.0]
    assert runner.commands == [["ipmitool", "-I", "open", "dcmi", "power", "reading"]] * 3
    assert provider.last_reading is not None and provider.last_reading.average_w == 305.0
    provider.close()


def test_real_subprocess_runs() -> None:
    normal = FIXTURES / "ipmitool_power_reading.txt"
    provider = IpmiDcmiProvider(command=["sh", "-c", f"cat {shlex.quote(str(normal))}"])
    availability = provider.availability()
    assert availability.available, availability.reason
    provider.open()
    assert provider.read() == [312.0]

    freeipmi = FIXTURES / "freeipmi_power_statistics.txt"
    assert IpmiDcmiProvider(command=["cat", str(freeipmi)]).read() == [187.0]

    rejected = FIXTURES / "ipmitool_invalid_command.stderr"
    failing = IpmiDcmiProvider(command=["sh", "-c", f"cat {shlex.quote(str(rejected))} >&2; exit 1"])
    assert failing.availability().reason == ("BMC gives no DCMI power reading: DCMI request failed because: "
                                             "Invalid command (c1)")


def test_missing_tool_and_hanging_tool(tmp_path: Path) -> None:
    missing = IpmiDcmiProvider(command=[str(tmp_path / "ipmitool"), "dcmi", "power", "reading"])
    assert missing.availability().reason == f"{tmp_path / 'ipmitool'}: command not found"
    hanging = IpmiDcmiProvider(command=["sleep", "30"], timeout_s=0.2)
    with pytest.raises(ProviderError, match=r"sleep 30 did not finish within 0.2 s"):
        hanging.read()
