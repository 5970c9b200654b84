"""The eight shapes as closed polygons around a centre, so that any of them can be rotated, stretched a
little, made slightly irregular, filled or stroked the same way.

A shape of radius ``r`` fits, unrotated, in a box about ``2.2 r`` wide, as the classic renderer's do.
Each shape turns only as far as it stays itself (``MAX_TURN``): a square turned 45 degrees is a diamond,
a cross turned 45 degrees an X, a diamond turned 90 degrees a lying rhombus.
"""

from __future__ import annotations

import math

import numpy as np

Point = tuple[float, float]

MAX_TURN = {  # degrees either way
    "circle": 180.0,
    "square": 20.0,
    "triangle": 30.0,
    "star": 180.0,
    "diamond": 15.0,
    "cross": 15.0,
    "heart": 25.0,
    "crescent": 180.0,
}


def _ring(radii: list[float], start_deg: float = -90.0, dy: float = 0.0) -> list[Point]:
    step = 2 * math.pi / len(radii)
    start = math.radians(start_deg)
    return [(r * math.cos(start + i * step), r * math.sin(start + i * step) + dy) for i, r in enumerate(radii)]


def _arc(cx: float, cy: float, r: float, start: float, end: float, count: int) -> list[Point]:
    return [
        (
            cx + r * math.cos(start + (end - start) * i / (count - 1)),
            cy + r * math.sin(start + (end - start) * i / (count - 1)),
        )
        for i in range(count)
    ]


def _heart() -> list[Point]:
    """The classic heart curve, scaled to about the classic renderer's heart (unit radius)."""
    points = []
    for i in range(64):
        t = 2 * math.pi * i / 64
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        points.append((x / 16.0, -y / 16.0 + 0.05))
    return points


def _crescent() -> list[Point]:
    """The unit circle less a bite of radius 0.82 centred at (0.42, -0.2), as one outline."""
    bx, by, br = 0.42, -0.2, 0.82
    # where the two circles cross: solve on the unit circle
    d = math.hypot(bx, by)
    a = (1 + d * d - br * br) / (2 * d)
    h = math.sqrt(max(0.0, 1 - a * a))
    ux, uy = bx / d, by / d
    p1 = (a * ux - h * uy, a * uy + h * ux)
    p2 = (a * ux + h * uy, a * uy - h * ux)
    outer_from, outer_to = math.atan2(p1[1], p1[0]), math.atan2(p2[1], p2[0])
    if outer_to <= outer_from:
        outer_to += 2 * math.pi
    outer = _arc(0.0, 0.0, 1.0, outer_from, outer_to, 48)
    inner_from = math.atan2(p2[1] - by, p2[0] - bx)
    inner_to = math.atan2(p1[1] - by, p1[0] - bx)
    if inner_to >= inner_from:
        inner_to -= 2 * math.pi
    inner = _arc(bx, by, br, inner_from, inner_to, 32)
    return outer + inner[1:-1]


UNIT: dict[str, list[Point]] = {
    "circle": _ring([1.0] * 64),
    "square": [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)],
    "triangle": _ring([1.1] * 3, dy=0.22),
    "star": _ring([1.05, 0.45] * 5, dy=0.08),
    "diamond": [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)],
    "cross": [
        (-0.32, -1.0),
        (0.32, -1.0),
        (0.32, -0.32),
        (1.0, -0.32),
        (1.0, 0.32),
        (0.32, 0.32),
        (0.32, 1.0),
        (-0.32, 1.0),
        (-0.32, 0.32),
        (-1.0, 0.32),
        (-1.0, -0.32),
        (-0.32, -0.32),
    ],
    "heart": _heart(),
    "crescent": _crescent(),
}


def _subdivide(points: list[Point], pieces: int) -> list[Point]:
    """Each edge cut into ``pieces`` (straight edges get points that can wobble)."""
    out = []
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        out.extend((x0 + (x1 - x0) * k / pieces, y0 + (y1 - y0) * k / pieces) for k in range(pieces))
    return out


def outline(
    shape: str,
    cx: float,
    cy: float,
    radius: float,
    turn: float = 0.0,
    stretch: float = 1.0,
    wobble: float = 0.0,
    rng: np.random.Generator | None = None,
) -> list[Point]:
    """The polygon of ``shape`` centred at (cx, cy): turned by ``turn`` degrees, ``stretch`` times wider
    than tall (area kept), each point moved along its radius by up to ``wobble`` (a fraction of the
    radius) in a smooth, seeded way."""
    points = UNIT[shape]
    if wobble > 0:
        if rng is None:
            raise ValueError("a wobbly outline needs an rng")
        if len(points) < 16:
            points = _subdivide(points, 6)
        count = len(points)
        # a few low-frequency harmonics, so the outline bends rather than jitters
        phases = rng.uniform(0, 2 * math.pi, 3)
        amps = rng.uniform(-1.0, 1.0, 3) * wobble / 2
        factors = [
            1.0 + sum(a * math.sin((k + 2) * 2 * math.pi * i / count + p) for k, (a, p) in enumerate(zip(amps, phases)))
            for i in range(count)
        ]
        points = [(x * f, y * f) for (x, y), f in zip(points, factors)]
    sx, sy = math.sqrt(stretch), 1.0 / math.sqrt(stretch)
    angle = math.radians(turn)
    cos, sin = math.cos(angle), math.sin(angle)
    return [
        (cx + radius * (x * sx * cos - y * sy * sin), cy + radius * (x * sx * sin + y * sy * cos)) for x, y in points
    ]
