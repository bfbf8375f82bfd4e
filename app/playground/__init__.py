"""The playground: the real bot through :class:`app.App` against an embedded loopback server."""

from __future__ import annotations

from app.playground.session import BANNER, META_HELP, Playground, WorldResolver, run_playground

__all__ = ["BANNER", "META_HELP", "Playground", "WorldResolver", "run_playground"]
