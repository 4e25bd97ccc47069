"""The built-in reference server, the default target of `conformance run`."""

from __future__ import annotations

from ._run import ServerThread, serve_forever
from .app import DEFAULT_MODEL, ServerConfig, create_app
from .faults import FAULTS, VARIANTS

__all__ = ["DEFAULT_MODEL", "FAULTS", "VARIANTS", "ServerConfig", "ServerThread", "create_app", "serve_forever"]
