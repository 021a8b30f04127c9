"""Sharing the cores: the wait policy, a fair share of threads and what a launcher passes on."""

import pytest

from loopwm_rl import cores


def test_share_cores_sets_the_passive_policy_only_where_unset():
    env = {}
    assert cores.share_cores(env) == {"OMP_WAIT_POLICY": "PASSIVE"} and env["OMP_WAIT_POLICY"] == "PASSIVE"
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert cores.share_cores(mine) == {} and mine["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize(("usable", "jobs", "expected"), [(2, "1", 2), (2, "2", 1), (2, "3", 1), (16, "4", 4)])
def test_threads_default_to_a_fair_share_of_the_usable_cores(monkeypatch, usable, jobs, expected):
    monkeypatch.setattr(cores, "usable_cores", lambda: usable)
    monkeypatch.setenv(cores.JOBS_ENV, jobs)
    assert cores.resolve_threads(0) == expected
    assert cores.resolve_threads(3) == 3  # an explicit value stands
    assert f"{expected} ({usable} usable cores, {int(jobs)} concurrent job(s)" in cores.describe(expected)


def test_bad_thread_settings_are_named(monkeypatch):
    monkeypatch.setenv(cores.JOBS_ENV, "two")
    with pytest.raises(ValueError, match="LOOPWM_JOBS='two'"):
        cores.fair_threads()
    with pytest.raises(ValueError, match="threads=-1"):
        cores.resolve_threads(-1)


def test_a_launcher_gives_each_job_its_share():
    env = cores.job_environment(2, {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE", cores.JOBS_ENV: "2"}
