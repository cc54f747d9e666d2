"""The words of a model file: integration methods, readout activations, the supported
functions and equation flags, and the keys each section of a model file may have.

Backends import the names they share with the reader from here (through
``bioplast.model``): `INPUT_SOURCE`, `RANDOM_FUNCTIONS`, `RANDOM_MEANS`.
"""

import sympy
from brian2.equations.equations import DIFFERENTIAL_EQUATION, PARAMETER, SUBEXPRESSION

#: Integration methods (``defaults.method``).
METHODS = ("euler", "exponential_euler")
#: Activations a readout may apply (``readout.activation``).
READOUT_ACTIVATIONS = ("identity", "sigmoid", "tanh")
#: The coupling source that names the network's external input.
INPUT_SOURCE = "input"
#: Functions every backend implements (Brian2 names); ``rand``/``randn`` only inside a
#: ``(constant over dt)`` subexpression.
SUPPORTED_FUNCTIONS = frozenset({
    "abs", "arccos", "arcsin", "arctan", "ceil", "clip", "cos", "cosh", "exp", "expm1",
    "exprel", "floor", "int", "log", "log10", "log1p", "sign", "sin", "sinh", "sqrt", "tan",
    "tanh", "rand", "randn"})
#: The functions that draw random numbers.
RANDOM_FUNCTIONS = ("rand", "randn")
#: What a random function becomes with noise off: its mean.
RANDOM_MEANS = {"rand": sympy.Rational(1, 2), "randn": sympy.Integer(0)}
#: Equation flags allowed on each kind of equation.
ALLOWED_FLAGS = {
    PARAMETER: {"trainable", "constant", "shared"},
    SUBEXPRESSION: {"constant over dt"},
    DIFFERENTIAL_EQUATION: set(),
}
#: Flags bioplast reads and strips before Brian2 sees the equations.
BIOPLAST_FLAGS = {"trainable"}
#: The sections of a model file.
TOP_LEVEL_KEYS = ("name", "description", "equations", "couplings", "readout", "parameters",
                  "populations", "initial", "defaults", "references")
#: The settings in ``defaults`` (or overrides) that are not parameter values.
STRUCTURE_KEYS = ("n_units", "n_inputs", "n_outputs", "dt", "method")
#: Overrides with these names (or dotted paths) edit the model document itself.
DOCUMENT_KEYS = ("name", "description", "equations", "couplings", "readout", "parameters",
                 "populations", "initial", "references")
#: ``autapses:`` of a coupling between units: ``true`` (trained), ``false`` (zero diagonal,
#: kept at zero), or this word: the diagonal is zero at initialisation and trained afterwards.
AUTAPSES_START_AT_ZERO = "start_at_zero"
#: The keys allowed in one coupling, the readout, one parameter and one population.
COUPLING_KEYS = ("source", "target", "init", "autapses", "dale", "trainable")
READOUT_KEYS = ("source", "bias", "activation", "init", "bias_init", "trainable")
PARAMETER_KEYS = ("init", "min", "max", "trainable")
POPULATION_KEYS = ("fraction", "sign")
