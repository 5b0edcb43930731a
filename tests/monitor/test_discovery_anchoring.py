"""Look-alike cgroups in a user's own delegated tree are not Slurm jobs, and cannot merge with real ones."""

from __future__ import annotations

from wattwise.monitor.discovery import UnitMatch, classify


def test_slurm_paths_are_anchored_at_the_hierarchy_root() -> None:
    assert classify("system.slice/slurmstepd.scope/job_4242") == UnitMatch("slurm", "4242")
    assert classify("system.slice/node01_slurmstepd.scope/job_7") == UnitMatch("slurm", "7")
    assert classify("slurm/uid_1000/job_42") == UnitMatch("slurm", "42", 1000)
    assert classify("slurm_node01/uid_1000/job_42") == UnitMatch("slurm", "42", 1000)
    fake = "user.slice/user-1001.slice/user@1001.service/app.slice/x-slurmstepd.scope/job_4242"
    assert classify(fake) is None
    assert classify("user.slice/user-1001.slice/slurm/uid_0/job_42") is None
