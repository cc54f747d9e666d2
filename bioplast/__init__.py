"""bioplast: recurrent rate networks written as equations, simulated on torch and Brian2.

Public API::

    model = bioplast.load_model("leaky_rate", n_units=64)
    params = model.init_params(seed=0)
    ds = bioplast.simulate(model, params, inputs, backend="torch")   # xarray.Dataset
    bioplast.save(ds, "run.nc"); ds2 = bioplast.load("run.nc")

    protocol = bioplast.load_protocol("protocols/quickstart.yaml", {"training.epochs": 5})
    result = bioplast.train(protocol)                  # or a list of protocols: an ensemble
    bioplast.save(bioplast.training_dataset(result), "q.nc")
"""

__version__ = "0.1.0"

from .errors import BackendError, BioplastError, CapabilityError, InputError  # noqa: E402

#: the public names and the modules that hold them, imported on first use (PEP 562): the
#: command line answers --help, list and info without loading torch, Brian2 and xarray
_LAZY = {"Model": "model", "list_models": "model_files", "load_model": "model",
         "load": "results", "save": "results", "training_dataset": "results",
         "simulate": "simulation", "load_protocol": "protocol", "train": "training"}

__all__ = ["BackendError", "BioplastError", "CapabilityError", "InputError", *_LAZY,
           "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bioplast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
