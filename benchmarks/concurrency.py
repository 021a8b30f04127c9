"""Two jobs on one machine: does each keep its speed, and does running two at once pay?

Each job times one kind of the package's own work (``benchmarks/concurrency_worker.py``): a
``looped small`` world-model step at batch 64 (adaptive halting), a training update of 64
sequences, or one planning call of the demo's MPPI. Settings, side by side in one run:

- ``alone, old``: one job, 2 threads, OpenMP's wait policy unset (the package before
  ``loopwm_rl.cores``);
- ``alone, new``: one job with the new defaults (passive wait, a fair share of threads: 2);
- ``two, old``: two jobs at once, 2 threads each, policy unset;
- ``two, new, independent``: two jobs at once with the passive wait policy and 2 threads each,
  what two ``loopwm-rl`` runs started by hand get (neither knows of the other);
- ``two, new, launched``: two jobs at once as a launcher starts them (``LOOPWM_JOBS=2``:
  passive wait, 1 thread each).

Prints each job's rate, the ratio to ``alone, old`` and the total throughput of both jobs.

    python benchmarks/concurrency.py --seconds 8
"""

from __future__ import annotations

from loopwm_rl import cores  # before torch loads (here: before any child inherits our environment)

# isort: split
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = Path(__file__).with_name("concurrency_worker.py")


def settings() -> list[tuple[str, int, dict[str, str], int]]:
    """(name, jobs, environment, threads per job)."""
    old = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", cores.JOBS_ENV)}
    new = cores.job_environment(1, old)
    launched = cores.job_environment(2, old)
    return [
        ("alone, old", 1, old, 2),
        ("alone, new", 1, new, cores.fair_threads(1)),
        ("two, old", 2, old, 2),
        ("two, new, independent", 2, new, cores.fair_threads(1)),
        ("two, new, launched", 2, launched, cores.fair_threads(2)),
    ]


def run_jobs(kind: str, jobs: int, env: dict[str, str], threads: int, seconds: float) -> list[float]:
    """Start ``jobs`` workers, time them over the same window, return their rates."""
    with tempfile.TemporaryDirectory() as tmp:
        barrier = str(Path(tmp) / "barrier")
        cmd = [sys.executable, str(WORKER), kind, "--threads", str(threads), "--seconds", str(seconds)]
        procs = [
            subprocess.Popen([*cmd, "--barrier", barrier], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(jobs)
        ]
        while len(list(Path(tmp).glob("barrier.*.ready"))) < jobs:
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError(f"a {kind} worker failed before its window")
            time.sleep(0.01)
        Path(f"{barrier}.go").touch()
        outputs = [p.communicate()[0] for p in procs]
    return [json.loads(out.strip().splitlines()[-1])["rate"] for out in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window of each job")
    parser.add_argument("--kinds", nargs="+", default=["step", "update", "plan"], choices=["step", "update", "plan"])
    args = parser.parse_args()
    cpus, py = cores.usable_cores(), sys.version.split()[0]
    print(f"# concurrency: {cpus} usable cores, {args.seconds:.0f} s windows, python {py}")
    print("| work | setting | threads/job | each job, per s | each / alone-old | total, per s | total / alone-old |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        base = None
        for name, jobs, env, threads in settings():
            rates = run_jobs(kind, jobs, env, threads, args.seconds)
            base = base or rates[0]
            each = " / ".join(f"{r:.1f}" for r in rates)
            ratio = " / ".join(f"{r / base:.2f}" for r in rates)
            print(
                f"| {kind} | {name} | {threads} | {each} | {ratio} | {sum(rates):.1f} | {sum(rates) / base:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
