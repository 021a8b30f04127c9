"""Experiment grids as jobs: one job is one (model or agent, env, seed) and writes one result file.

A grid command builds its :class:`Job` list and hands it to :func:`run_jobs`, then aggregates
the result files; it never runs anything itself. That gives every grid the same behaviour:

- a job whose result file exists is skipped, so a killed grid resumes where it stopped (the
  local serial launcher checks again just before each job, so two grids can fill one table);
- a failing job is reported (its traceback in ``<result>.error.txt``) and the others go on;
- ``launcher="local"`` runs the jobs in this process one after another (``processes=1``) or in
  a pool of fresh processes, one per job; ``launcher="ray"`` submits them to a Ray cluster
  (a local instance by default, ``ray_address`` for an existing one) with ``cpus_per_job`` and
  ``gpus_per_job`` reserved each.

A job's function is named by ``"package.module:function"`` or ``"path/to/file.py:function"``
(benchmark scripts are files, not modules) so that it can be sent to another process or host
by name. It takes the job's keyword arguments and returns a JSON-able dict.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import importlib
import importlib.util
import json
import multiprocessing
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import cores
from .atomic import atomic_path

LAUNCHERS = ("local", "ray")


class LauncherError(RuntimeError):
    """A launcher cannot run: unknown name, or Ray not installed or not reachable."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of a grid.

    Attributes:
        name: unique within the grid, shown in progress and failure reports.
        fn: ``"module:function"`` or ``"file.py:function"``; called as ``fn(**kwargs)``.
        kwargs: JSON-able keyword arguments.
        result: the JSON file the job's return value is written to (atomically).
        threads: torch threads the job may use.
    """

    name: str
    fn: str
    kwargs: dict[str, Any]
    result: Path
    threads: int = 1


@dataclasses.dataclass
class GridReport:
    """What :func:`run_jobs` did: names of the jobs run, skipped (result already there) and
    failed (with the error's last line), and the wall time."""

    ran: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0

    def record(self, job: Job, done: int, total: int, error: BaseException | None, log: Callable[[str], None]) -> None:
        """Note how ``job`` ended (``error`` None: it ran) and log it as job ``done`` of ``total``."""
        if error is None:
            self.ran.append(job.name)
            log(f"[{done}/{total}] {job.name} done")
        else:
            self.failed[job.name] = _last_line(error)
            log(f"[{done}/{total}] {job.name} FAILED: {_last_line(error)}")

    def summary(self) -> str:
        line = f"{len(self.ran)} jobs ran, {len(self.skipped)} skipped (result exists), {len(self.failed)} failed"
        lines = [f"{line} in {self.wall_s:.0f} s"]
        lines += [f"  FAILED {name}: {err}" for name, err in self.failed.items()]
        return "\n".join(lines)


def resolve(fn: str) -> Callable[..., dict]:
    """The function a job names (see the module docstring)."""
    target, sep, name = fn.rpartition(":")
    if not sep or not target or not name:
        raise ValueError(f"job function {fn!r} must look like 'package.module:function' or 'file.py:function'")
    if target.endswith(".py"):
        # as when the file runs as a script: its folder is importable (benchmarks import each other)
        folder = str(Path(target).resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(Path(target).stem, target)
        if spec is None or spec.loader is None:
            raise ValueError(f"job function {fn!r}: cannot load {target}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, name)


def execute(job: Job) -> dict:
    """Run one job here and write its result file; returns the result. Raises what the job raises
    (after writing ``<result>.error.txt``)."""
    import torch

    torch.set_num_threads(max(1, job.threads))
    error_path = Path(f"{job.result}.error.txt")
    try:
        start = time.perf_counter()
        result = resolve(job.fn)(**job.kwargs)
        result = {**result, "job": job.name, "job_wall_s": time.perf_counter() - start}
    except BaseException:
        error_path.parent.mkdir(parents=True, exist_ok=True)
        error_path.write_text(traceback.format_exc())
        raise
    with atomic_path(job.result, ".json") as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=float))
    error_path.unlink(missing_ok=True)
    return result


def _last_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"


def run_jobs(
    jobs: Sequence[Job],
    launcher: str = "local",
    *,
    processes: int = 1,
    ray_address: str | None = None,
    cpus_per_job: float = 1,
    gpus_per_job: float = 0,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> GridReport:
    """Run the jobs whose result files are missing (all of them with ``force``).

    Raises:
        LauncherError: unknown launcher; ``ray`` without Ray installed or with a cluster it
            cannot reach. A failing job does not raise: it is listed in the report.
    """
    if launcher not in LAUNCHERS:
        raise LauncherError(f"launcher={launcher!r} is not one of {list(LAUNCHERS)}")
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique within a grid")
    report = GridReport()
    todo = []
    for job in map(_absolute, jobs):
        if _done(job, force):
            report.skipped.append(job.name)
        else:
            todo.append(job)
    start = time.perf_counter()
    if launcher == "ray":
        _run_ray(todo, report, ray_address, cpus_per_job, gpus_per_job, log)
    elif processes <= 1:
        for i, job in enumerate(todo, 1):
            if _done(job, force):
                # another grid sharing these result files (a second terminal filling the same
                # table) finished it while this one ran earlier jobs
                report.skipped.append(job.name)
                log(f"[{i}/{len(todo)}] {job.name} skipped: its result appeared meanwhile")
                continue
            log(f"[{i}/{len(todo)}] {job.name}")
            error = None
            try:
                execute(job)
            except Exception as err:  # reported; the grid goes on
                error = err
            report.record(job, i, len(todo), error, log)
    else:
        _run_pool(todo, report, processes, log)
    report.wall_s = time.perf_counter() - start
    return report


def _done(job: Job, force: bool) -> bool:
    """Whether ``job`` is skipped: its result file exists and ``force`` is off."""
    return not force and job.result.exists()


def _absolute(job: Job) -> Job:
    """The job with absolute paths, so that it runs the same from any worker's folder."""
    target, _, name = job.fn.rpartition(":")
    fn = f"{Path(target).resolve()}:{name}" if target.endswith(".py") else job.fn
    return dataclasses.replace(job, fn=fn, result=Path(job.result).resolve())


def _run_pool(todo: list[Job], report: GridReport, processes: int, log: Callable[[str], None]) -> None:
    # spawn + one task per child: every job starts in a fresh interpreter (no torch state or
    # thread pools inherited from this one)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(processes, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {pool.submit(execute, job): job for job in todo}
        for done, future in enumerate(cf.as_completed(futures), 1):
            report.record(futures[future], done, len(todo), future.exception(), log)


def _run_ray(
    todo: list[Job],
    report: GridReport,
    address: str | None,
    cpus: float,
    gpus: float,
    log: Callable[[str], None],
) -> None:
    try:
        import ray
    except ImportError as err:
        raise LauncherError("launcher=ray needs Ray, which is not installed: pip install 'loopwm-rl[ray]'") from err
    if not todo:
        return
    if address and address != "auto":
        _check_reachable(address)
    if not ray.is_initialized():
        try:
            # the workers import job files and the package from this checkout, and wait for
            # cores passively as local jobs do (loopwm_rl.cores): a spinning OpenMP pool in one
            # worker starves the others
            env_vars = {"PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
            env_vars.update(cores.job_environment({}))
            runtime_env = {"env_vars": env_vars}
            ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False)
        except Exception as err:  # ConnectionError, TimeoutError, RuntimeError, depending on version
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            raise LauncherError(f"cannot start or reach {where}: {_last_line(err)}") from err
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(execute)
    pending = {remote.remote(job): job for job in todo}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        done += 1
        error = None
        try:
            ray.get(ready[0])
        except Exception as err:  # ray.exceptions.RayTaskError wraps the job's own error
            error = getattr(err, "cause", None) or err
        report.record(job, done, len(todo), error, log)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at: ``ray.init`` retries such an address for
    minutes before giving up (measured with Ray 2.60)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise LauncherError(f"ray_address={address!r} must look like HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        hint = "start one or leave ray_address empty for a local instance"
        raise LauncherError(f"no Ray cluster answers at {address!r} ({err}); {hint}") from err


def load_results(jobs: Sequence[Job]) -> list[dict]:
    """The result of every job whose file exists, in the jobs' order."""
    return [json.loads(Path(j.result).read_text()) for j in jobs if Path(j.result).exists()]
