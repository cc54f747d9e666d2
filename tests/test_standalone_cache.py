"""cpp_standalone: one build per model structure, re-run with new values without
recompiling, in the same process and across processes (the build directory is cached)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import bioplast
from conftest import random_inputs

pytestmark = [pytest.mark.brian2, pytest.mark.cpp_standalone]


def test_rerun_with_new_weights_does_not_recompile(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOPLAST_CACHE_DIR", str(tmp_path))
    from bioplast.backends.brian2 import Brian2Backend
    Brian2Backend._standalone.update(key=None, network=None, directory=None)
    model = bioplast.load_model("leaky_rate", n_units=10)
    inputs = random_inputs(model, 8, 200)
    backend = bioplast.backends.get_backend("brian2", target="cpp_standalone")
    initial = {"r": model.initial_state(8, seed=0, n_members=1)["r"]}
    runs = []
    for seed in (0, 1, 2):
        params = model.init_params(seed)
        trajectory = backend.simulate(model, params, inputs, initial, ["r"], noise=False)
        expected = bioplast.simulate(model, params, inputs, noise=False,
                                     initial_state={"r": initial["r"][0]})
        np.testing.assert_allclose(trajectory.recorded["r"][0], expected["r"].values,
                                   rtol=1e-9, atol=1e-12)
        runs.append(trajectory.info)
    assert [info["compiled"] for info in runs] == [1, 0, 0]
    binary = os.path.join(runs[0]["build_directory"], "main")
    assert os.path.exists(binary)
    assert str(tmp_path) in runs[0]["build_directory"]  # built in the cache, not the repo


SCRIPT = """
import numpy as np, os, bioplast
model = bioplast.load_model("leaky_current", n_units=6)
ds = bioplast.simulate(model, model.init_params({seed}), np.ones((2, 30, 3)), "brian2",
                       target="cpp_standalone", noise=False)
print(float(ds["x"].values.sum()))
"""


def test_a_new_process_reuses_the_cached_build(tmp_path):
    env = {**os.environ, "BIOPLAST_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", SCRIPT.format(seed=0)], env=env,
                           capture_output=True, text=True, check=True)
    builds = list((tmp_path / "brian2_standalone").iterdir())
    binary = [b / "main" for b in builds if b.is_dir()][0]
    stamp = binary.stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-c", SCRIPT.format(seed=1)], env=env,
                            capture_output=True, text=True, check=True)
    assert binary.stat().st_mtime_ns == stamp  # make found nothing to rebuild
    assert first.stdout != second.stdout  # new weights did change the result
