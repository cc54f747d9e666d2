"""Model files: where they are found, their names and descriptions.

Light on purpose (YAML only; no Brian2, sympy or torch): ``bioplast list`` and
`bioplast.list_models` answer from here in well under a second. Reading a file into a
validated `Model` (equations, units, parameters) is `bioplast.model.load_model`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .files import check_path, check_regular_file
from .yamlfile import YAML_SUFFIXES, YamlDocument, check_yaml_suffix

#: the model files that ship with bioplast
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def model_search_path() -> list[Path]:
    """Where model names are looked up: ``$BIOPLAST_MODEL_PATH`` (``:``-separated
    directories), then ``./models``, then the shipped models."""
    extra = [Path(p) for p in os.environ.get("BIOPLAST_MODEL_PATH", "").split(os.pathsep) if p]
    return [*extra, Path.cwd() / "models", SHIPPED_MODELS_DIR]


def list_models() -> list[str]:
    """Names of the model files found on the model search path."""
    names = []
    for directory in model_search_path():
        if directory.is_dir():
            names += [p.stem for p in sorted(directory.glob("*.yaml")) if p.stem not in names]
    return names


def find_model_file(source: str | os.PathLike) -> Path:
    """The model file for a path, or for a shipped model name such as ``leaky_rate``
    (looked up on `model_search_path`)."""
    check_path(str(source), "model file")
    path = Path(source)
    if path.suffix in YAML_SUFFIXES or os.path.lexists(path) or os.sep in str(source):
        check_yaml_suffix(path, "model")
        return check_regular_file(path, "model file")
    for directory in model_search_path():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{source}{suffix}"
            if candidate.exists():
                return candidate
    raise InputError(f"no model named '{source}' (shipped models: "
                     f"{', '.join(list_models()) or 'none'}; or give a path to a .yaml file)",
                     file=str(source))


def model_description(document: YamlDocument) -> str:
    """The one-line ``description`` of a model file ("" without one)."""
    return str(document.data.get("description", ""))


def describe_model(source: str | os.PathLike) -> str:
    """The description of the model file `find_model_file` finds for ``source``, read
    without validating the model; InputError naming the file if it is not a readable YAML
    mapping."""
    return model_description(YamlDocument.from_path(find_model_file(source)))
