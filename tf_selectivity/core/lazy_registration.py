"""Keras-serializable classes that `keras.saving.load_model` finds without importing them first.

Keras finds a class saved as ``package>Name`` only under that name in its
registry of custom objects (`keras.saving.get_custom_objects()`), which a
module fills when it is imported. The package imports its modules on first
use, so that ``import tf_selectivity`` stays fast and never starts a backend;
a model file written by it would then not load after a plain
``import tf_selectivity``. `register_lazily` closes that gap without importing
anything: as soon as Keras is imported (at once, if it already is), it puts a
stand-in under each name. A stand-in's `from_config` imports the module that
defines the class and builds the real object; importing that module replaces
the stand-in with the class itself (Keras' own registration).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from typing import Mapping

__all__ = ["register_lazily", "StandIn"]

_lock = threading.Lock()
_pending: dict = {}


class StandIn:
    """Stands in Keras' registry for a class that is not imported yet.

    Args:
        module: the dotted module that defines the class.
        name: the class's name in that module.
    """

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name

    def resolve(self) -> type:
        """The class itself (imports its module, which registers it)."""
        return getattr(importlib.import_module(self.module), self.name)

    def from_config(self, config, *args, **kwargs):
        return self.resolve().from_config(config, *args, **kwargs)

    def __repr__(self) -> str:
        return f"StandIn({self.module}.{self.name})"


def _add_stand_ins() -> None:
    keras = sys.modules["keras"]
    registry = keras.saving.get_custom_objects()
    with _lock:
        classes = dict(_pending)
        _pending.clear()
    for registered_name, module in classes.items():
        registry.setdefault(registered_name, StandIn(module, registered_name.rsplit(">", 1)[-1]))


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of ``keras`` so that the stand-ins
    are added right after Keras has been imported, then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        _remove_finder()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _add_stand_ins()

        spec.loader.exec_module = exec_module
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _AfterKerasImport)]


def _keras_is_imported() -> bool:
    keras = sys.modules.get("keras")
    spec = getattr(keras, "__spec__", None)
    return keras is not None and not getattr(spec, "_initializing", False) and hasattr(keras, "saving")


def register_lazily(classes: Mapping[str, str]) -> None:
    """Makes each class loadable by `keras.saving.load_model` without importing it.

    Args:
        classes: ``{"package>Name": "dotted.module"}``, the name each class is
            registered under (`keras.saving.register_keras_serializable`) and
            the module that defines it.
    """
    with _lock:
        _pending.update(classes)
    if _keras_is_imported():
        _add_stand_ins()
    elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
