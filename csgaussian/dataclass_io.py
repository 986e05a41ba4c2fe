"""Config dataclasses to plain dicts and back (run files, stream metadata)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from its ``asdict`` form."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = f.default_factory() if callable(f.default_factory) else f.default
        if value is not None and is_dataclass(default):
            value = dataclass_from_dict(type(default), value)
        kwargs[f.name] = value
    return cls(**kwargs)
