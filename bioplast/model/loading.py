"""`load_model`: a model from a file, a shipped model's name, YAML text, a parsed document
or another model (re-read with more overrides). Model files are found by
`bioplast.model_files` (YAML only, light enough for ``bioplast list``)."""

from __future__ import annotations

import os

from ..model_files import find_model_file
from ..yamlfile import YamlDocument, load_yaml
from .spec import Model


def load_model(source: str | os.PathLike, /, **overrides) -> Model:
    """Load and validate a model file.

    Parameters
    ----------
    source : str, path, Model or YamlDocument
        A path to a YAML model file, YAML text (anything containing a newline), the name
        of a shipped model (``leaky_rate``, ``leaky_current``, ``leaky_tau``, ``ei_rate``,
        ``phases_rnn``, ``timescale_rnn``), a parsed document, or a model (re-read with more
        overrides).
    **overrides
        Replace ``defaults`` entries: ``n_units``, ``n_inputs``, ``n_outputs``, ``dt``,
        ``method``, or the value of any parameter (``tau="20 ms"``). Document sections and
        dotted paths edit the file's content (mappings are merged):
        ``readout={"activation": "sigmoid"}``, ``**{"readout.activation": "sigmoid"}``,
        ``**{"couplings.W_rec.init": {"kind": "scaled_normal", "gain": 1.5}}``.

    Raises
    ------
    InputError
        For anything wrong in the file, naming the file and the line or key.
    """
    if isinstance(source, Model):
        return Model(YamlDocument(source.text, source.file), {**source.overrides, **overrides})
    if isinstance(source, YamlDocument):
        return Model(source, overrides)
    if isinstance(source, str) and "\n" in source:
        document = load_yaml(source)
    else:
        document = YamlDocument.from_path(find_model_file(source))
    return Model(document, overrides)
