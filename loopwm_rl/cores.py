"""Sharing the machine's cores with other processes: OpenMP's wait policy and torch's threads.

Two torch processes whose OpenMP thread pools spin-wait for work take each other's cores: on 2
cores each fell from 277 to 1.6 world-model steps per second (``benchmarks/concurrency.py``,
BENCHMARKS.md "Two runs on one machine"). A passive wait policy lets idle threads sleep, and a
thread count of (usable cores / concurrent jobs) leaves each job its own cores.

OpenMP reads its environment once, when torch loads it, so :func:`share_cores` runs when this
module is imported, and this module imports nothing heavy: the CLI and the benchmark scripts
import it before torch. A user's own ``OMP_WAIT_POLICY`` is left alone.
"""

from __future__ import annotations

import os

JOBS_ENV = "LOOPWM_JOBS"
"""How many jobs a launcher runs at once on this machine (1 when unset)."""
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


def share_cores(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set OpenMP's passive wait policy where the user has not chosen one; returns the
    variables it set (empty when the user's own settings stand)."""
    environ = os.environ if environ is None else environ
    chosen = {}
    for key, value in WAIT_POLICY.items():
        if key not in environ:
            environ[key] = chosen[key] = value
    return chosen


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def concurrent_jobs() -> int:
    """Jobs a launcher said run at once here (``LOOPWM_JOBS``), at least 1."""
    raw = os.environ.get(JOBS_ENV, "1")
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"{JOBS_ENV}={raw!r} is not a number of jobs") from None


def fair_threads(jobs: int | None = None) -> int:
    """torch threads for one of ``jobs`` concurrent jobs: an equal share of the usable cores."""
    return max(1, usable_cores() // (jobs or concurrent_jobs()))


def resolve_threads(configured: int) -> int:
    """A config's ``threads``: a positive value stands, 0 means :func:`fair_threads`."""
    if configured < 0:
        raise ValueError(f"threads={configured} must be >= 0 (0: a fair share of the usable cores)")
    return configured or fair_threads()


def job_environment(jobs: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a launcher gives each of ``jobs`` concurrent child processes."""
    env = dict(os.environ if environ is None else environ)
    share_cores(env)
    env[JOBS_ENV] = str(jobs)
    return env


def describe(threads: int) -> str:
    """One line for the start of a run: threads, cores, jobs and the wait policy."""
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return (
        f"torch threads: {threads} ({usable_cores()} usable cores, {concurrent_jobs()} concurrent job(s), "
        f"OMP_WAIT_POLICY={policy})"
    )


share_cores()
