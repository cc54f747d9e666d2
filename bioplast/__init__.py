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
from .model import Model, list_models, load_model  # noqa: E402
from .results import load, save, training_dataset  # noqa: E402
from .simulation import simulate  # noqa: E402
from .protocol import load_protocol  # noqa: E402
from .training import train  # noqa: E402

__all__ = ["BackendError", "BioplastError", "CapabilityError", "InputError", "Model", "list_models",
           "load_model", "simulate", "save", "load", "load_protocol", "train", "training_dataset",
           "__version__"]
