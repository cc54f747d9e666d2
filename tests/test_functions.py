"""Every function a model may use evaluates the same on torch as in Brian2's numpy target
(reference: Brian2's own implementations)."""

import numpy as np
import pytest

import bioplast
from bioplast.compile_torch import torch_functions
from bioplast.model import RANDOM_FUNCTIONS, SUPPORTED_FUNCTIONS

EXPRESSIONS = {
    "abs": "abs(x - 0.5)", "arccos": "arccos(x)", "arcsin": "arcsin(x)",
    "arctan": "arctan(3 * x)", "ceil": "ceil(3 * x)", "clip": "clip(x, 0.3, 0.6)",
    "cos": "cos(x)", "cosh": "cosh(x)", "exp": "exp(x)", "expm1": "expm1(x)",
    "exprel": "exprel(x - 0.5)", "floor": "floor(3 * x)", "int": "int(x > 0.5)",
    "int_of_a_number": "int(7 * x - 3)", "log": "log(x)", "log10": "log10(x)", "log1p": "log1p(x)", "sign": "sign(x - 0.5)",
    "sin": "sin(x)", "sinh": "sinh(x)", "sqrt": "sqrt(x)", "tan": "tan(x)",
    "tanh": "tanh(x)",
}


def test_every_supported_function_has_a_torch_implementation():
    import torch
    implemented = set(torch_functions(torch.float64, torch.device("cpu")))
    assert implemented | set(RANDOM_FUNCTIONS) == set(SUPPORTED_FUNCTIONS)
    assert {n for n in EXPRESSIONS if "_" not in n} | set(RANDOM_FUNCTIONS) == \
        set(SUPPORTED_FUNCTIONS)


@pytest.mark.brian2
def test_functions_agree_with_brian2():
    lines = ["dx/dt = (0.2 - x) / tau + 0.5 * t / second**2 : 1"]
    lines += [f"f_{name} = {expr} : 1" for name, expr in EXPRESSIONS.items()]
    lines += ["tau : second (constant, shared)"]
    text = ("name: functions\nequations: |\n" + "".join(f"  {l}\n" for l in lines)
            + "initial: {x: {kind: uniform, low: 0.05, high: 0.95}}\n"
            + "defaults: {n_units: 40, tau: 20 ms, dt: 1 ms}\n")
    model = bioplast.load_model(text)
    inputs = np.zeros((2, 30, 0))
    record = [f"f_{name}" for name in EXPRESSIONS]
    torch_ds = bioplast.simulate(model, None, inputs, record=record)
    brian_ds = bioplast.simulate(model, None, inputs, "brian2", record=record)
    for name in record:
        np.testing.assert_allclose(torch_ds[name].values, brian_ds[name].values, rtol=1e-12,
                                   atol=1e-12, err_msg=name)
    assert 0 < torch_ds["f_int"].values.mean() < 1  # both branches are exercised
