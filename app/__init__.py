"""Transcord's application: the composition root (:class:`App`), the bot, and the playground on top."""

from __future__ import annotations

from app.failures import StartFailure
from app.root import App, build_service, close_service, open_store
from core.transcord import EXTENSIONS, Transcord

__all__ = ["EXTENSIONS", "App", "StartFailure", "Transcord", "build_service", "close_service", "open_store"]
