"""The edit operations' registry: every :class:`~.base.Operation` subclass defined in a module
of this package, by its stream code.

Adding an operation is adding one module here (docs/architecture.md): the CLI's flags, the edit
layer's schema, the memory budget and the viewer's buttons all iterate :data:`OPERATIONS`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Operation, Param, Value, by_order


def _discover() -> dict[str, type[Operation]]:
    found: list[type[Operation]] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found += [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, Operation)
            and obj.__module__ == module.__name__
            and "code" in vars(obj)
        ]
    registry: dict[str, type[Operation]] = {}
    for op in by_order(found):
        if op.code in registry:
            raise ImportError(f"edit operation code {op.code!r} is defined twice")
        registry[op.code] = op
    return registry


OPERATIONS: dict[str, type[Operation]] = _discover()
"""Every edit operation by its code, in the CLI's and the viewer's order."""


def operation(code: str) -> type[Operation]:
    """The operation of ``code``; ValueError names the known ones."""
    try:
        return OPERATIONS[code]
    except KeyError:
        raise ValueError(f"unknown edit {code!r} (choose from {', '.join(OPERATIONS)})") from None


__all__ = ["OPERATIONS", "Operation", "Param", "Value", "operation"]
