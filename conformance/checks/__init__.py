"""The check catalogue. Every module in this package registers its checks on import."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from ._registry import RegisteredCheck, all_checks, check, select

__all__ = ["RegisteredCheck", "all_checks", "check", "load_all", "select"]


@functools.cache  # once per process
def load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
