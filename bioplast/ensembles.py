"""Ensembles: several networks trained as one batched model along the ``member`` axis.

`member_protocols` expands ``training.members: E`` into E protocols with seeds ``seed,
seed + 1, ...``. `check_ensemble` says whether protocols can share one batched model: they
may differ in seed, optimizer hyperparameters (learning rate, momentum, weight decay,
betas), gradient clipping and in the initialization and values of parameters (e.g. the gain
g of ``W_rec``'s initializer); everything else (equations, sizes, task, rule, regularizers,
budgets, backend) must be the same. `ensemble_key` is the part that must agree, so that
sweeps can group grid points into ensembles.
"""

from __future__ import annotations

import dataclasses
import json

from .errors import InputError
from .protocol import Protocol

#: Protocol settings that may differ between members of one ensemble.
MEMBER_SETTINGS = ("seed", "rule.optimizer.lr", "rule.optimizer.momentum",
                   "rule.optimizer.weight_decay", "rule.optimizer.betas", "rule.grad_clip",
                   "regularizers[i].weight")


def member_protocols(protocol: Protocol) -> list[Protocol]:
    """The protocols of the members of ``training.members: E`` (seeds ``seed + m``)."""
    count = protocol.training.members
    if count == 1:
        return [protocol]
    training = protocol.training.model_copy(update={"members": 1})
    return [dataclasses.replace(protocol, schema=protocol.schema.model_copy(
        update={"seed": protocol.seed + m, "training": training})) for m in range(count)]


def _model_structure(model) -> tuple:
    """What a batched model needs to be the same: equations, sizes, couplings, readout,
    parameter shapes and constraints (not initializers or values)."""
    specs = tuple((name, spec.dims, spec.unit, spec.trainable, spec.min, spec.max,
                   spec.zero_diagonal, spec.column_sign) for name, spec in model.params.items())
    return (str(model.equations), model.method, model.dt, model.n_units, model.n_inputs,
            model.n_outputs, tuple(model.couplings.items()), model.readout,
            model.populations, specs)


def ensemble_key(protocol: Protocol) -> str:
    """Text that is equal for protocols that can train as one ensemble."""
    data = protocol.schema.model_dump(mode="json", exclude={"seed", "name", "description",
                                                            "model"})
    rule = data["rule"]
    rule.pop("grad_clip", None)
    optimizer = rule.get("optimizer") or {}
    for key in ("lr", "momentum", "weight_decay", "betas"):
        optimizer.pop(key, None)
    data["training"].pop("members", None)
    for regularizer in data["regularizers"]:
        regularizer.pop("weight", None)
    return json.dumps({"protocol": data, "model": repr(_model_structure(protocol.model))},
                      sort_keys=True, default=str)


def check_ensemble(protocols: list[Protocol]) -> None:
    """Raise `InputError` unless ``protocols`` can train as one batched ensemble."""
    if not protocols:
        raise InputError("an ensemble needs at least one member")
    first = protocols[0]
    if len(protocols) > 1 and first.schema.backend.name != "torch":
        raise InputError("ensembles (several members) train on the torch backend; run "
                         f"'{first.schema.backend.name}' protocols one network at a time",
                         file=first.file, key="training.members")
    nested = [p for p in protocols if p.training.members > 1]
    if len(protocols) > 1 and nested:
        raise InputError("a protocol with training.members > 1 cannot be one member of an "
                         "ensemble (give one protocol per network, e.g. a grid over seed)",
                         file=nested[0].file, key="training.members")
    key = ensemble_key(first)
    for protocol in protocols[1:]:
        if ensemble_key(protocol) != key:
            raise InputError(
                "members of an ensemble may differ only in "
                f"{', '.join(MEMBER_SETTINGS)} and parameter initialization; "
                f"'{protocol.schema.name}' differs from '{first.schema.name}' in more",
                file=protocol.file)
