"""The stream metadata's schema, as data: one table per config dataclass (docs/format.md §3.1).

Metadata comes from the file, so every field is checked for type, shape and range before
anything is built from it. Each table lists every field of its dataclass (checked when this
module is imported: a config field added without a bound is an import error, not a field the
decoder trusts) and the JSON object must hold exactly those keys. Bounds on fields that size an
allocation are caps; :mod:`csgaussian.codec.budget` adds the whole decoder's memory need.

Types are strict: an integer field refuses ``true`` and ``2.0``; a float field takes an integer
(``json.dumps`` writes ``1`` for an int-valued float field set from Python) but never a bool,
NaN or an infinity; a string is printable ASCII.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..entropy.anchors import RateConfig
from ..entropy.hashgrid import HashGridConfig
from ..entropy.hyperprior import INRConfig, MLPConfig
from ..entropy.quantize import QuantizationConfig
from ..scene.operations import OPERATIONS
from ..scene.scaffold import AnchorGrid, ScaffoldConfig
from ..semantics.field import SemanticConfig, SemanticRateConfig
from .container import StreamError
from .octree import MAX_POINTS

_SHOWN = 40
"""Characters of a refused value quoted in the message (a value may be a huge list)."""


class SchemaError(Exception):
    """A field that does not fit its spec; ``path`` names it (``rate.inr.n_freqs``)."""

    def __init__(self, path: str, value: Any, problem: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= _SHOWN else shown[: _SHOWN - 3] + "..."
        super().__init__(f"{path} = {shown} {problem}")


class RecordError(SchemaError):
    """An object whose keys or fields together do not fit its record."""

    def __init__(self, path: str, problem: str) -> None:
        Exception.__init__(self, f"{path} {problem}")


@dataclass(frozen=True)
class Int:
    """An integer (not a bool) in ``[lo, hi]``."""

    lo: int
    hi: int

    def parse(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise SchemaError(path, value, "is not an integer")
        if not self.lo <= value <= self.hi:
            raise SchemaError(path, value, f"is outside {self.lo}..{self.hi}")
        return value


@dataclass(frozen=True)
class Float:
    """A finite number in ``[lo, hi]`` (``(lo`` / ``hi)`` when open); integers are accepted."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def parse(self, value: Any, path: str) -> float:
        if type(value) not in (int, float):
            raise SchemaError(path, value, "is not a number")
        if not math.isfinite(value):
            raise SchemaError(path, value, "is not finite")
        number = float(value)
        low_ok = number > self.lo if self.lo_open else number >= self.lo
        high_ok = number < self.hi if self.hi_open else number <= self.hi
        if not (low_ok and high_ok):
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            raise SchemaError(path, value, f"is outside {left}{self.lo:g}, {self.hi:g}{right}")
        return number


@dataclass(frozen=True)
class Bool:
    """``true`` or ``false`` (not 0 / 1)."""

    def parse(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise SchemaError(path, value, "is not a boolean")
        return value


@dataclass(frozen=True)
class Str:
    """A printable ASCII string of at most ``max_len`` characters, one of ``choices`` if given."""

    max_len: int = 256
    choices: tuple[str, ...] | None = None

    def parse(self, value: Any, path: str) -> str:
        if type(value) is not str:
            raise SchemaError(path, value, "is not a string")
        if len(value) > self.max_len or not (value.isascii() and value.isprintable()):
            raise SchemaError(path, value, f"is not printable ascii of <= {self.max_len} chars")
        if self.choices is not None and value not in self.choices:
            raise SchemaError(path, value, f"is not one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class IntTuple:
    """A list of exactly ``length`` integers, each in ``[lo, hi]``; parsed to a tuple."""

    length: int
    lo: int
    hi: int

    def parse(self, value: Any, path: str) -> tuple[int, ...]:
        if type(value) is not list or len(value) != self.length:
            raise SchemaError(path, value, f"is not a list of {self.length} integers")
        item = Int(self.lo, self.hi)
        return tuple(item.parse(v, f"{path}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True)
class FloatTuple:
    """A list of exactly ``length`` finite numbers, each in ``[lo, hi]``; parsed to a tuple."""

    length: int
    lo: float
    hi: float

    def parse(self, value: Any, path: str) -> tuple[float, ...]:
        if type(value) is not list or len(value) != self.length:
            raise SchemaError(path, value, f"is not a list of {self.length} numbers")
        item = Float(self.lo, self.hi)
        return tuple(item.parse(v, f"{path}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True)
class List:
    """A list of at most ``max_len`` items of ``item``; parsed to a list."""

    item: Spec
    max_len: int

    def parse(self, value: Any, path: str) -> list[Any]:
        if type(value) is not list or len(value) > self.max_len:
            raise SchemaError(path, value, f"is not a list of <= {self.max_len} items")
        return [self.item.parse(v, f"{path}[{i}]") for i, v in enumerate(value)]


Check = tuple[Callable[[dict[str, Any]], bool], str]


@dataclass(frozen=True)
class Record:
    """A JSON object with exactly the keys of ``fields``; built into ``cls`` if given (else a
    dict). ``checks``: (predicate on the parsed fields, what it requires) across fields."""

    fields: Mapping[str, Spec]
    cls: type | None = None
    checks: tuple[Check, ...] = field(default=())

    def parse(self, value: Any, path: str) -> Any:
        where = path or "metadata"
        if type(value) is not dict:
            raise SchemaError(where, value, "is not an object")
        missing = [k for k in self.fields if k not in value]
        if missing:
            raise RecordError(where, f"lacks field(s) {_names(missing)}")
        unknown = sorted(str(k) for k in value if k not in self.fields)
        if unknown:
            raise RecordError(where, f"has unknown field(s) {_names(unknown)}")
        parsed = {
            name: spec.parse(value[name], f"{path}.{name}" if path else name)
            for name, spec in self.fields.items()
        }
        for predicate, requirement in self.checks:
            if not predicate(parsed):
                raise RecordError(where, f"breaks '{requirement}'")
        if self.cls is None:
            return parsed
        try:
            return self.cls(**parsed)
        except (TypeError, ValueError) as err:
            raise RecordError(where, f"is refused by {self.cls.__name__} ({err})") from None


def _names(keys: list[str]) -> str:
    shown = ", ".join(repr(k)[1:-1][:_SHOWN] for k in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


Spec = Int | Float | Bool | Str | IntTuple | FloatTuple | List | Record


def table(cls: type, checks: tuple[Check, ...] = (), **specs: Spec) -> Record:
    """The record of dataclass ``cls``: ``specs`` must name each of its fields exactly once."""
    names = {f.name for f in fields(cls)}
    if set(specs) != names:
        raise TypeError(
            f"schema of {cls.__name__}: fields without a spec {sorted(names - set(specs))}, "
            f"specs without a field {sorted(set(specs) - names)}"
        )
    return Record(specs, cls, checks)


def read_json_meta(payload: bytes, limit: int, what: str) -> object:
    """A zlib-compressed JSON value of at most ``limit`` bytes; StreamError naming ``what``."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(payload, limit)
        whole = inflater.eof and not (inflater.unconsumed_tail or inflater.unused_data)
        value = json.loads(text.decode()) if whole else None
    except (zlib.error, UnicodeDecodeError, ValueError, RecursionError):
        # ValueError: JSONDecodeError, and an integer of more than 4300 digits
        raise StreamError(f"{what} is not valid compressed JSON") from None
    if not whole:
        raise StreamError(f"{what} is not one zlib stream of <= {limit} bytes")
    return value


def writable_json(value: Any, spec: Record, what: str) -> str:
    """``json.dumps(value)`` after checking that a decoder will accept it: an encoder never
    writes metadata its own reader refuses (ValueError ``"{what}: ..."``)."""
    text = json.dumps(value)
    try:
        spec.parse(json.loads(text), "")
    except SchemaError as err:
        raise ValueError(f"{what}: {err}") from None
    return text


def parse(value: Any, spec: Record, what: str) -> Any:
    """``spec.parse(value)``; a field that does not fit raises StreamError ``"{what}: ..."``."""
    try:
        return spec.parse(value, "")
    except SchemaError as err:
        raise StreamError(f"{what}: {err}") from None


# Bounds. Sizes: caps well above any trained model (defaults in brackets), chosen so that no one
# field can ask for an absurd allocation; budget.py bounds their products.
WIDTH = Int(1, 1024)
"""MLP widths [16-50]."""
STEP = Float(0.0, 1e6, lo_open=True)
"""A quantization step: finite and positive [0.03-1]."""
RATE_WEIGHT = Float(0.0, 1e6)
LEARNING_RATE = Float(0.0, 1e3)
FRACTION = Float(0.0, 1.0)

MLP = table(MLPConfig, width=WIDTH, depth=Int(1, 16), scale_min=Float(0.0, 1e3, lo_open=True))
INR = table(INRConfig, n_freqs=Int(0, 24), mlp=MLP)
HASHGRID = table(
    HashGridConfig,
    checks=((lambda h: h["min_resolution"] <= h["max_resolution"], "min <= max resolution"),),
    n_levels=Int(1, 32),
    n_features=Int(1, 16),
    log2_table_size=Int(1, 22),
    min_resolution=Int(1, 1 << 16),
    max_resolution=Int(1, 1 << 16),
    init_scale=Float(0.0, 1e3),
    mlp=MLP,
)
QUANT = table(QuantizationConfig, feature=STEP, scaling=STEP, offsets=STEP)
RATE = table(
    RateConfig,
    lambda_rate=RATE_WEIGHT,
    start_fraction=FRACTION,
    round_fraction=FRACTION,
    hyperprior=Str(choices=("inr", "hashgrid")),
    inr=INR,
    hashgrid=HASHGRID,
    quant=QUANT,
    lr=LEARNING_RATE,
    lr_final=LEARNING_RATE,
)
SCAFFOLD = table(
    ScaffoldConfig,
    feature_dim=Int(1, 1024),
    n_offsets=Int(1, 64),
    hidden_dim=WIDTH,
    mask_threshold=Float(0.0, 1.0, lo_open=True, hi_open=True),
    mask_logit_init=Float(-1e3, 1e3),
    frustum_margin=Float(0.0, 1e3),
)
GRID = table(
    AnchorGrid,
    voxel_size=Float(0.0, 1e6, lo_open=True),
    origin=IntTuple(3, -(1 << 31), (1 << 31) - 1),
    depth=Int(1, 16),
)
"""World coordinates ``(origin + cell) * voxel_size`` stay below 2^31 * 1e6: finite in float32."""
BASE_META = Record(
    {
        "format": Str(choices=("csgaussian",)),
        "n_anchors": Int(1, MAX_POINTS),
        "scaffold": SCAFFOLD,
        "grid": GRID,
        "rate": RATE,
    }
)

SEMANTIC = table(
    SemanticConfig,
    latent_dim=Int(1, 64),
    feature_dim=Int(1, 64),
    hidden_dim=WIDTH,
    latent_init=Float(0.0, 1e3),
)
SEMANTIC_RATE = table(
    SemanticRateConfig,
    lambda_rate=RATE_WEIGHT,
    q0=STEP,
    conditional=Bool(),
    inr=INR,
    lr=LEARNING_RATE,
)
CODEBOOK = Record(
    {"n_coarse": Int(1, 1024), "n_fine": Int(1, 64), "position_weight": Float(0.0, 1e6)}
)
SEMANTIC_META = Record(
    {
        "version": Int(0, 1 << 16),
        "semantic": SEMANTIC,
        "rate": SEMANTIC_RATE,
        "text_space": Str(),
        "language_dim": Int(1, 4096),
        "n_entries": Int(0, 32767),  # leaf -> entry indices are int16; -1 is "no entry"
        "codebook": CODEBOOK,
    }
)

MAX_EDITS = 64
"""Most edits one stream's edit list may hold (each stores a selection of the anchor slots)."""
EDIT_OP_TEXT = 256
"""Most characters of the query text an edit records (informative)."""
EDIT_OP_FIELDS: dict[str, Spec] = {
    "kind": Str(choices=tuple(OPERATIONS)),
    "text": Str(max_len=EDIT_OP_TEXT),
    "offset": FloatTuple(3, -1e9, 1e9),
    "color": IntTuple(3, 0, 255),
}
"""The fields of every edit record; an operation adds its own ``params``."""


@dataclass(frozen=True)
class EditOp:
    """An edit record: the common fields plus those of the operation its ``kind`` names."""

    records: Mapping[str, Record]

    def parse(self, value: Any, path: str) -> dict[str, Any]:
        kind = value.get("kind") if type(value) is dict else None
        if type(kind) is str and kind in self.records:
            return self.records[kind].parse(value, path)
        return Record(EDIT_OP_FIELDS).parse(value, path)  # names what is wrong


EDIT_OP = EditOp(
    {
        code: Record({**EDIT_OP_FIELDS, **{p.name: Float(p.lo, p.hi) for p in op.params}})
        for code, op in OPERATIONS.items()
    }
)
EDIT_META = Record(
    {
        "version": Int(0, 1 << 16),
        "n_anchors": Int(1, MAX_POINTS),
        "n_offsets": Int(1, 64),
        "edits": List(EDIT_OP, MAX_EDITS),
    }
)
