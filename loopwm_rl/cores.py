"""Sharing the machine's cores with other processes: OpenMP's wait policy and torch's threads.

Measured with ``benchmarks/concurrency.py`` on 2 cores (BENCHMARKS.md, "Two runs on one
machine"), relative to one job with 2 threads and OpenMP's default wait policy:

- two jobs with 2 threads each and the default policy collapse to 0.06-0.23x each: their
  OpenMP pools spin-wait for work on each other's cores;
- the passive policy (idle threads sleep) lifts them to 0.67-0.90x each, but costs a lone
  2-thread job 0.40-0.43x on the package's small work (steps at batch 64, updates, planning);
- one thread per job is 0.96-1.03x of two threads on that small work, alone or beside a second
  job; only big batches gain from a second thread (a batch-512 step of the d = 64 model: 1.46x).

So a run takes **one thread** unless its config says otherwise (``train.threads``,
``fit.threads``), and the passive policy is set for runs that ask for more threads, so that
two of them never collapse. OpenMP reads its environment once, when torch loads it:
:func:`share_cores` runs when this module is imported, and this module imports nothing heavy,
so the CLI and the benchmark scripts import it before torch. A user's own ``OMP_WAIT_POLICY``
is left alone (``ACTIVE`` suits a lone multi-thread run on a quiet machine).
"""

from __future__ import annotations

import os

WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}
AUTO_THREADS = 1
"""Threads of a run whose config says 0 (see the measurements above)."""


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


def resolve_threads(configured: int) -> int:
    """A config's ``threads``: a positive value stands, 0 means :data:`AUTO_THREADS`."""
    if configured < 0:
        raise ValueError(f"threads={configured} must be >= 0 (0: {AUTO_THREADS} thread, the measured best here)")
    return configured or AUTO_THREADS


def job_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a launcher gives each concurrent child process: the passive policy
    (unless chosen), and ``OMP_NUM_THREADS`` only where the caller has set it."""
    env = dict(os.environ if environ is None else environ)
    share_cores(env)
    return env


def describe(threads: int) -> str:
    """One line for the start of a run: threads, cores and the wait policy."""
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return f"torch threads: {threads} of {usable_cores()} usable cores (OMP_WAIT_POLICY={policy})"


share_cores()
