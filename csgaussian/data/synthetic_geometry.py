"""Analytic, textured primitives for the synthetic scene, ray-cast in vectorised numpy.

Every primitive answers three questions for ``R`` rays or points (float64, world units, +Z up):
``intersect(o, d)`` -> nearest hit distance ``[R]`` beyond ``EPS`` (``inf`` = miss),
``normal(p)`` -> outward unit normals ``[R, 3]`` and ``albedo(p)`` -> colours ``[R, 3]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-6  # smallest accepted hit distance; also the on-cap tolerance
Colour = tuple[float, float, float]


def _first_positive(*candidates: np.ndarray) -> np.ndarray:
    """Per ray, the smallest candidate distance above ``EPS`` (NaN counts as a miss)."""
    stacked = np.stack(candidates)  # [C, R]
    stacked = np.where(np.isnan(stacked) | (stacked <= EPS), np.inf, stacked)
    return stacked.min(0)


def _two_tone(parity: np.ndarray, first: Colour, second: Colour) -> np.ndarray:
    """``first`` where ``parity`` is even, else ``second``; ``[R, 3]``."""
    odd = (parity.astype(np.int64) % 2 == 1)[:, None]
    return np.where(odd, np.asarray(second), np.asarray(first))


def _quadratic_roots(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roots of ``a t^2 + 2 b t + c`` (NaN where none)."""
    disc = b * b - a * c
    sqrt = np.sqrt(np.where(disc >= 0, disc, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (-b - sqrt) / a, (-b + sqrt) / a


@dataclass(frozen=True)
class Sphere:
    """A ball with meridian stripes (a beach ball)."""

    name: str
    center: tuple[float, float, float]
    radius: float
    colours: tuple[Colour, Colour]
    stripes: int = 8

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        oc = o - np.asarray(self.center)
        t0, t1 = _quadratic_roots(
            np.sum(d * d, 1), np.sum(oc * d, 1), np.sum(oc * oc, 1) - self.radius**2
        )
        return _first_positive(t0, t1)

    def normal(self, p: np.ndarray) -> np.ndarray:
        return (p - np.asarray(self.center)) / self.radius

    def albedo(self, p: np.ndarray) -> np.ndarray:
        rel = p - np.asarray(self.center)
        angle = np.arctan2(rel[:, 1], rel[:, 0]) / (2 * np.pi) + 0.5  # [0, 1]
        return _two_tone(np.floor(angle * self.stripes), *self.colours)


@dataclass(frozen=True)
class Box:
    """A box turned by ``yaw`` about +Z, with a 3D checker texture."""

    name: str
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    colours: tuple[Colour, Colour]
    cells: int = 3  # checker cells along each edge

    def _rotation(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def _local(self, p: np.ndarray) -> np.ndarray:
        return (p - np.asarray(self.center)) @ self._rotation()  # R^T (p - c)

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        lo, ld = self._local(o), d @ self._rotation()
        half = np.asarray(self.half)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_a, t_b = (-half - lo) / ld, (half - lo) / ld
        t_near = np.nanmax(np.minimum(t_a, t_b), 1)
        t_far = np.nanmin(np.maximum(t_a, t_b), 1)
        hit = t_far >= np.maximum(t_near, EPS)
        return np.where(hit, _first_positive(t_near, t_far), np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        q = self._local(p) / np.asarray(self.half)
        axis = np.abs(q).argmax(1)
        n_local = np.zeros_like(q)
        n_local[np.arange(len(q)), axis] = np.sign(q[np.arange(len(q)), axis])
        return n_local @ self._rotation().T

    def albedo(self, p: np.ndarray) -> np.ndarray:
        half = np.asarray(self.half)
        cells = np.floor((self._local(p) + half) / (2 * half) * self.cells - 1e-9)
        return _two_tone(cells.sum(1), *self.colours)


@dataclass(frozen=True)
class Cylinder:
    """An upright capped cylinder standing on ``base`` with horizontal bands."""

    name: str
    base: tuple[float, float, float]
    radius: float
    height: float
    colours: tuple[Colour, Colour]
    bands: int = 5

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ob = o - np.asarray(self.base)
        t0, t1 = _quadratic_roots(
            d[:, 0] ** 2 + d[:, 1] ** 2,
            ob[:, 0] * d[:, 0] + ob[:, 1] * d[:, 1],
            ob[:, 0] ** 2 + ob[:, 1] ** 2 - self.radius**2,
        )
        sides = [
            np.where((z >= 0) & (z <= self.height), t, np.nan)
            for t in (t0, t1)
            for z in [ob[:, 2] + t * d[:, 2]]
        ]
        caps = []
        for level in (0.0, self.height):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (level - ob[:, 2]) / d[:, 2]
            r2 = (ob[:, 0] + t * d[:, 0]) ** 2 + (ob[:, 1] + t * d[:, 1]) ** 2
            caps.append(np.where(r2 <= self.radius**2, t, np.nan))
        return _first_positive(*sides, *caps)

    def normal(self, p: np.ndarray) -> np.ndarray:
        rel = p - np.asarray(self.base)
        n = np.concatenate([rel[:, :2] / self.radius, np.zeros((len(p), 1))], 1)
        n[rel[:, 2] >= self.height - EPS] = (0.0, 0.0, 1.0)
        n[rel[:, 2] <= EPS] = (0.0, 0.0, -1.0)
        return n

    def albedo(self, p: np.ndarray) -> np.ndarray:
        z = (p[:, 2] - self.base[2]) / self.height
        return _two_tone(np.floor(np.clip(z, 0, 1 - 1e-9) * self.bands), *self.colours)


@dataclass(frozen=True)
class Cone:
    """An upright cone on ``base`` (radius at the bottom, apex on top) with vertical stripes."""

    name: str
    base: tuple[float, float, float]
    radius: float
    height: float
    colours: tuple[Colour, Colour]
    stripes: int = 6

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        k = (self.radius / self.height) ** 2
        ob = o - np.asarray(self.base)
        below_apex = self.height - ob[:, 2]  # height of the apex above the origin point
        t0, t1 = _quadratic_roots(
            d[:, 0] ** 2 + d[:, 1] ** 2 - k * d[:, 2] ** 2,
            ob[:, 0] * d[:, 0] + ob[:, 1] * d[:, 1] + k * below_apex * d[:, 2],
            ob[:, 0] ** 2 + ob[:, 1] ** 2 - k * below_apex**2,
        )
        sides = [
            np.where((z >= 0) & (z <= self.height), t, np.nan)
            for t in (t0, t1)
            for z in [ob[:, 2] + t * d[:, 2]]
        ]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_base = -ob[:, 2] / d[:, 2]
        r2 = (ob[:, 0] + t_base * d[:, 0]) ** 2 + (ob[:, 1] + t_base * d[:, 1]) ** 2
        return _first_positive(*sides, np.where(r2 <= self.radius**2, t_base, np.nan))

    def normal(self, p: np.ndarray) -> np.ndarray:
        rel = p - np.asarray(self.base)
        k = (self.radius / self.height) ** 2
        n = np.stack([rel[:, 0], rel[:, 1], k * (self.height - rel[:, 2])], 1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        n[rel[:, 2] <= EPS] = (0.0, 0.0, -1.0)
        return n

    def albedo(self, p: np.ndarray) -> np.ndarray:
        rel = p - np.asarray(self.base)
        angle = np.arctan2(rel[:, 1], rel[:, 0]) / (2 * np.pi) + 0.5
        return _two_tone(np.floor(angle * self.stripes), *self.colours)


@dataclass(frozen=True)
class Floor:
    """The square ``|x|, |y| <= half`` of the plane ``z = 0``, checkered."""

    name: str
    half: float
    cell: float
    colours: tuple[Colour, Colour]

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -o[:, 2] / d[:, 2]
        inside = (np.abs(o[:, 0] + t * d[:, 0]) <= self.half) & (
            np.abs(o[:, 1] + t * d[:, 1]) <= self.half
        )
        return _first_positive(np.where(inside, t, np.nan))

    def normal(self, p: np.ndarray) -> np.ndarray:
        return np.tile([0.0, 0.0, 1.0], (len(p), 1))

    def albedo(self, p: np.ndarray) -> np.ndarray:
        return _two_tone(
            np.floor(p[:, 0] / self.cell) + np.floor(p[:, 1] / self.cell), *self.colours
        )


Primitive = Sphere | Box | Cylinder | Cone | Floor


def default_objects() -> list[Primitive]:
    """The demo scene: four textured objects on a checkered floor (instance ids 1..5 in order)."""
    return [
        Sphere("red ball", (-0.45, 0.4, 0.32), 0.32, ((0.85, 0.15, 0.12), (0.95, 0.92, 0.88))),
        Box(
            "blue box",
            (0.45, 0.45, 0.22),
            (0.22, 0.22, 0.22),
            0.5,
            ((0.15, 0.3, 0.85), (0.65, 0.78, 1.0)),
        ),
        Cylinder(
            "yellow cylinder", (0.4, -0.45, 0.0), 0.18, 0.55, ((0.95, 0.8, 0.15), (0.9, 0.45, 0.1))
        ),
        Cone("green cone", (-0.4, -0.45, 0.0), 0.25, 0.6, ((0.15, 0.65, 0.2), (0.05, 0.3, 0.1))),
        Floor("floor", 1.4, 0.2, ((0.82, 0.82, 0.8), (0.35, 0.35, 0.4))),
    ]


def object_center(obj: Primitive) -> np.ndarray:
    """Centre of an object's volume ``[3]`` (a cone's centroid is at a quarter height)."""
    if isinstance(obj, Sphere | Box):
        return np.asarray(obj.center, dtype=np.float64)
    if isinstance(obj, Cylinder):
        return np.asarray(obj.base) + (0.0, 0.0, obj.height / 2)
    if isinstance(obj, Cone):
        return np.asarray(obj.base) + (0.0, 0.0, obj.height / 4)
    return np.zeros(3)


def trace(objects: list[Primitive], o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit over ``objects``: distance ``[R]`` (inf = miss) and object index ``[R]`` (-1)."""
    t = np.stack([obj.intersect(o, d) for obj in objects])  # [O, R]
    index = t.argmin(0)
    nearest = t[index, np.arange(t.shape[1])]
    return nearest, np.where(np.isfinite(nearest), index, -1)
