"""Simulation backends: ``torch`` (batched, differentiable) and ``brian2`` (code generation)."""

from .base import BACKENDS, Backend, Trajectory, get_backend

__all__ = ["BACKENDS", "Backend", "Trajectory", "get_backend"]
