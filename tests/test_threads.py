"""Thread counts and the OpenMP wait policy: processes sharing a machine split its cores,
idle OpenMP threads sleep, and what the user set is kept."""

import os
import subprocess
import sys

import pytest

from bioplast import threads
from bioplast.sweep import connect


@pytest.fixture
def clean_environment(monkeypatch):
    """No OpenMP settings in this process's environment, restored afterwards (Dask's nanny
    writes its workers' settings into the environment of the process that starts them)."""
    for name in ("OMP_WAIT_POLICY", *threads.THREAD_COUNTS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_processes_split_the_cores():
    assert threads.per_process(2, cores=8) == 4
    assert threads.per_process(3, cores=8) == 2
    assert threads.per_process(3, cores=2) == 1  # never 0
    assert threads.per_process(1) == threads.usable_cores() >= 1


def test_passive_wait_is_set_before_torch_starts_unless_the_user_chose(clean_environment):
    """In a fresh process (torch not yet imported) the policy is set, and the process's
    own children inherit it; a policy the user chose is kept."""
    script = ("import os, subprocess, sys; from bioplast.threads import passive_wait; "
              "print(passive_wait(), 'torch' in sys.modules); sys.stdout.flush(); "
              "subprocess.run([sys.executable, '-c', "
              "'import os; print(os.environ[\"OMP_WAIT_POLICY\"])'])")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert run.stdout.split() == ["PASSIVE", "False", "PASSIVE"]
    clean_environment.setenv("OMP_WAIT_POLICY", "ACTIVE")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert run.stdout.split() == ["ACTIVE", "False", "ACTIVE"]


def _openmp_environment():
    import torch
    return (os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OMP_NUM_THREADS"),
            torch.get_num_threads())


@pytest.mark.parametrize("user_policy", [None, "ACTIVE"])
def test_local_workers_start_with_passive_waits_and_their_share_of_threads(
        clean_environment, user_policy):
    if user_policy:
        clean_environment.setenv("OMP_WAIT_POLICY", user_policy)
    client = connect(None, 1, 2)
    try:
        policy, count, torch_threads = client.submit(_openmp_environment, pure=False).result()
    finally:
        client.close()
        client.cluster.close()
    assert policy == (user_policy or "PASSIVE")
    assert count == "2" and torch_threads == 2
