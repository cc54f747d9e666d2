"""Checkpoint files: where a run's checkpoint lives (`checkpoint_path`), reading one
(`read_checkpoint`, `checkpoint_is_complete`), and a trainer's state in one
(`Checkpointing`: written atomically, checked against the run and loaded back).

A checkpoint is a ``torch.save`` of tensors and plain values only, read back with
``weights_only=True``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..errors import InputError
from ..files import atomic_write, check_regular_file

CHECKPOINT_FORMAT = 4  # 3: learning rates in the history, schedule state; 4: reliability


def _first_difference(old: str, new: str) -> str:
    """The first line where two protocol texts differ, for messages."""
    for before, after in zip(old.splitlines() + [""], new.splitlines() + [""]):
        if before != after:
            return f"checkpoint: '{before.strip()}', now: '{after.strip()}'"
    return "same text"


def read_checkpoint(path: str | Path) -> dict:
    """The content of a checkpoint file (tensors and plain values only: ``weights_only``),
    or InputError naming it if it is not a readable bioplast checkpoint."""
    path = check_regular_file(path, "checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # on the CPU: generator states and history must be CPU tensors; parameters and
            # optimizer state are copied onto the device by the trainer
            saved = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # a foreign or damaged file: say so, do not guess
        raise InputError("cannot read the checkpoint (damaged, or not a bioplast "
                         "checkpoint); continue without --resume, or start over with "
                         "--overwrite", file=str(path)) from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise InputError("not a bioplast checkpoint of this version; start over with "
                         "--overwrite", file=str(path))
    return saved


def checkpoint_is_complete(saved: dict) -> bool:
    """Whether a checkpoint (`read_checkpoint`) was written at the end of its run."""
    return bool(saved.get("complete", False))


def _layout_difference(fresh, saved, path: str) -> str | None:
    """Where ``saved`` differs from ``fresh`` in keys, tensor shapes or dtypes (None if
    it does not)."""
    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            return f"'{path}' is not a tensor"
        if saved.shape != fresh.shape or saved.dtype != fresh.dtype:
            return (f"'{path}' has shape {tuple(saved.shape)} ({saved.dtype}), this run needs "
                    f"{tuple(fresh.shape)} ({fresh.dtype})")
        return None
    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            return f"'{path}' does not hold the entries this run needs"
        for key, value in fresh.items():
            problem = _layout_difference(value, saved[key], f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(fresh, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(fresh):
            return f"'{path}' does not have one entry per network"
        for index, (a, b) in enumerate(zip(fresh, saved)):
            problem = _layout_difference(a, b, f"{path}[{index}]")
            if problem:
                return problem
    return None


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of a run writing ``output`` lives."""
    output = Path(output)
    return output.with_name(output.name + ".checkpoint.pt")


class Checkpointing:
    """The checkpoint of a `bioplast.training.loop.Trainer` (which mixes this in): its
    state as tensors and plain values (protocol and model texts, seeds, parameters, rule
    and optimizer state, each member's random streams, curriculum, history and status),
    written atomically and loaded back after checks against the run."""

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "protocols": [p.text for p in self.protocols],
                "models": [p.model.text for p in self.protocols],
                "seeds": [p.seed for p in self.protocols], "next_epoch": self.next_epoch,
                "complete": self.next_epoch >= self.protocol.training.epochs
                or not self.active(),
                "params": {k: v.detach().clone() for k, v in self.params.items()},
                "rule": self.rule.state_dict(self.rule_state),
                "optimizer": self.optimizer.state_dict(),
                "rng": [json.dumps(m.rng.bit_generator.state) for m in self.members],
                "generator": [m.generator.get_state() for m in self.members],
                "curriculum": [m.curriculum.state_dict() for m in self.members],
                "history": [m.history.state_dict() for m in self.members],
                "finished": [m.finished for m in self.members],
                "status": [m.status for m in self.members]}

    def save_checkpoint(self, path: Path) -> None:
        with atomic_write(path) as temporary:
            torch.save(self.state_dict(), temporary)

    def load_checkpoint(self, path: Path) -> None:
        """Continue from the checkpoint at ``path``: InputError naming it if it cannot be
        read, belongs to other settings (says what changed) or does not fit this run."""
        saved = read_checkpoint(path)
        texts = [p.text for p in self.protocols]
        if saved.get("protocols") != texts or saved.get("seeds") != \
                [p.seed for p in self.protocols]:
            old = (saved.get("protocols") or [""])[0]
            raise InputError("the checkpoint belongs to another protocol or other settings ("
                             f"{_first_difference(old, texts[0])}); run without --resume to "
                             "start over", file=str(path))
        models = [p.model.text for p in self.protocols]
        if "models" in saved and saved["models"] != models:
            old = (saved.get("models") or [""])[0]
            raise InputError("the model file changed since the checkpoint was written ("
                             f"{_first_difference(old, models[0])}); restore it, or start "
                             "over with --overwrite", file=str(path))
        fresh = self.state_dict()
        for key in ("params", "rule", "optimizer", "generator"):
            problem = _layout_difference(fresh[key], saved.get(key), key)
            if problem:
                raise InputError(f"damaged checkpoint: {problem}; start over with "
                                 "--overwrite", file=str(path))
        try:
            with torch.no_grad():
                for name, value in saved["params"].items():
                    self.params[name].copy_(value)
            self.rule.load_state_dict(self.rule_state, saved["rule"])
            self.optimizer.load_state_dict(saved["optimizer"])
            for index, member in enumerate(self.members):
                member.rng.bit_generator.state = json.loads(saved["rng"][index])
                member.generator.set_state(saved["generator"][index])
                member.curriculum.load_state_dict(saved["curriculum"][index])
                member.history.load_state_dict(saved["history"][index])
                member.finished = str(saved["finished"][index])
                member.status = str(saved["status"][index])
            self.next_epoch = int(saved["next_epoch"])
            lengths = {len(m.history) for m in self.members if not m.finished}
            if not 0 <= self.next_epoch <= self.protocol.training.epochs or \
                    any(n != self.next_epoch for n in lengths):
                raise ValueError("the epoch count does not match the history")
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError,
                OverflowError) as error:
            raise InputError(f"damaged checkpoint ({type(error).__name__}: "
                             f"{' '.join(str(error).split())[:120]}); start over with "
                             "--overwrite", file=str(path)) from None
