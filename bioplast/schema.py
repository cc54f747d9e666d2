"""Names of dataset dimensions, variables and attributes: the one place they are spelled.

docs/architecture.md section 3.4 fixes them; every module that builds or reads a Dataset uses these.
"""

# Dimensions
MEMBER = "member"        # independent networks batched in one model
TRIAL = "trial"
TIME = "time"            # seconds; index k is step k (state recorded at the end of the step)
UNIT = "unit"            # postsynaptic / recorded unit
PRESYNAPTIC = "presynaptic"
INPUT = "input"
OUTPUT = "output"
EPOCH = "epoch"
HEAD = "head"
PASSED_LEVEL = "passed_level"  # curriculum N passed (parameters kept by record.levels)
SNAPSHOT_EPOCH = "snapshot_epoch"  # epochs whose parameters record.snapshots_every kept

# Variables and coordinates
INPUTS = "inputs"
OUTPUTS = "outputs"
TARGETS = "targets"
MASK = "mask"
POPULATION = "population"
READOUT_WEIGHT = "W_out"
READOUT_BIAS = "b_out"

# Global attributes
ATTR_VERSION = "bioplast_version"
ATTR_KIND = "kind"              # "simulation" | "training" | "analysis"
ATTR_MODEL = "model"            # model YAML text (after overrides are applied)
ATTR_MODEL_NAME = "model_name"
ATTR_MODEL_OVERRIDES = "model_overrides"  # JSON text
ATTR_PROTOCOL = "protocol"      # protocol YAML text
ATTR_SEED = "seed"
ATTR_BACKEND = "backend"
ATTR_BACKEND_OPTIONS = "backend_options"  # JSON text
ATTR_RULE = "rule"
ATTR_STATUS = "status"          # "complete" | "interrupted" | "diverged"
ATTR_NOISE = "noise"            # int8 flag
ATTR_DT = "dt"                  # seconds
ATTR_METHOD = "method"
ATTR_CREATED = "created"        # ISO 8601, UTC
ATTR_VERSIONS = "library_versions"  # JSON text
ATTR_COMMAND = "command"

STATUS_COMPLETE = "complete"
STATUS_INTERRUPTED = "interrupted"
STATUS_DIVERGED = "diverged"

# Variable attributes
ATTR_UNITS = "units"            # Brian2 unit name, "1" when dimensionless
ATTR_LONG_NAME = "long_name"
