# Copyright 2026 neumap_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Procedural scene layouts: indoor rooms and outdoor plazas built from textured rectangles.

World frame: metres, z up, floor / ground at z = 0. Every surface is a one-sided rectangle
(:class:`Quad`) whose normal points to the side it can be seen from; solids are oriented boxes
(:class:`Box`) that also keep cameras out of them. Textures are generated lazily per face from a
seed derived from the scene seed and the face index, so a scene is a pure function of
``(seed, config)`` whatever order its faces are first seen in.
"""

from dataclasses import asdict, dataclass, field, replace
import math
from typing import Optional

import numpy as np

from neumap_ros.core.synthetic import textures

KINDS = ('indoor', 'outdoor')

_DEFAULTS = {
    'indoor': {'extent': (3.0, 10.0), 'height': (2.4, 3.4), 'texel_size': 0.004},
    'outdoor': {'extent': (15.0, 60.0), 'height': (4.0, 24.0), 'texel_size': 0.015},
}


@dataclass(frozen=True)
class SceneConfig:
    """
    Generator settings; ``None`` fields take the defaults of ``kind``.

    ``extent``: range of the horizontal size (m) of the room or of the open outdoor area.
    ``height``: range of the room height (indoor) or of the building heights (outdoor).
    ``texel_size``: metres per texel at full detail (large faces get coarser texels so that no
    texture exceeds ``max_texture_size`` and all of them fit in ``texel_budget`` texels).
    """

    kind: str = 'indoor'
    extent: Optional[tuple] = None
    height: Optional[tuple] = None
    object_density: float = 1.0
    texel_size: Optional[float] = None
    max_texture_size: int = 2048
    texel_budget: float = 4.0e7
    decal_density: float = 1.0

    def resolved(self) -> 'SceneConfig':
        """Copy with every ``None`` replaced by the default of its kind."""
        if self.kind not in KINDS:
            raise ValueError(f'scene kind must be one of {KINDS}, got {self.kind!r}')
        filled = {}
        for key, default in _DEFAULTS[self.kind].items():
            value = getattr(self, key)
            filled[key] = (default if value is None
                           else tuple(value) if isinstance(default, tuple) else value)
        return replace(self, **filled)

    def to_dict(self) -> dict:
        """JSON-friendly form (stored in ``scene.json``)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self.resolved()).items()}

    @classmethod
    def from_dict(cls, data: dict) -> 'SceneConfig':
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {k: (tuple(v) if isinstance(v, list) else v)
                 for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def rotation_z(yaw: float) -> np.ndarray:
    """Rotation about the world z axis by ``yaw`` radians."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Quad:
    """
    One-sided textured rectangle ``origin + a*u + b*v``, 0 <= a <= size[0], 0 <= b <= size[1].

    ``u`` and ``v`` are unit vectors with ``u = normal x v``, so texture x runs to the right and
    texture y downwards for a viewer in front of the face (text reads correctly).
    """

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    normal: np.ndarray
    size: tuple
    style: str

    @classmethod
    def from_center(cls, center, normal, v, size_u: float, size_v: float,
                    style: str) -> 'Quad':
        """Rectangle centred at ``center`` facing ``normal`` with texture-down direction ``v``."""
        normal = np.asarray(normal, float) / np.linalg.norm(normal)
        v = np.asarray(v, float) - np.dot(v, normal) * normal
        v /= np.linalg.norm(v)
        u = np.cross(normal, v)
        origin = np.asarray(center, float) - 0.5 * size_u * u - 0.5 * size_v * v
        return cls(origin, u, v, normal, (float(size_u), float(size_v)), style)

    def corners(self) -> np.ndarray:
        """Return the four corners, shape (4, 3), in order o, o+u, o+u+v, o+v."""
        a, b = self.size[0] * self.u, self.size[1] * self.v
        return np.stack([self.origin, self.origin + a, self.origin + a + b, self.origin + b])


@dataclass(frozen=True)
class Box:
    """Solid oriented box: ``rotation`` columns are its axes in the world, ``half`` half sizes."""

    center: np.ndarray
    rotation: np.ndarray
    half: np.ndarray
    style: str

    @classmethod
    def on_floor(cls, x: float, y: float, size, style: str, yaw: float = 0.0,
                 z0: float = 0.0) -> 'Box':
        """Box of ``size`` (sx, sy, sz) standing on the plane z = z0, turned by ``yaw``."""
        size = np.asarray(size, float)
        return cls(np.array([x, y, z0 + size[2] / 2]), rotation_z(yaw), size / 2, style)

    def corners(self) -> np.ndarray:
        """Return the eight corners, shape (8, 3)."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        return self.center + (signs * self.half) @ self.rotation.T

    def aabb(self) -> tuple:
        """World axis-aligned bounds (lo, hi)."""
        corners = self.corners()
        return corners.min(axis=0), corners.max(axis=0)

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Which of the (N, 3) points lie inside the box grown by ``margin``."""
        local = (np.asarray(points, float).reshape(-1, 3) - self.center) @ self.rotation
        return np.all(np.abs(local) <= self.half + margin, axis=1)

    def quads(self) -> list:
        """Return the faces with outward normals, leaving out a bottom resting on z = 0."""
        faces = []
        for axis in range(3):
            for sign in (-1.0, 1.0):
                normal = sign * self.rotation[:, axis]
                center = self.center + sign * self.half[axis] * self.rotation[:, axis]
                if normal[2] < -0.99 and center[2] < 1e-3:
                    continue   # bottom of something standing on the floor: never visible
                others = [k for k in range(3) if k != axis]
                if abs(normal[2]) < 0.9:
                    # Side face: texture "down" is the in-plane box axis closest to world down.
                    k_v = max(others, key=lambda k: abs(self.rotation[2, k]))
                    v = self.rotation[:, k_v] * (-1.0 if self.rotation[2, k_v] > 0 else 1.0)
                else:
                    k_v = others[0]
                    v = self.rotation[:, k_v]
                k_u = others[1] if k_v == others[0] else others[0]
                faces.append(Quad.from_center(center, normal, v, 2 * self.half[k_u],
                                              2 * self.half[k_v], self.style))
        return faces


@dataclass(frozen=True)
class Lighting:
    """View-independent (Lambertian) lighting of a scene; colours are BGR multipliers."""

    ambient: float
    sun_direction: np.ndarray        # unit vector from the surface towards the sun
    sun_strength: float
    lamp_positions: np.ndarray       # (L, 3)
    lamp_strengths: np.ndarray       # (L,)
    lamp_radius: float               # distance (m) at which a lamp's light has halved
    tint: np.ndarray                 # (3,) white balance of the light
    sky_zenith: np.ndarray           # (3,) BGR in [0, 1]
    sky_horizon: np.ndarray          # (3,) BGR in [0, 1]

    @classmethod
    def neutral(cls) -> 'Lighting':
        """Uniform white ambient light, no sun, no lamps (for tests and hand-built scenes)."""
        return cls(1.0, np.array([0.0, 0.0, 1.0]), 0.0, np.zeros((0, 3)), np.zeros(0), 1.0,
                   np.ones(3), np.array([0.8, 0.6, 0.4]), np.array([0.9, 0.9, 0.9]))


@dataclass
class Scene:
    """A generated scene: faces, solids, the region cameras may occupy and the lighting."""

    seed: int
    config: SceneConfig
    quads: list
    boxes: list
    free_lo: np.ndarray
    free_hi: np.ndarray
    lighting: Lighting
    n_shell: int = 0              # the first n_shell faces are the room / ground, not boxes
    cache: dict = field(default_factory=dict, repr=False)   # textures, light maps, sky

    def __post_init__(self):
        """Stack the faces into arrays for the renderer and fix each face's texel size."""
        self.origins = np.array([q.origin for q in self.quads], float)
        self.us = np.array([q.u for q in self.quads], float)
        self.vs = np.array([q.v for q in self.quads], float)
        self.normals = np.array([q.normal for q in self.quads], float)
        self.sizes = np.array([q.size for q in self.quads], float)
        self.styles = [q.style for q in self.quads]
        cfg = self.config
        factors = np.array([textures.style_texel_factor(s) for s in self.styles])
        texel = np.maximum(cfg.texel_size * factors,
                           self.sizes.max(axis=1) / cfg.max_texture_size)
        total = float(np.sum(self.sizes[:, 0] * self.sizes[:, 1] / texel ** 2))
        if total > cfg.texel_budget:
            texel *= math.sqrt(total / cfg.texel_budget)
        self.texels = texel

    @classmethod
    def from_geometry(cls, quads: list, boxes: tuple = (), seed: int = 0,
                      config: Optional[SceneConfig] = None, free_lo=(-1e3, -1e3, -1e3),
                      free_hi=(1e3, 1e3, 1e3),
                      lighting: Optional[Lighting] = None) -> 'Scene':
        """
        Build a scene by hand: extra faces ``quads`` plus the faces of the solid ``boxes``.

        Handy for tests with known geometry; the free region defaults to everywhere.
        """
        quads = list(quads)
        faces = quads + [q for box in boxes for q in box.quads()]
        return cls(int(seed), (config or SceneConfig()).resolved(), faces, list(boxes),
                   np.asarray(free_lo, float), np.asarray(free_hi, float),
                   lighting or Lighting.neutral(), len(quads))

    @property
    def kind(self) -> str:
        """Scene kind, 'indoor' or 'outdoor'."""
        return self.config.kind

    def clear_cache(self) -> None:
        """Free the generated textures and light maps (they are rebuilt identically on use)."""
        self.cache.clear()

    def __len__(self) -> int:
        """Return the number of faces."""
        return len(self.quads)

    def texture(self, index: int) -> list:
        """Mip pyramid (list of uint8 BGR images, finest first) of face ``index``; made lazily."""
        pyramid = self.cache.get(index)
        if pyramid is None:
            rng = np.random.default_rng([self.seed, 101, index])
            width = max(4, int(math.ceil(self.sizes[index, 0] / self.texels[index])))
            height = max(4, int(math.ceil(self.sizes[index, 1] / self.texels[index])))
            image = textures.make_texture(rng, self.styles[index], height, width,
                                          float(self.texels[index]), self.config.decal_density)
            pyramid = textures.build_pyramid(image)
            self.cache[index] = pyramid
        return pyramid

    def bounds(self) -> tuple:
        """Return the axis-aligned bounds, a (lo, hi) pair, of all geometry."""
        corners = np.concatenate([q.corners() for q in self.quads])
        return corners.min(axis=0), corners.max(axis=0)

    def raycast(self, origins: np.ndarray, directions: np.ndarray,
                near: float = 1e-6) -> tuple:
        """
        First front-facing hit of each ray: (t, face) with ``origin + t*direction``.

        ``t`` is inf and ``face`` -1 where a ray hits nothing. Directions need not be unit.
        """
        origins = np.asarray(origins, float).reshape(-1, 3)
        directions = np.asarray(directions, float).reshape(-1, 3)
        if len(origins) == 1 and len(directions) > 1:
            origins = np.repeat(origins, len(directions), axis=0)
        t_best = np.full(len(origins), np.inf)
        face = np.full(len(origins), -1, np.int64)
        for s in range(0, len(origins), 2048):
            o, d = origins[s:s + 2048], directions[s:s + 2048]
            rel = self.origins[None, :, :] - o[:, None, :]                 # (N, M, 3)
            denom = d @ self.normals.T
            with np.errstate(divide='ignore', invalid='ignore'):
                t = np.einsum('nmk,mk->nm', rel, self.normals) / denom
                a = t * (d @ self.us.T) - np.einsum('nmk,mk->nm', rel, self.us)
                b = t * (d @ self.vs.T) - np.einsum('nmk,mk->nm', rel, self.vs)
            eps = 1e-4
            ok = ((denom < -1e-12) & (t > near) & (a >= -eps) & (a <= self.sizes[:, 0] + eps)
                  & (b >= -eps) & (b <= self.sizes[:, 1] + eps))
            t = np.where(ok, t, np.inf)
            best = np.argmin(t, axis=1)
            t_best[s:s + 2048] = t[np.arange(len(o)), best]
            face[s:s + 2048] = np.where(np.isfinite(t_best[s:s + 2048]), best, -1)
        return t_best, face

    def clearance(self, points: np.ndarray) -> np.ndarray:
        """Distance (m) from each of the (N, 3) points to the nearest face."""
        points = np.asarray(points, float).reshape(-1, 3)
        out = np.empty(len(points))
        for s in range(0, len(points), 1024):
            rel = points[s:s + 1024, None, :] - self.origins[None]           # (N, M, 3)
            a = np.clip(np.einsum('nmk,mk->nm', rel, self.us), 0.0, self.sizes[:, 0])
            b = np.clip(np.einsum('nmk,mk->nm', rel, self.vs), 0.0, self.sizes[:, 1])
            closest = a[..., None] * self.us + b[..., None] * self.vs
            out[s:s + 1024] = np.linalg.norm(rel - closest, axis=2).min(axis=1)
        return out

    def is_free(self, points: np.ndarray, clearance: float = 0.0) -> np.ndarray:
        """
        Tell which points a camera may occupy.

        A free point is inside the free region, outside every solid and at least
        ``clearance`` metres from every face.
        """
        points = np.asarray(points, float).reshape(-1, 3)
        ok = np.all((points >= self.free_lo) & (points <= self.free_hi), axis=1)
        for box in self.boxes:
            ok &= ~box.contains(points)
        if clearance > 0 and np.any(ok):
            ok[ok] = self.clearance(points[ok]) >= clearance
        return ok

    def sample_free_points(self, rng: np.random.Generator, n: int, clearance: float,
                           max_tries: int = 50) -> np.ndarray:
        """Up to ``n`` uniformly drawn free points (fewer only if the scene is very cluttered)."""
        found = []
        for _ in range(max_tries):
            candidates = rng.uniform(self.free_lo, self.free_hi, size=(max(4 * n, 64), 3))
            found.extend(candidates[self.is_free(candidates, clearance)])
            if len(found) >= n:
                break
        return np.array(found[:n]).reshape(-1, 3)


def generate_scene(seed: int, config: Optional[SceneConfig] = None,
                   kind: Optional[str] = None) -> Scene:
    """Generate the scene of ``seed``; ``kind`` overrides ``config.kind`` when given."""
    config = config or SceneConfig()
    if kind is not None:
        config = replace(config, kind=kind)
    config = config.resolved()
    rng = np.random.default_rng([int(seed), 0 if config.kind == 'indoor' else 1])
    builder = _build_indoor if config.kind == 'indoor' else _build_outdoor
    shell, boxes, free_lo, free_hi, lighting = builder(rng, config)
    # Drop faces that no camera position can see (backs of the building ring, roofs, table
    # bottoms): they cost texture memory and render time.
    corners = np.array([[x, y, z] for x in (free_lo[0], free_hi[0])
                        for y in (free_lo[1], free_hi[1]) for z in (free_lo[2], free_hi[2])])

    def seen(quad: Quad) -> bool:
        return bool(np.any((corners - quad.origin) @ quad.normal > 1e-6))

    shell = [q for q in shell if seen(q)]
    quads = shell + [q for box in boxes for q in box.quads() if seen(q)]
    return Scene(int(seed), config, quads, boxes, free_lo, free_hi, lighting, len(shell))


class _Placer:
    """Rejection placement of object groups whose world bounds must not overlap."""

    def __init__(self, lo, hi, gap: float = 0.03):
        self.lo, self.hi, self.gap = np.asarray(lo, float), np.asarray(hi, float), gap
        self.placed = []
        self.boxes = []

    def add(self, group: list) -> bool:
        bounds = [b.aabb() for b in group]
        lo = np.min([b[0] for b in bounds], axis=0)
        hi = np.max([b[1] for b in bounds], axis=0)
        if np.any(lo < self.lo - 1e-9) or np.any(hi > self.hi + 1e-9):
            return False
        for plo, phi in self.placed:
            if np.all(lo < phi + self.gap) and np.all(hi > plo - self.gap):
                return False
        self.placed.append((lo, hi))
        self.boxes.extend(group)
        return True


def _wall_frame(rng, width: float, depth: float):
    """
    Pick a wall of a room centred at the origin: (yaw, wall point function, length).

    The returned function maps (position along the wall, distance from it) to world x, y; yaw
    turns an object's local +y axis to point into the room.
    """
    side = int(rng.integers(4))
    length = width if side in (0, 2) else depth
    half_across = depth / 2 if side in (0, 2) else width / 2
    yaw = side * math.pi / 2
    inward = np.array([-math.sin(yaw), math.cos(yaw)])        # rotation_z(yaw) @ (0, 1)
    along = np.array([math.cos(yaw), math.sin(yaw)])

    def point(s: float, d: float) -> np.ndarray:
        return -inward * half_across + along * s + inward * d

    return yaw, point, length


def _indoor_object(rng, kind: str, room, styles) -> list:
    """Boxes of one piece of furniture of ``kind``, or [] if it does not fit the room."""
    width, depth, height = room
    u = rng.uniform
    yaw_free = (rng.integers(4) * math.pi / 2 if rng.random() < 0.6
                else u(0, 2 * math.pi))
    x, y = u(-width / 2, width / 2), u(-depth / 2, depth / 2)
    style = styles['object'][int(rng.integers(len(styles['object'])))]
    if kind == 'cabinet':
        yaw, point, length = _wall_frame(rng, width, depth)
        w, d, h = u(0.4, min(2.2, length - 0.2)), u(0.3, 0.65), u(0.5, min(2.2, height - 0.2))
        c = point(u(-length / 2 + w / 2, length / 2 - w / 2), d / 2 + 0.01)
        group = [Box.on_floor(c[0], c[1], (w, d, h), style, yaw)]
        if rng.random() < 0.6 and h < height - 0.6:
            sw, sd, sh = u(0.2, min(0.8, w)), u(0.15, d), u(0.1, 0.4)
            group.append(Box.on_floor(c[0], c[1], (sw, sd, sh), _pick(rng, styles['small']),
                                      yaw + u(-0.3, 0.3), h))
        return group
    if kind == 'table':
        w, d, t, h = u(0.8, 2.0), u(0.6, 1.2), u(0.03, 0.06), u(0.7, 0.8)
        rot = rotation_z(yaw_free)
        group = [Box(np.array([x, y, h - t / 2]), rot, np.array([w, d, t]) / 2, style)]
        for sx in (-1, 1):
            for sy in (-1, 1):
                leg = rot @ np.array([sx * (w / 2 - 0.06), sy * (d / 2 - 0.06), 0.0])
                group.append(Box.on_floor(x + leg[0], y + leg[1], (0.05, 0.05, h - t),
                                          style, yaw_free))
        if rng.random() < 0.7:
            sw, sd, sh = u(0.15, 0.5), u(0.15, 0.4), u(0.05, 0.35)
            group.append(Box.on_floor(x, y, (sw, sd, sh), _pick(rng, styles['small']),
                                      yaw_free + u(-0.5, 0.5), h))
        return group
    if kind == 'crate':
        w, d, h = u(0.25, 1.0), u(0.25, 1.0), u(0.2, 1.2)
        group = [Box.on_floor(x, y, (w, d, h), style, yaw_free)]
        if rng.random() < 0.4:
            group.append(Box.on_floor(x, y, (u(0.2, w), u(0.2, d), u(0.15, 0.6)),
                                      _pick(rng, styles['small']), yaw_free + u(-0.3, 0.3), h))
        return group
    if kind == 'pillar':
        s = u(0.25, 0.6)
        return [Box.on_floor(x, y, (s, s * u(0.8, 1.25), height), _pick(rng, styles['wall']),
                             yaw_free if rng.random() < 0.5 else 0.0)]
    if kind == 'shelf':
        yaw, point, length = _wall_frame(rng, width, depth)
        w, d, t = u(0.6, min(2.0, length - 0.2)), u(0.2, 0.35), u(0.025, 0.04)
        c = point(u(-length / 2 + w / 2, length / 2 - w / 2), d / 2 + 0.005)
        z = u(1.0, min(2.0, height - 0.3))
        group = [Box.on_floor(c[0], c[1], (w, d, t), style, yaw, z)]
        if rng.random() < 0.6:
            group.append(Box.on_floor(c[0], c[1], (u(0.2, w * 0.8), u(0.1, d * 0.9),
                                                   u(0.1, 0.3)), _pick(rng, styles['small']),
                                      yaw, z + t))
        return group
    if kind == 'frame':
        yaw, point, length = _wall_frame(rng, width, depth)
        w, h = u(0.4, min(1.6, length - 0.2)), u(0.3, 1.1)
        c = point(u(-length / 2 + w / 2, length / 2 - w / 2), 0.02)
        return [Box.on_floor(c[0], c[1], (w, 0.03, h), _pick(rng, styles['board']), yaw,
                             u(1.0, max(1.05, height - h - 0.2)))]
    if kind == 'board':
        # A panel leaning against a wall: the "planes at angles".
        yaw, point, length = _wall_frame(rng, width, depth)
        w, h, t = u(0.5, min(1.5, length - 0.2)), u(0.8, min(1.9, height - 0.3)), 0.02
        tilt = math.radians(u(8.0, 25.0))
        s, c = math.sin(tilt), math.cos(tilt)
        local = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])   # x, thickness, up
        foot = point(u(-length / 2 + w / 2, length / 2 - w / 2), h * s + 0.02)
        centre_local = local @ np.array([0.0, t / 2, h / 2])
        rot = rotation_z(yaw) @ local
        centre = np.array([foot[0], foot[1], 0.0]) + rotation_z(yaw) @ centre_local
        return [Box(centre, rot, np.array([w, t, h]) / 2, _pick(rng, styles['board']))]
    if kind == 'partition':
        w, h = u(1.0, 2.5), u(1.4, min(2.1, height - 0.2))
        return [Box.on_floor(x, y, (w, 0.05, h), _pick(rng, styles['board']), yaw_free)]
    if kind == 'sofa':
        w, d = u(1.4, 2.2), u(0.8, 1.0)
        rot = rotation_z(yaw_free)
        back = rot @ np.array([0.0, -d / 2 + 0.1, 0.0])
        fabric = _pick(rng, styles['soft'])
        return [Box.on_floor(x, y, (w, d, 0.45), fabric, yaw_free),
                Box.on_floor(x + back[0], y + back[1], (w, 0.2, 0.4), fabric, yaw_free, 0.45)]
    raise ValueError(kind)


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


_INDOOR_KINDS = ('cabinet', 'table', 'crate', 'pillar', 'shelf', 'frame', 'board',
                 'partition', 'sofa')
_INDOOR_WEIGHTS = np.array([0.22, 0.13, 0.18, 0.05, 0.1, 0.12, 0.08, 0.04, 0.08])


def _build_indoor(rng, cfg: SceneConfig):
    width = rng.uniform(*cfg.extent)
    depth = float(np.clip(width * rng.uniform(0.6, 1.6), cfg.extent[0], cfg.extent[1]))
    size = max(width, depth)
    height = float(np.clip(rng.uniform(*cfg.height) + 0.04 * (size - 5.0), *cfg.height))
    wall_style = _pick(rng, textures.STYLES['wall'])
    styles = {
        'wall': textures.STYLES['wall'],
        'object': [_pick(rng, textures.STYLES['object']) for _ in range(4)],
        'small': textures.STYLES['small'],
        'board': textures.STYLES['board'],
        'soft': textures.STYLES['soft'],
    }
    quads = [
        Quad.from_center((0, 0, 0), (0, 0, 1), (0, 1, 0), width, depth,
                         _pick(rng, textures.STYLES['floor'])),
        Quad.from_center((0, 0, height), (0, 0, -1), (0, 1, 0), width, depth,
                         _pick(rng, textures.STYLES['ceiling'])),
    ]
    for side in range(4):
        yaw = side * math.pi / 2
        inward = rotation_z(yaw) @ np.array([0.0, 1.0, 0.0])
        half_across = depth / 2 if side in (0, 2) else width / 2
        length = width if side in (0, 2) else depth
        style = wall_style if rng.random() < 0.7 else _pick(rng, textures.STYLES['wall'])
        quads.append(Quad.from_center(-inward * half_across + [0, 0, height / 2], inward,
                                      (0, 0, -1), length, height, style))
    placer = _Placer((-width / 2, -depth / 2, 0.0), (width / 2, depth / 2, height))
    area = width * depth
    n_objects = int(np.clip(round(area * rng.uniform(0.2, 0.4) * cfg.object_density), 4, 36))
    weights = _INDOOR_WEIGHTS / _INDOOR_WEIGHTS.sum()
    for _ in range(n_objects):
        kind = _INDOOR_KINDS[int(rng.choice(len(_INDOOR_KINDS), p=weights))]
        for _attempt in range(25):
            group = _indoor_object(rng, kind, (width, depth, height), styles)
            if group and placer.add(group):
                break
    margin = 0.35
    free_lo = np.array([-width / 2 + margin, -depth / 2 + margin, min(0.8, height - 0.8)])
    free_hi = np.array([width / 2 - margin, depth / 2 - margin, min(2.0, height - 0.4)])
    n_lamps = int(np.clip(math.ceil(area / 12.0), 1, 4))
    lamps = np.column_stack([rng.uniform(-width / 2 + 0.5, width / 2 - 0.5, n_lamps),
                             rng.uniform(-depth / 2 + 0.5, depth / 2 - 0.5, n_lamps),
                             np.full(n_lamps, height - 0.3)])
    lighting = Lighting(
        ambient=rng.uniform(0.3, 0.5),
        sun_direction=_unit_from_angles(rng.uniform(0, 2 * math.pi),
                                        math.radians(rng.uniform(15, 50))),
        sun_strength=rng.uniform(0.0, 0.35),
        lamp_positions=lamps,
        lamp_strengths=rng.uniform(0.5, 1.0, n_lamps) * 1.6 / math.sqrt(n_lamps),
        lamp_radius=rng.uniform(1.8, 3.5),
        tint=_light_tint(rng, 0.12),
        sky_zenith=np.array([0.2, 0.2, 0.2]),
        sky_horizon=np.array([0.3, 0.3, 0.3]))
    return quads, placer.boxes, free_lo, free_hi, lighting


def _unit_from_angles(azimuth: float, elevation: float) -> np.ndarray:
    return np.array([math.cos(elevation) * math.cos(azimuth),
                     math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])


def _light_tint(rng, amount: float) -> np.ndarray:
    warm = rng.uniform(-1.0, 1.0)
    return np.array([1.0 - amount * warm, 1.0, 1.0 + amount * warm])


def _outdoor_object(rng, kind: str, area, styles) -> list:
    width, depth = area
    u = rng.uniform
    x, y = u(-width / 2, width / 2), u(-depth / 2, depth / 2)
    yaw = rng.integers(4) * math.pi / 2 if rng.random() < 0.5 else u(0, 2 * math.pi)
    style = _pick(rng, styles['object'])
    if kind == 'car':
        length, w, h = u(3.8, 4.8), u(1.7, 1.9), u(0.9, 1.1)
        paint = _pick(rng, ('metal', 'painted'))
        return [Box.on_floor(x, y, (length, w, h), paint, yaw),
                Box.on_floor(x, y, (length * u(0.45, 0.6), w * 0.92, u(0.45, 0.6)), 'glass',
                             yaw, h)]
    if kind == 'kiosk':
        return [Box.on_floor(x, y, (u(1.5, 4.0), u(1.5, 3.0), u(2.2, 3.2)), style, yaw)]
    if kind == 'bench':
        w = u(1.5, 2.5)
        rot = rotation_z(yaw)
        group = [Box(np.array([x, y, 0.45]), rot, np.array([w, 0.45, 0.05]) / 2, 'wood')]
        for sx in (-1, 1):
            p = rot @ np.array([sx * (w / 2 - 0.15), 0.0, 0.0])
            group.append(Box.on_floor(x + p[0], y + p[1], (0.08, 0.4, 0.425), 'metal', yaw))
        return group
    if kind == 'planter':
        return [Box.on_floor(x, y, (u(0.6, 2.5), u(0.6, 1.5), u(0.4, 0.9)), 'concrete', yaw)]
    if kind == 'post':
        s = u(0.12, 0.3)
        return [Box.on_floor(x, y, (s, s, u(2.5, 6.0)), _pick(rng, ('metal', 'concrete')), yaw)]
    if kind == 'wall':
        return [Box.on_floor(x, y, (u(3.0, 10.0), u(0.2, 0.4), u(0.5, 1.4)),
                             _pick(rng, ('brick', 'concrete', 'tile')), yaw)]
    if kind == 'billboard':
        w, h, z0 = u(1.5, 4.0), u(1.0, 2.5), u(0.8, 2.0)
        rot = rotation_z(yaw)
        group = [Box.on_floor(x, y, (w, 0.12, h), 'poster', yaw, z0)]
        for sx in (-1, 1):
            p = rot @ np.array([sx * (w / 2 - 0.2), 0.0, 0.0])
            group.append(Box.on_floor(x + p[0], y + p[1], (0.1, 0.1, z0), 'metal', yaw))
        return group
    if kind == 'monument':
        s = u(0.8, 2.0)
        return [Box.on_floor(x, y, (s, s, u(0.5, 1.2)), 'concrete', yaw),
                Box.on_floor(x, y, (s * 0.5, s * 0.5, u(1.5, 4.0)), style, yaw, 0.5)]
    raise ValueError(kind)


_OUTDOOR_KINDS = ('car', 'kiosk', 'bench', 'planter', 'post', 'wall', 'billboard', 'monument')
_OUTDOOR_WEIGHTS = np.array([0.25, 0.12, 0.12, 0.12, 0.14, 0.1, 0.1, 0.05])


def _build_outdoor(rng, cfg: SceneConfig):
    width = rng.uniform(*cfg.extent)
    depth = float(np.clip(width * rng.uniform(0.5, 1.8), cfg.extent[0], cfg.extent[1]))
    boxes = []
    # Building ring facing the open area; east/west rows run past the corners to close them.
    for side in range(4):
        yaw = side * math.pi / 2
        rot = rotation_z(yaw)
        inward = rot @ np.array([0.0, 1.0, 0.0])
        along = rot @ np.array([1.0, 0.0, 0.0])
        half_across = depth / 2 if side in (0, 2) else width / 2
        half_length = width / 2 if side in (0, 2) else depth / 2 + 16.0
        s = -half_length
        while s < half_length - 1.0:
            w = min(rng.uniform(6.0, 20.0), half_length - s)
            if half_length - s - w < 4.0:
                w = half_length - s
            b_depth, setback = rng.uniform(8.0, 15.0), rng.uniform(0.0, 2.5)
            h = rng.uniform(*cfg.height)
            centre = (-inward * (half_across + setback + b_depth / 2) + along * (s + w / 2))
            style = _pick(rng, textures.STYLES['facade'])
            boxes.append(Box.on_floor(centre[0], centre[1], (w, b_depth, h), style, yaw))
            if rng.random() < 0.25 and w > 2.6:
                # Canopy / balcony slab sticking out of the facade (too narrow a facade has
                # none; the draw above still happens so other seeds' scenes do not change).
                cw, cd = rng.uniform(2.0, w * 0.8), rng.uniform(0.8, 2.0)
                c = (-inward * (half_across + setback - cd / 2 + 0.01)
                     + along * (s + w / 2 + rng.uniform(-(w - cw) / 2, (w - cw) / 2)))
                boxes.append(Box.on_floor(c[0], c[1], (cw, cd, rng.uniform(0.12, 0.3)),
                                          _pick(rng, ('concrete', 'metal', 'painted')), yaw,
                                          rng.uniform(2.6, 3.6)))
            s += w + (rng.uniform(1.5, 5.0) if rng.random() < 0.3 else 0.0)
    extent = max(width, depth) / 2 + 40.0
    quads = []
    n_tiles = int(math.ceil(2 * extent / 20.0))
    tile = 2 * extent / n_tiles
    ground_style = _pick(rng, textures.STYLES['ground'])
    for i in range(n_tiles):
        for j in range(n_tiles):
            centre = (-extent + (i + 0.5) * tile, -extent + (j + 0.5) * tile, 0.0)
            quads.append(Quad.from_center(centre, (0, 0, 1), (0, 1, 0), tile, tile,
                                          ground_style))
    placer = _Placer((-width / 2 + 0.5, -depth / 2 + 0.5, 0.0),
                     (width / 2 - 0.5, depth / 2 - 0.5, 50.0), gap=0.5)
    styles = {'object': textures.STYLES['outdoor_object']}
    n_objects = int(np.clip(round(width * depth / 60.0 * rng.uniform(0.5, 1.5)
                                  * cfg.object_density), 3, 30))
    weights = _OUTDOOR_WEIGHTS / _OUTDOOR_WEIGHTS.sum()
    for _ in range(n_objects):
        kind = _OUTDOOR_KINDS[int(rng.choice(len(_OUTDOOR_KINDS), p=weights))]
        for _attempt in range(25):
            if placer.add(_outdoor_object(rng, kind, (width, depth), styles)):
                break
    boxes.extend(placer.boxes)
    margin = 4.0
    free_lo = np.array([-width / 2 + margin, -depth / 2 + margin, 1.2])
    free_hi = np.array([width / 2 - margin, depth / 2 - margin, 2.4])
    overcast = rng.random() < 0.3
    zenith = (np.array([0.75, 0.72, 0.7]) if overcast
              else np.array([0.85, 0.55, 0.3]) * rng.uniform(0.8, 1.1))
    lighting = Lighting(
        ambient=rng.uniform(0.55, 0.75) if overcast else rng.uniform(0.35, 0.5),
        sun_direction=_unit_from_angles(rng.uniform(0, 2 * math.pi),
                                        math.radians(rng.uniform(20, 65))),
        sun_strength=rng.uniform(0.1, 0.25) if overcast else rng.uniform(0.5, 0.85),
        lamp_positions=np.zeros((0, 3)),
        lamp_strengths=np.zeros(0),
        lamp_radius=1.0,
        tint=_light_tint(rng, 0.06),
        sky_zenith=np.clip(zenith, 0, 1),
        sky_horizon=np.clip(np.array([0.92, 0.88, 0.85]) * rng.uniform(0.9, 1.05), 0, 1))
    return quads, boxes, free_lo, free_hi, lighting
