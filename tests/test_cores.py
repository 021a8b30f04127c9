"""Sharing the cores: the wait policy, the default thread count and what a launcher passes on."""

import pytest

from loopwm_rl import cores


def test_share_cores_sets_the_passive_policy_only_where_unset():
    env = {}
    assert cores.share_cores(env) == {"OMP_WAIT_POLICY": "PASSIVE"} and env["OMP_WAIT_POLICY"] == "PASSIVE"
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert cores.share_cores(mine) == {} and mine["OMP_WAIT_POLICY"] == "ACTIVE"


def test_threads_default_to_one_and_an_explicit_value_stands(monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda: 16)
    assert cores.resolve_threads(0) == 1
    assert cores.resolve_threads(3) == 3
    assert cores.describe(3).startswith("torch threads: 3 of 16 usable cores (OMP_WAIT_POLICY=")
    with pytest.raises(ValueError, match="threads=-1"):
        cores.resolve_threads(-1)


def test_a_launcher_passes_the_policy_on_and_keeps_the_rest():
    assert cores.job_environment({"PATH": "/bin"}) == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE"}
    assert cores.job_environment({"OMP_WAIT_POLICY": "ACTIVE"}) == {"OMP_WAIT_POLICY": "ACTIVE"}
