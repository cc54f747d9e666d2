"""How many threads torch's CPU work gets per process, and how its idle threads wait.

torch runs CPU kernels on an OpenMP thread pool. By default GNU OpenMP's idle threads spin
for a while before they sleep: on a machine where another process is busy, two threads per
process ran 15-40x slower than one (measured for bioplast and the papers' code alike), as
the spinning thread holds a core the working thread or the neighbour needs. Two choices
keep a busy neighbour from costing more than its share:

- ``OMP_WAIT_POLICY=PASSIVE`` (`passive_wait`, `worker_environment`): idle threads sleep at
  once. OpenMP reads it when its runtime starts, i.e. when torch is imported: set it in the
  environment before that (the command line does, first thing) or in the environment a
  worker process starts with. A policy the user set is kept.
- processes that share a machine split its cores: `per_process` gives each of N processes
  ``cores // N`` threads (at least 1).

Nothing here imports torch.
"""

from __future__ import annotations

import os

#: the environment variable OpenMP runtimes (GNU, LLVM, Intel) read when they start
WAIT_POLICY = "OMP_WAIT_POLICY"
#: idle threads sleep at once instead of spinning
PASSIVE = "PASSIVE"


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the system has one (a Slurm
    allocation, a container's cpuset), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def per_process(processes: int, cores: int | None = None) -> int:
    """Threads for each of ``processes`` processes that share ``cores`` cores (default: the
    usable cores, `usable_cores`): ``cores // processes``, at least 1."""
    return max(1, (usable_cores() if cores is None else cores) // max(1, processes))


def passive_wait() -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in this process's environment unless it is set, and
    return the policy in force. Call it before torch is imported: OpenMP reads the policy
    once, when its runtime starts, and child processes inherit it."""
    return os.environ.setdefault(WAIT_POLICY, PASSIVE)


#: the thread counts OpenMP, MKL and OpenBLAS start with (torch takes MKL's over OpenMP's)
THREAD_COUNTS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_environment(threads: int) -> dict[str, str]:
    """The environment a worker process that runs ``threads`` torch threads starts with
    (for Dask: ``distributed.nanny.pre-spawn-environ``, where variables the user set in the
    environment take precedence)."""
    return {**{name: str(threads) for name in THREAD_COUNTS}, WAIT_POLICY: PASSIVE}
