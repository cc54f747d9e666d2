"""Protocol files: a whole training run in one YAML file (docs/architecture.md section 3.2).

Top-level keys: ``name``, ``description``, ``seed``, ``model``, ``task``, ``rule``,
``rule_options``, ``regularizers``, ``training``, ``backend``, ``record``. Validated with
pydantic: unknown keys and wrong types are `InputError` s naming the file, the line and the
key path. ``--set key.path=value`` edits the document before validation. ``model`` names a
model file (relative to the protocol) or a shipped model, with overrides::

    name: quickstart
    seed: 0
    model: {file: leaky_current, n_units: 64}
    task: {name: flip_flop, n_bits: 3}
    rule: {name: bptt, optimizer: {name: adam, lr: 0.01}, grad_clip: 1.0}
    training: {epochs: 30, steps_per_epoch: 20, batch_size: 32}
    backend: {name: torch, dtype: float32}
    record: {trials: 8}

``rule_options`` holds options per rule name, for the rule a setting chooses
(``--set rule.name=eprop``, a sweep over ``rule.name``, ``bioplast compare-rules``): see
`resolve_rule`. The effective protocol (`Protocol.text`) holds the resolved ``rule:`` and
no ``rule_options``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import numpy as np
import pydantic
import yaml

from .errors import InputError
from .limits import array_bytes, check_memory
from .model import Model, find_model_file, load_model
from .regularizers import REGULARIZERS, Regularizer
from .rules import RULES, LearningRule, RuleConfig
from .backends import spec
from .backends.torch import torch_device
from .tasks import TASKS, Task
from .tasks.base import TimingError
from .yamlfile import YamlDocument, check_yaml_suffix, format_key, load_yaml, shown_key


#: the largest count a protocol may give (epochs, batch sizes, ...): bounds runs, not memory
MAX_COUNT = 10**9


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)


class TrainingSection(_Strict):
    epochs: int = pydantic.Field(100, ge=1, le=MAX_COUNT, description="epoch budget")
    steps_per_epoch: int = pydantic.Field(100, ge=1, le=MAX_COUNT)
    batch_size: int = pydantic.Field(64, ge=1, le=MAX_COUNT)
    fixed_batch: bool = pydantic.Field(
        False, description="train every update on one batch (trials and initial states) "
                           "per network, drawn once from its seed and reused, as the TCR "
                           "paper's public code does; a curriculum draws a new one at each "
                           "level (false: a fresh batch per update)")
    eval_batches: int = pydantic.Field(
        4, ge=1, le=MAX_COUNT,
        description="test batches after each epoch: eval_batches x eval_batch_size test "
                    "trials give the test loss, the accuracy and the curriculum's level-up "
                    "with score_on: test (the curriculum paper: 50 x 256 = 12,800 trials every 600 updates)")
    eval_batch_size: int | None = pydantic.Field(
        None, ge=1, le=MAX_COUNT, description="trials per test batch (null: batch_size)")
    checkpoint_every: int = pydantic.Field(10, ge=1, le=MAX_COUNT,
                                           description="epochs between checkpoints")
    target_accuracy: float | None = pydantic.Field(None, gt=0, le=1,
                                                   description="stop when reached")
    score_on: Literal["test", "training"] = pydantic.Field(
        "test", description="test: loss and accuracy on eval_batches fresh test batches after "
                            "each epoch; training: on the epoch's last training batch, from "
                            "the update's own forward pass where the rule makes one (BPTT), "
                            "as the papers' code scores (no extra pass)")
    alignment_every: int | None = pydantic.Field(
        10, ge=1, le=MAX_COUNT, description="epochs between comparisons of the rule's "
                                            "update with the BPTT gradient (null: never)")
    alignment_of_exact: bool = pydantic.Field(
        False, description="compare a rule whose update is the exact gradient (BPTT "
                           "without truncation) with BPTT too: 1 to rounding, a check of "
                           "the comparison (false: skipped, NaN)")
    stop_at_max_level: bool = True
    noise: bool = True
    members: int = pydantic.Field(1, ge=1, le=MAX_COUNT,
                                  description="networks trained as one batched ensemble, "
                                              "seeds seed, seed+1, ...")


class _BackendOptions(_Strict):
    @pydantic.model_validator(mode="after")
    def _options_of_the_chosen_backend(self):
        for backend, options in spec.OPTIONS.items():
            for option in options:
                if backend != "torch" and backend != self.name and \
                        getattr(self, option.name) is not None:
                    raise ValueError(f"{option.name} applies to name: {backend}")
        return self


def _backend_section() -> type[_Strict]:
    """The ``backend:`` section, derived from `bioplast.backends.spec`: ``name``, the torch
    options with their protocol defaults (the torch step also evaluates when another
    backend trains) and every other backend's options (null: that backend's default)."""
    fields: dict[str, Any] = {"name": (Literal[tuple(spec.OPTIONS)], "torch")}
    for backend, options in spec.OPTIONS.items():
        for option in options:
            kind = Literal[option.choices] if option.choices else str
            if backend == "torch":
                default = spec.PROTOCOL_DEFAULTS.get(option.name, option.default)
                fields[option.name] = (kind, pydantic.Field(default, description=option.help))
            else:
                fields[option.name] = (kind | None, pydantic.Field(
                    None, description=f"{option.help} (backend {backend} only)"))
    return pydantic.create_model("BackendSection", __base__=_BackendOptions, **fields)


BackendSection = _backend_section()


def backend_options(section) -> dict[str, str]:
    """The options a protocol's ``backend:`` section gives its chosen backend (those left
    null take the backend's defaults)."""
    return {option.name: getattr(section, option.name) for option in spec.OPTIONS[section.name]
            if getattr(section, option.name) is not None}


class RecordSection(_Strict):
    trials: int = pydantic.Field(8, ge=0, le=MAX_COUNT,
                                 description="test trials recorded in the result")
    variables: list[str] | None = None
    levels: bool = pydantic.Field(
        False, description="keep the parameters as they were when each curriculum level "
                           "was passed (as the paper saves a model per N)")
    snapshots_every: int | None = pydantic.Field(
        None, ge=1, le=MAX_COUNT, description="keep the parameters after every k-th epoch "
                                              "(epochs 0, k, 2k, ... and the last)")


def _model_spec(value):
    if not isinstance(value, (str, dict)):
        raise ValueError("must be a model name or path, or a mapping with 'file' and overrides")
    return value


class ProtocolSchema(_Strict):
    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                               description="letters, digits, _ . - (the default output name)")
    description: str = ""
    seed: int = pydantic.Field(0, ge=0, lt=2**63)
    model: Annotated[Any, pydantic.BeforeValidator(_model_spec)]
    task: dict[str, Any]
    rule: dict[str, Any] = pydantic.Field(default_factory=lambda: {"name": "bptt"})
    rule_options: dict[str, dict[str, Any]] = pydantic.Field(
        default_factory=dict, description="options per rule name, used when that rule is "
                                          "the one trained (see resolve_rule)")
    regularizers: list[dict[str, Any]] = pydantic.Field(default_factory=list)
    training: TrainingSection = TrainingSection()
    backend: BackendSection = BackendSection()
    record: RecordSection = RecordSection()


@dataclass
class Protocol:
    """A validated protocol and the objects it names.

    Attributes
    ----------
    schema : ProtocolSchema
    text : str
        The effective protocol (after ``--set`` edits) as YAML: what results store.
    file : str
    model : Model
        Loaded with the protocol's overrides and the task's input/output sizes.
    task : Task
    rule : LearningRule
    regularizers : list of Regularizer
    """

    schema: ProtocolSchema
    text: str
    file: str
    model: Model
    task: Task
    rule: LearningRule
    regularizers: list[Regularizer]

    @property
    def seed(self) -> int:
        return self.schema.seed

    @property
    def training(self) -> TrainingSection:
        return self.schema.training


def apply_settings(data: dict, settings: Mapping[str, Any], name: str) -> dict:
    """``data`` with ``key.path = value`` edits applied (values already parsed)."""
    data = copy.deepcopy(data)
    if isinstance(data.get("model"), str) and any(k.startswith("model.") for k in settings):
        data["model"] = {"file": data["model"]}  # "model: NAME" is short for {file: NAME}
    for dotted, value in settings.items():
        *parents, last = dotted.split(".")
        node = data
        for depth, part in enumerate(parents):
            node = _item(node, part, dotted, name, create=True)
            if not isinstance(node, (dict, list)):
                raise InputError(f"cannot set '{dotted}': '{'.'.join(parents[:depth + 1])}' "
                                 "is not a mapping or list", file=name, key="--set")
        if isinstance(node, list):
            _item(node, last, dotted, name, create=False)  # the index must exist
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _item(node, part: str, dotted: str, name: str, create: bool):
    """``node[part]``: a key of a mapping (created empty if missing and ``create``) or an
    index of a list (``regularizers.0.weight``)."""
    if isinstance(node, list):
        if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
            raise InputError(f"cannot set '{dotted}': the list has no item '{part}' (items "
                             f"0 to {len(node) - 1})", file=name, key="--set")
        return node[int(part)]
    return node.setdefault(part, {}) if create else node.get(part)


class _Locator:
    """Locates errors in a protocol: at the line of a key in the file, or, for values that
    came from ``--set``, at the setting."""

    def __init__(self, document: YamlDocument, settings: Mapping[str, Any], name: str):
        self.document = document
        self.name = name
        self.set_paths = [tuple(key.split(".")) for key in settings]

    def error(self, message: str, key_path) -> InputError:
        path = tuple(key_path)
        text = tuple(str(part) for part in path)
        for set_path in self.set_paths:
            if text[:len(set_path)] == set_path:
                return InputError(message, file=self.name,
                                  key=f"{format_key(path)} (from --set)")
        literal = (*path[:1], ".".join(text[1:])) if len(path) > 2 else path
        lookup = literal if self.document.line(literal) != self.document.line(path[:1]) \
            else path
        return InputError(message, file=self.name, line=self.document.line(lookup),
                          key=format_key(path) or None)


_MAPPING_ERRORS = ("model_type", "model_attributes_type", "dict_type")


def _validation_error(document: _Locator, error: pydantic.ValidationError,
                      prefix=()) -> InputError:
    """The first pydantic error as a located InputError."""
    first = error.errors()[0]
    location = [*prefix, *[part for part in first["loc"] if not str(part).startswith(
        ("function-", "constrained-"))]]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown key '{shown_key(location[-1])}'"
    elif first["type"] == "missing":
        message = f"missing required key '{location[-1]}'"
        location = location[:-1]
    elif first["type"] in _MAPPING_ERRORS:
        message = "must be a mapping (key: value)"
    more = len(error.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return document.error(message, location)


def _validate(document, cls, data, prefix=()):
    try:
        return cls.model_validate(data)
    except pydantic.ValidationError as error:
        raise _validation_error(document, error, prefix) from None


def _named_section(document: _Locator, data: dict, key, registry):
    """``(class, validated config)`` of a ``{name: ..., **config}`` section at ``key`` (a
    name or a key path)."""
    path = [key] if isinstance(key, str) else list(key)
    section = dict(data)
    if "name" not in section:
        raise document.error(f"missing required key 'name' (one of "
                             f"{', '.join(registry.names())})", path)
    name = section.pop("name")
    try:
        cls = registry.get(name)
    except InputError as error:
        raise document.error(error.message, [*path, "name"]) from None
    return cls, _validate(document, cls.Config, section, tuple(path))


#: the options every rule takes (`bioplast.rules.RuleConfig`): kept when the rule is switched
SHARED_RULE_OPTIONS = tuple(RuleConfig.model_fields)


def _check_rule_options(document: _Locator, options) -> dict:
    """The ``rule_options`` mapping, each entry checked against its rule's ``Config``."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise document.error("must be a mapping from rule names to their options",
                             ["rule_options"])
    for name, entry in options.items():
        try:
            cls = RULES.get(str(name))
        except InputError as error:
            raise document.error(error.message, ["rule_options", name]) from None
        if not isinstance(entry, dict):
            raise document.error("must be a mapping of the rule's options ({} for its "
                                 "defaults)", ["rule_options", name])
        if "name" in entry:
            raise document.error("the rule is named by its key in rule_options: give only "
                                 "its options", ["rule_options", name, "name"])
        _validate(document, cls.Config, entry, ("rule_options", name))
    return options


def resolve_rule(document: _Locator, data: dict, rule_settings: Mapping[str, Any]) -> dict:
    """``data`` (a protocol document) with its ``rule:`` section for the rule that
    ``rule_settings`` (the ``rule`` / ``rule.*`` settings, applied afterwards) choose.

    When ``rule.name`` is set to another rule than the document's, the rule is switched:
    ``rule:`` keeps the options every rule takes (`SHARED_RULE_OPTIONS`: ``optimizer``,
    ``grad_clip``) and drops the options of the document's rule. Then the entry of the
    chosen rule in ``rule_options`` (validated, like every entry) is applied: its keys
    replace those of ``rule:`` (a whole ``optimizer:`` block replaces the other)."""
    options = _check_rule_options(document, data.get("rule_options"))
    section = data.get("rule", {"name": "bptt"})
    if not isinstance(section, dict):
        return data  # the schema says what is wrong with it
    chosen = rule_settings.get("rule.name", section.get("name"))
    if not isinstance(chosen, str):
        return data
    if chosen != section.get("name"):
        section = {key: value for key, value in section.items()
                   if key in SHARED_RULE_OPTIONS}
    return {**data, "rule": {"name": chosen, **section, **options.get(chosen, {})}}


def _load_model(document: _Locator, spec, base_dir: Path, sizes: Mapping[str, int],
                model_text: str | None, model_name: str | None = None) -> Model:
    spec = {"file": spec} if isinstance(spec, str) else dict(spec)
    if "file" not in spec:
        raise document.error("missing required key 'file' (a model file or a shipped model "
                             "name)", ["model"])
    source = spec.pop("file")
    for key, value in sizes.items():
        if key in spec and spec[key] != value:
            raise document.error(f"the task needs {key} = {value}, the protocol sets "
                                 f"{spec[key]}", ["model", key])
        spec[key] = value
    if model_text is None:
        candidate = base_dir / str(source)
        try:
            source = find_model_file(candidate if candidate.exists() else source)
        except InputError as error:
            raise document.error(error.message, ["model", "file"]) from None
    else:
        source = YamlDocument(model_text, model_name or "<model text>")
    try:
        return load_model(source, **spec)
    except InputError as error:
        if error.key and error.key.startswith("override "):  # a problem of the protocol
            raise document.error(error.message,
                                 ["model", *error.key.removeprefix("override ").split(".")]
                                 ) from None
        raise


#: arrays of a trial's size that drawing it allocates (an estimate on the low side)
TRIAL_ARRAYS = 4
#: tensors of a state's size that a training step keeps per unit (an estimate on the low side)
STEP_TENSORS = 3


def _check_training_memory(document: _Locator, schema: ProtocolSchema, model: Model,
                           n_steps: int) -> None:
    """InputError at ``training.batch_size`` if one batch of the longest trials the task
    can reach and the states they record (a lower bound of what an update allocates)
    cannot fit in memory."""
    training = schema.training
    itemsize = 4 if schema.backend.dtype == "float32" else 8
    # per step, the autograd graph keeps each state and the activation and input current it
    # came from (STEP_TENSORS of them), besides the trial's inputs, targets and mask
    per_trial_step = STEP_TENSORS * model.n_units * len(model.state_names) \
        + TRIAL_ARRAYS * (model.n_inputs + 2 * model.n_outputs)
    recorded = len(schema.record.variables or model.recordable)
    sizes = {("training", "batch_size"): (training.batch_size, per_trial_step),
             ("training", "eval_batch_size"): (training.eval_batch_size, per_trial_step),
             ("record", "trials"): (schema.record.trials, TRIAL_ARRAYS * (
                 model.n_units * recorded + model.n_inputs + 3 * model.n_outputs))}
    for key, (size, per_step) in sizes.items():
        if not size:
            continue
        needed = array_bytes(training.members, size, n_steps, per_step, itemsize=itemsize)
        try:
            check_memory(needed, f"{training.members} x {size} trials x {n_steps} steps x "
                                 f"{model.n_units} units")
        except InputError as error:
            raise document.error(error.message, list(key)) from None


def load_protocol(source: str | Path, settings: Mapping[str, Any] | None = None, *,
                  model_text: str | None = None, name: str | None = None,
                  model_name: str | None = None) -> Protocol:
    """Read, edit (``settings``: ``{"training.epochs": 5}``) and validate a protocol.

    ``source`` is a path or YAML text (``name`` then names it in messages).
    ``model_text`` replaces the model file's content (used to re-run a result with the
    exact model it stored; ``model_name`` names it in messages).
    """
    if not (isinstance(source, str) and "\n" in source):
        check_yaml_suffix(source, "protocol")
    raw = load_yaml(source, name)
    settings = dict(settings or {})
    document = _Locator(raw, settings, raw.name)
    # the rule is resolved (rule_options, a switched rule) before its own settings apply
    rule_settings = {key: value for key, value in settings.items()
                     if key == "rule" or key.startswith("rule.")}
    data = apply_settings(raw.data, {key: value for key, value in settings.items()
                                     if key not in rule_settings}, raw.name)
    data = apply_settings(resolve_rule(document, data, rule_settings), rule_settings,
                          raw.name)
    text = yaml.safe_dump({key: value for key, value in data.items() if key != "rule_options"},
                          sort_keys=False)
    schema = _validate(document, ProtocolSchema, data)
    base_dir = Path(raw.name).parent if Path(raw.name).exists() else Path.cwd()
    # the task needs the model's time step, and the model the task's sizes
    probe = _load_model(document, schema.model, base_dir, {}, model_text, model_name)
    task_class, task_config = _named_section(document, schema.task, "task", TASKS)
    try:
        task = task_class(task_config, probe.dt)
        sizes = {"n_inputs": task.n_inputs, "n_outputs": task.n_outputs}
        n_steps = task.max_steps(task.largest_level())
        try:
            # drawing a trial makes a few arrays of its size (pulses, signs, targets, mask)
            check_memory(TRIAL_ARRAYS * array_bytes(n_steps, task.n_inputs + 2 * task.n_outputs),
                         f"drawing one trial of {n_steps} steps x {task.n_inputs} inputs x "
                         f"{task.n_outputs} outputs")
        except InputError as error:
            raise document.error(error.message, ["task"]) from None
        task.sample(1, np.random.default_rng(0), task.initial_level())  # timing checks
    except TimingError as error:
        raise document.error(str(error), ["task", error.field]) from None
    model = _load_model(document, schema.model, base_dir, sizes, model_text, model_name)
    rule_class, rule_config = _named_section(document, schema.rule, "rule", RULES)
    offered = spec.CAPABILITIES[schema.backend.name]
    missing = sorted(rule_class.requires - offered)
    if missing:
        fitting = [n for n in RULES.names() if RULES.get(n).requires <= offered]
        backends = [n for n in spec.OPTIONS if rule_class.requires <= spec.CAPABILITIES[n]]
        raise document.error(f"rule '{rule_class.name}' needs a backend with "
                             f"{' and '.join(c.replace('_', ' ') for c in missing)} "
                             f"({', '.join(backends)}; rules that run on "
                             f"{schema.backend.name}: {', '.join(fitting)})",
                             ["backend", "name"])
    regularizers = []
    for index, entry in enumerate(schema.regularizers):
        regularizer_class, config = _named_section(document, entry, ["regularizers", index],
                                                   REGULARIZERS)
        regularizer = regularizer_class(config)
        problem = regularizer.check(model)
        if problem:
            raise document.error(problem[1], ["regularizers", index, problem[0]])
        regularizers.append(regularizer)
    if model.readout is None:
        raise document.error(f"model '{model.name}' has no readout; training needs one",
                             ["model"])
    for variable in schema.record.variables or []:
        if variable not in model.recordable:
            raise document.error(f"cannot record '{variable}' (recordable: "
                                 f"{', '.join(model.recordable)})", ["record", "variables"])
    if schema.training.members > 1 and "member_training" not in offered:
        raise document.error("ensembles (members > 1) train on the "
                             f"{' or '.join(spec.having('member_training'))} backend",
                             ["training", "members"])
    try:
        torch_device(schema.backend.device)
    except InputError as error:
        raise document.error(error.message, ["backend", "device"]) from None
    rule = rule_class(rule_config)
    problem = rule.check(model)
    if problem:
        raise document.error(problem[1], ["rule", problem[0]])
    _check_training_memory(document, schema, model, n_steps)
    return Protocol(schema, text, raw.name, model, task, rule, regularizers)


