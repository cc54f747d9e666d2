"""Models are equations: model files read into a validated `Model` (see `bioplast.model.spec`)."""

from .spec import (ALLOWED_FLAGS, BIOPLAST_FLAGS, COUPLING_KEYS, DOCUMENT_KEYS, INPUT_SOURCE,
                   METHODS, PARAMETER_KEYS, POPULATION_KEYS, RANDOM_FUNCTIONS, RANDOM_MEANS,
                   READOUT_ACTIVATIONS, READOUT_KEYS, SHIPPED_MODELS_DIR, STRUCTURE_KEYS,
                   SUPPORTED_FUNCTIONS, TOP_LEVEL_KEYS, Coupling, Model, ParamSpec, Population,
                   Readout, find_model_file, linear_coefficients, list_models, load_model,
                   model_search_path)

__all__ = ["ALLOWED_FLAGS", "BIOPLAST_FLAGS", "COUPLING_KEYS", "DOCUMENT_KEYS", "INPUT_SOURCE",
           "METHODS", "PARAMETER_KEYS", "POPULATION_KEYS", "RANDOM_FUNCTIONS", "RANDOM_MEANS",
           "READOUT_ACTIVATIONS", "READOUT_KEYS", "SHIPPED_MODELS_DIR", "STRUCTURE_KEYS",
           "SUPPORTED_FUNCTIONS", "TOP_LEVEL_KEYS", "Coupling", "Model", "ParamSpec",
           "Population", "Readout", "find_model_file", "linear_coefficients", "list_models",
           "load_model", "model_search_path"]
