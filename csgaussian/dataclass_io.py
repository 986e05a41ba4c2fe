"""Config dataclasses to plain dicts and back (run files, stream metadata)."""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from typing import Any


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from its ``asdict`` form.

    Missing keys take the field's default; a key that names no field is refused (a typo or a
    file from another version would otherwise be dropped silently).

    Raises:
        ValueError: ``data`` is not a dict, or holds a key that is not a field of ``cls``.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} needs a dict of its fields, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(str(key) for key in data if key not in names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
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


def matches_saved(config: Any, saved: Any) -> bool:
    """Whether ``saved`` (a checkpoint's ``asdict`` of a config) holds ``config``'s settings;
    fields added since it was saved count at their defaults, so an older checkpoint resumes."""
    try:
        return asdict(dataclass_from_dict(type(config), saved)) == asdict(config)
    except (TypeError, ValueError):
        return False
