"""Engines: one runner per engine behind one interface (:class:`~model_service.engines.base.Engine`).

The engine core drives whichever engine serves a model; the transformers runner is the first.
"""

from __future__ import annotations

from model_service.engines.base import Engine, EngineRow, FillWork
from model_service.engines.transformers import TransformersEngine

__all__ = ["Engine", "EngineRow", "FillWork", "TransformersEngine"]
