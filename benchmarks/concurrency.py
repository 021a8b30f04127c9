"""Two jobs on one machine: does each keep its speed, and does running two at once pay?

Each job times one kind of the package's own work (``benchmarks/concurrency_worker.py``): a
``looped small`` world-model step at batch 64 (adaptive halting), a step of the default d = 64
model at batch 512, a training update of 64 sequences, or one planning call of the demo's MPPI.
For each OpenMP wait policy (unset, as before ``loopwm_rl.cores``; passive; a short spin),
side by side in one run: one job alone and two jobs at once (two runs started by hand, neither
knowing of the other), each with 2 threads and with 1 thread per job.

Prints each job's rate, its ratio to one 2-thread job alone with the policy unset (the old
default), and the total throughput of the jobs over that same baseline.

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
KINDS = ["step", "step512", "update", "plan"]


POLICIES = {
    "unset (old)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
}


def settings(policies: list[str]) -> list[tuple[str, str, int, dict[str, str], int]]:
    """(policy, setting, jobs, environment, threads per job) for each wait policy: one job and
    two jobs at once, with 2 threads and with 1 thread per job."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    rows = []
    for name in policies:
        env = {**clean, **POLICIES[name]}
        rows += [
            (name, "alone", 1, env, 2),
            (name, "alone", 1, env, 1),
            (name, "two at once", 2, env, 2),
            (name, "two at once", 2, env, 1),
        ]
    return rows


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
    parser.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = parser.parse_args()
    cpus, py = cores.usable_cores(), sys.version.split()[0]
    print(f"# concurrency: {cpus} usable cores, {args.seconds:.0f} s windows, python {py}")
    print("| work | wait policy | setting | threads/job | each job, per s | each / alone-old | total / alone-old |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        base = None
        for policy, name, jobs, env, threads in settings(args.policies):
            rates = run_jobs(kind, jobs, env, threads, args.seconds)
            base = base or rates[0]
            each = " / ".join(f"{r:.1f}" for r in rates)
            ratio = " / ".join(f"{r / base:.2f}" for r in rates)
            print(
                f"| {kind} | {policy} | {name} | {threads} | {each} | {ratio} | {sum(rates) / base:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
