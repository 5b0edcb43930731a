"""A job as submitted, and the rules it must follow (names, sources, variables, e-mail, attempts), with the
machine-id and MAC-address rules shared with the client configuration. Pure: no database."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from wattwise.cluster.models import SourceType
from wattwise.errors import WattwiseError

MACHINE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
GIT_URL_RE = re.compile(r"^((https?|ssh|git|file)://\S+|[\w.-]+@[\w.-]+:\S+)$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DEFAULT_SCENARIO_FILE = "usage_scenario.yml"


@dataclass
class JobRequest:
    """What `submit` needs; exactly one of command, folder or git_url."""

    name: str
    command: list[str] | None = None
    folder: str | None = None
    git_url: str | None = None
    branch: str | None = None
    filename: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    machine_id: str | None = None
    email: str | None = None
    max_attempts: int = 3


def validate_machine_id(machine_id: str, what: str = "machine id") -> str:
    if not isinstance(machine_id, str) or not MACHINE_ID_RE.match(machine_id):
        raise WattwiseError(
            f"{what} {machine_id!r} is not allowed: use 1 to 100 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return machine_id


def normalize_mac(mac: str) -> str:
    """aa:bb:cc:dd:ee:ff from aa:bb:.., AA-BB-.., aabb.ccdd.eeff or aabbccddeeff."""
    digits = re.sub(r"[:.\-]", "", mac.strip()).lower()
    if len(digits) != 12 or not re.fullmatch(r"[0-9a-f]{12}", digits):
        raise WattwiseError(
            f"not a MAC address: {mac!r} (write six hex bytes, e.g. 3c:ec:ef:12:34:56 or 3c-ec-ef-12-34-56)"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def validate_request(request: JobRequest) -> dict[str, Any]:
    name = (request.name or "").strip()
    if not name or len(name) > 200:
        raise WattwiseError("a job needs a name of 1 to 200 characters (--name)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise WattwiseError(f"a job name must not contain control characters such as line breaks: {name!r}")
    given = [
        k for k, v in (("command", request.command), ("folder", request.folder), ("git URL", request.git_url)) if v
    ]
    if len(given) != 1:
        raise WattwiseError(
            "give exactly one job source: a command (after --), --folder PATH or --git URL"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    values: dict[str, Any] = {"name": name, "branch": None, "filename": None, "command": None}
    if request.command:
        if not all(isinstance(a, str) for a in request.command):
            raise WattwiseError(f"a command is a list of strings, got {request.command!r}")
        values.update(source_type=SourceType.COMMAND, source=" ".join(request.command), command=list(request.command))
        if request.branch or request.filename:
            raise WattwiseError("--branch and --filename belong to scenario jobs (--folder or --git)")
    else:
        filename = request.filename or DEFAULT_SCENARIO_FILE
        path = PurePosixPath(filename)
        if path.is_absolute() or ".." in path.parts or not filename.strip():
            raise WattwiseError(
                f"--filename {filename!r} must be a relative path inside the scenario folder or repository"
            )
        values["filename"] = filename
        if request.folder:
            if request.branch:
                raise WattwiseError("--branch belongs to --git jobs, not --folder jobs")
            values.update(source_type=SourceType.FOLDER, source=request.folder)
        else:
            url = (request.git_url or "").strip()
            if not GIT_URL_RE.match(url):
                raise WattwiseError(
                    f"--git {url!r} is not a git URL: use https://…, ssh://…, git://…, file://… or user@host:path"
                )
            values.update(source_type=SourceType.GIT, source=url, branch=request.branch or None)
    variables = request.variables or {}
    if not isinstance(variables, dict):
        raise WattwiseError(f"variables must be a mapping of names to text, got {variables!r}")
    for key, value in variables.items():
        if not isinstance(key, str) or not VARIABLE_RE.match(key):
            raise WattwiseError(
                f"variable name {key!r} is not allowed: letters, digits and '_', not starting with a digit"
            )
        if not isinstance(value, str):
            raise WattwiseError(f"variable {key!r} must be text, got {value!r}")
    values["variables"] = dict(variables)
    if request.email is not None and not EMAIL_RE.match(request.email):
        raise WattwiseError(f"--email {request.email!r} is not an e-mail address")
    values["email"] = request.email or None
    if not isinstance(request.max_attempts, int) or not 1 <= request.max_attempts <= 100:
        raise WattwiseError(f"--max-attempts must be 1 to 100, got {request.max_attempts!r}")
    values["max_attempts"] = request.max_attempts
    if request.machine_id:
        validate_machine_id(request.machine_id, "--machine")
    values["machine_id"] = request.machine_id or None
    _refuse_nul(values)
    return values


def _refuse_nul(values: dict[str, Any]) -> None:
    """Databases cannot store NUL characters in text (PostgreSQL refuses them): say so instead of failing."""
    for key, value in values.items():
        texts = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        if any(isinstance(t, str) and "\0" in t for t in texts):
            raise WattwiseError(f"the job's {key} contains a NUL character, which cannot be stored")

