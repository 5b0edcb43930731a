"""The client configuration: every setting read, and errors that name file, line, key, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.cluster.config import load_config, parse_config
from wattwise.errors import ConfigError

FULL = """\
machine_id: bench-1
description: NUC i5-8259U, turbo off
database: postgresql://wattwise@db.example.org/wattwise
mac_address: 3C-EC-EF-01-02-03
sleep_time: 120
lease_s: 90
heartbeat_interval_s: 15
workdir: /var/lib/wattwise/jobs
web_url: https://wattwise.example.org
notify_email: ops@example.org
measure:
  interval_s: 0.2
  baseline_s: 10
  providers: [rapl, ipmi]
temperature:
  chip: coretemp-*
  feature: Package id 0
  source: hwmon
  base_temperature_c: 38.5
  warmup_margin_c: 4
  cooldown_wait_s: 30
  warmup_s: 20
  max_tries: 10
control_workload:
  command: stress-ng --cpu 1 --timeout 30s
  time_between_control_workload_validations: 21600
  comparison_window: 6
  threshold: 0.02
  phase: "[RUNTIME]"
  metrics: [energy_j, duration_s]
cleanup_command: [sudo, /usr/local/sbin/wattwise-cleanup]
cleanup_timeout_s: 60
shutdown_command: sudo systemctl suspend
shutdown_idle_s: 600
smtp:
  host: mail.example.org
  port: 587
  security: starttls
  username: wattwise
  password: secret
  from: wattwise@example.org
"""


def test_full_configuration() -> None:
    config = parse_config(FULL, "client.yml")
    assert config.machine_id == "bench-1" and config.mac_address == "3c:ec:ef:01:02:03"
    assert (config.sleep_time_s, config.lease_s, config.heartbeat_interval_s) == (120, 90, 15)
    assert config.measure.providers == ["rapl", "ipmi"] and config.measure.baseline_s == 10
    assert config.temperature is not None
    assert config.temperature.chip == ["coretemp-*"] and config.temperature.feature == ["Package id 0"]
    assert (config.temperature.base_temperature_c, config.temperature.max_tries) == (38.5, 10)
    control = config.control_workload
    assert control is not None
    assert control.command == ["stress-ng", "--cpu", "1", "--timeout", "30s"]
    assert (control.interval_s, control.comparison_window, control.threshold) == (21600, 6, 0.02)
    assert control.metrics == ["energy_j", "duration_s"] and control.phase == "[RUNTIME]"
    assert config.cleanup_command == ["sudo", "/usr/local/sbin/wattwise-cleanup"]
    assert config.shutdown_command == ["sudo", "systemctl", "suspend"] and config.shutdown_idle_s == 600
    assert config.smtp is not None
    assert (config.smtp.host, config.smtp.port, config.smtp.security) == ("mail.example.org", 587, "starttls")
    assert config.smtp.from_address == "wattwise@example.org" and config.smtp.password == "secret"


def test_minimal_configuration_defaults() -> None:
    config = parse_config("machine_id: m1\n")
    assert config.sleep_time_s == 300 and config.lease_s == 60 and config.heartbeat_interval_s == 10
    assert config.temperature is None and config.control_workload is None and config.smtp is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("description: x\n", "c.yml, line 1, (top level): missing key 'machine_id'"),
        ("machine_id: m1\nsleep_tme: 5\n", "c.yml, line 2, sleep_tme: unknown key 'sleep_tme' (did you mean 'sleep_time'?)"),
        ("machine_id: m1\nsleep_time: soon\n", "c.yml, line 2, sleep_time: expected a number, got 'soon'"),
        ("machine_id: m1\nsleep_time: 5\nsleep_time_s: 6\n", "give either 'sleep_time_s' or 'sleep_time', not both"),
        ("machine_id: m1\nlease_s: 10\nheartbeat_interval_s: 6\n",
         "line 3, heartbeat_interval_s: heartbeat_interval_s (6) must be at most half of lease_s (10)"),
        ("machine_id: has space\n", "line 1, machine_id: machine_id 'has space' is not allowed"),
        ("machine_id: m1\nmac_address: 12:34\n", "line 2, mac_address: YAML read this MAC address as a number"),
        ("machine_id: m1\nmac_address: 'ab:cd'\n", "line 2, mac_address: not a MAC address: 'ab:cd'"),
        ("machine_id: m1\ntemperature:\n  source: ipmi\n",
         "line 3, temperature.source: 'ipmi' is not a temperature source: use auto, hwmon or sensors"),
        ("machine_id: m1\ntemperature:\n  max_tries: 2.5\n", "line 3, temperature.max_tries: expected a whole number, got 2.5"),
        ("machine_id: m1\ncontrol_workload:\n  threshold: 0.1\n",
         "line 2, control_workload: give exactly one of 'command'"),
        ("machine_id: m1\ncontrol_workload:\n  command: 'true'\n  metrics: [joules]\n",
         "line 4, control_workload.metrics: unknown metric 'joules'; allowed: energy_j"),
        ("machine_id: m1\ncontrol_workload:\n  command: 'true'\n  comparison_window: 1\n",
         "line 4, control_workload.comparison_window: must be at least 2, got 1"),
        ("machine_id: m1\nsmtp:\n  port: 25\n", "line 2, smtp: missing key 'smtp.host'"),
        ("machine_id: m1\nsmtp:\n  host: h\n  security: tls\n", "line 4, smtp.security: 'tls' is not allowed: use none, starttls or ssl"),
        ("machine_id: m1\ncleanup_command: []\n", "line 2, cleanup_command: the command is empty"),
        ("machine_id: m1\ncleanup_command: {a: 1}\n", "line 2, cleanup_command: expected a command"),
        ("machine_id: m1\nexecutors:\n  command: nomodule\n", "expected 'package.module:ClassName', got 'nomodule'"),
        ("machine_id: m1\nweb_url: wattwise.example.org\n", "web_url: expected an http:// or https:// address"),
        ("machine_id: m1\nmachine_id: m2\n", "c.yml, line 2: key 'machine_id' appears twice"),
        ("machine_id: [m1\n", "c.yml, line 2, column 1: not valid YAML"),
        ("- m1\n", "c.yml: expected a mapping of settings"),
    ],
)
def test_precise_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yml")
    assert message in str(info.value), str(info.value)


def test_load_config_file_errors_and_password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yml")
    monkeypatch.delenv("WATTWISE_CLIENT_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="pass --config FILE or set WATTWISE_CLIENT_CONFIG"):
        load_config(None)
    secret = tmp_path / "smtp.pass"
    secret.write_text("s3cret\n")
    path = tmp_path / "client.yml"
    path.write_text(f"machine_id: m1\nsmtp:\n  host: h\n  password_file: {secret}\n")
    monkeypatch.setenv("WATTWISE_CLIENT_CONFIG", str(path))
    config = load_config(None)
    assert config.smtp is not None and config.smtp.password == "s3cret" and config.path == path
    path.write_text("machine_id: m1\nsmtp:\n  host: h\n  password_file: /nonexistent/pass\n")
    with pytest.raises(ConfigError, match=r"line 4, smtp.password_file: cannot read /nonexistent/pass"):
        load_config(path)
