"""Models are equations: a YAML file with Brian2 equations for one unit plus couplings.

`load_model` reads a model file (or a shipped model by name), validates it completely and
returns a `Model`: a frozen, hashable spec holding the parsed ``brian2.Equations``, the
couplings ``target = W @ source``, the readout, the parameter specs (shape, unit, init,
bounds, trainable) and sympy forms of every expression for the backends. Nothing in a
model file is ever executed: YAML is read with ``safe_load``, equations with Brian2's
parser, expressions with Brian2's sympy conversion. Every error names the file and the
line or key.

The package, one job a module (every name below is importable from ``bioplast.model``):

- `bioplast.model.vocabulary`: the words of a model file (`METHODS`, `INPUT_SOURCE`,
  `AUTAPSES_START_AT_ZERO`, `SUPPORTED_FUNCTIONS`, `RANDOM_FUNCTIONS`, `RANDOM_MEANS`, the
  flags, each section's keys).
- `bioplast.model.parts`: the frozen values a model is made of (`ParamSpec`, `Coupling`,
  `Readout`, `Population`).
- `bioplast.model.forms`: the sympy forms of the equations (`_SympyForms`) and
  `linear_coefficients`.
- `bioplast.model.reader`: one document (plus overrides) read and validated (`_ModelReader`).
- `bioplast.model.spec`: the `Model` (values, constraints, checks, equality, hash,
  `Model.structure_key`) and `StructureKey`.
- `bioplast.model.loading`: `load_model`.

Model files are found by `bioplast.model_files` (`find_model_file`, `model_search_path`,
`list_models`, `SHIPPED_MODELS_DIR`, re-exported here), which ``bioplast list`` uses without
loading Brian2.

File layout (see ``models/*.yaml`` and docs/architecture.md section 3.3)::

    name: leaky_rate
    description: tau dr/dt = -r + tanh(I_rec + I_in + b)
    equations: |
      dr/dt = (-r + tanh(I_rec + I_in + b)) / tau : 1
      b : 1 (trainable)
      tau : second (constant, shared)
    couplings:            # target = W @ source; targets are declared automatically
      # autapses: true (trained; the default), false (kept at zero) or start_at_zero
      # (zero at initialisation, trained afterwards)
      W_rec: {source: r, target: I_rec, init: xavier_uniform, autapses: false}
      W_in:  {source: input, target: I_in, init: xavier_uniform}
    readout: {source: r, bias: true, activation: identity}
    parameters: {tau: {min: 1 ms}}
    populations: {E: {fraction: 0.8, sign: 1}, I: {fraction: 0.2, sign: -1}}
    initial: {r: 0}
    defaults: {n_units: 100, n_inputs: 1, n_outputs: 1, tau: 10 ms, dt: 5 ms, method: euler}
"""

from ..model_files import SHIPPED_MODELS_DIR, find_model_file, list_models, model_search_path
from .forms import linear_coefficients
from .loading import load_model
from .parts import Coupling, ParamSpec, Population, Readout
from .spec import Model, StructureKey
from .vocabulary import (ALLOWED_FLAGS, AUTAPSES_START_AT_ZERO, BIOPLAST_FLAGS, COUPLING_KEYS,
                         DOCUMENT_KEYS, INPUT_SOURCE, METHODS, PARAMETER_KEYS, POPULATION_KEYS,
                         RANDOM_FUNCTIONS, RANDOM_MEANS, READOUT_ACTIVATIONS, READOUT_KEYS,
                         STRUCTURE_KEYS, SUPPORTED_FUNCTIONS, TOP_LEVEL_KEYS)

__all__ = ["ALLOWED_FLAGS", "AUTAPSES_START_AT_ZERO", "BIOPLAST_FLAGS", "COUPLING_KEYS",
           "DOCUMENT_KEYS", "INPUT_SOURCE", "METHODS", "PARAMETER_KEYS", "POPULATION_KEYS",
           "RANDOM_FUNCTIONS", "RANDOM_MEANS", "READOUT_ACTIVATIONS", "READOUT_KEYS",
           "SHIPPED_MODELS_DIR", "STRUCTURE_KEYS", "SUPPORTED_FUNCTIONS", "TOP_LEVEL_KEYS",
           "Coupling", "Model", "ParamSpec", "Population", "Readout", "StructureKey",
           "find_model_file", "linear_coefficients", "list_models", "load_model",
           "model_search_path"]
