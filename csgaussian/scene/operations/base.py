"""What an edit operation is: one class per operation (docs/architecture.md, "A new edit
operation").

An operation class is at once the request a user makes (its dataclass fields: the text naming
the object and the operation's parameters) and everything the rest of the package needs to know
about it: its ``code`` in the stream's edit layer (docs/format.md §7), the extra parameters it
stores there with their bounds (``params``, validated when a stream is read), how it changes the
Gaussians of one view (:meth:`Operation.apply`) and the viewer's splats
(:meth:`Operation.apply_splats`), what it does to the number of Gaussians (``effect``, which the
memory budget counts), its CLI flag (``--CODE TEXT`` plus the optional ``value`` option after it)
and its viewer button and input (``label``, ``value``). The registry
(:mod:`csgaussian.scene.operations`) collects every subclass defined in the package's modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..edits import SceneEdit

Effect = Literal["keep", "remove", "extract", "copy"]
"""What an operation does to the selected Gaussians' count: none / drops them / drops all others
/ adds a copy of each."""
Control = Literal["rgb", "vector3", "number"]
"""The viewer input that gives an operation's value."""
T = TypeVar("T")


@dataclass(frozen=True)
class Value:
    """The one value an operation takes after its text: its CLI option and its viewer input."""

    flag: str
    """CLI option that must follow ``--CODE TEXT`` (e.g. ``--offset``)."""
    metavar: str
    help: str
    control: Control
    label: str
    """Viewer input label."""
    default: Any
    """Viewer input's initial value."""
    step: float | None = None
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class Param:
    """A number an operation stores in its edit record beyond the common fields, in
    ``[lo, hi]`` (a stream whose value lies outside is refused)."""

    name: str
    lo: float
    hi: float


@dataclass(frozen=True)
class Operation:
    """Base of the edit operations; a subclass sets the class variables below."""

    text: str

    code: ClassVar[str]
    """The operation's code in the stream (the edit record's ``kind``) and its CLI flag."""
    order: ClassVar[int]
    """Position in the CLI's help and among the viewer's buttons."""
    label: ClassVar[str]
    """Viewer button."""
    help: ClassVar[str]
    """CLI help of ``--CODE TEXT``."""
    effect: ClassVar[Effect]
    value: ClassVar[Value | None] = None
    params: ClassVar[tuple[Param, ...]] = ()

    def stored(self) -> dict[str, Any]:
        """The resolved parameters as :class:`~csgaussian.scene.edits.SceneEdit` keywords
        (``offset``, ``color`` or ``params``); ValueError on a malformed one."""
        return {}

    @classmethod
    def from_value(cls, text: str, value: Any) -> Operation:
        """The request for ``text`` with the CLI's string ``value`` (None without ``value``)."""
        return cls(text)

    @classmethod
    def from_control(cls, text: str, value: Any) -> Operation:
        """The request for ``text`` with the viewer input's ``value``."""
        return cls.from_value(text, value)

    @staticmethod
    def summary(edit: SceneEdit) -> dict[str, Any]:
        """The operation's parameters in an edit's JSON summary."""
        return {}

    @staticmethod
    def apply(gaussians: T, chosen: Tensor, edit: SceneEdit) -> T:
        """``gaussians`` (a view's :class:`~csgaussian.scene.scaffold.NeuralGaussians`) after
        ``edit``, where ``chosen`` ([G] bool) marks the selected ones."""
        raise NotImplementedError

    @classmethod
    def apply_splats(cls, splats: T, chosen: Tensor, edit: SceneEdit) -> T:
        """The viewer's splats (``centers``, ``covariances``, ``rgbs``, ...) after ``edit``;
        by default as :meth:`apply` (operations that only select or copy)."""
        return cls.apply(splats, chosen, edit)


def concat(a: T, b: T) -> T:
    """Two dataclasses of per-Gaussian tensors, ``b``'s rows after ``a``'s."""
    return type(a)(*(torch.cat([getattr(a, f.name), getattr(b, f.name)]) for f in fields(a)))


def replaced(item: T, **changes: Tensor) -> T:
    """``item`` (a dataclass of per-Gaussian tensors) with fields replaced."""
    return type(item)(**{**{f.name: getattr(item, f.name) for f in fields(item)}, **changes})


def by_order(classes: Sequence[type[Operation]]) -> list[type[Operation]]:
    """``classes`` in their ``order``."""
    return sorted(classes, key=lambda op: (op.order, op.code))
