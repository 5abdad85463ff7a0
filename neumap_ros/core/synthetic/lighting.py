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
Baked, view-independent lighting stored per face as a low-resolution light map.

Irradiance = ambient x contact occlusion + sun x shadow + lamps x shadow, all Lambertian, so a
surface point keeps its brightness from every viewpoint (what keypoint repeatability needs)
while shadows and darkened corners give the images the structure of real photographs.
Shadows come from depth maps (an orthographic one for the sun, a cube of six for each lamp)
rendered with the scene's solid boxes as casters and filtered with percentage-closer filtering;
contact occlusion is the attenuated form factor of nearby rectangles.
"""

from dataclasses import dataclass
import math

import cv2
import numpy as np

from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.synthetic.raster import rasterize

_PCF = [(dy, dx) for dy in (-1.5, -0.5, 0.5, 1.5) for dx in (-1.5, -0.5, 0.5, 1.5)]


@dataclass
class QuadSet:
    """Bare face arrays (what :func:`rasterize` needs) for shadow casters."""

    origins: np.ndarray
    us: np.ndarray
    vs: np.ndarray
    normals: np.ndarray
    sizes: np.ndarray

    @classmethod
    def from_quads(cls, quads: list) -> 'QuadSet':
        """Stack a list of :class:`Quad`."""
        return cls(np.array([q.origin for q in quads], float).reshape(-1, 3),
                   np.array([q.u for q in quads], float).reshape(-1, 3),
                   np.array([q.v for q in quads], float).reshape(-1, 3),
                   np.array([q.normal for q in quads], float).reshape(-1, 3),
                   np.array([q.size for q in quads], float).reshape(-1, 2))

    def corners(self) -> np.ndarray:
        """(M, 4, 3) corners."""
        du = self.us * self.sizes[:, :1]
        dv = self.vs * self.sizes[:, 1:]
        o = self.origins
        return np.stack([o, o + du, o + du + dv, o + dv], axis=1)


def _all_box_faces(scene) -> QuadSet:
    faces = []
    for box in scene.boxes:
        faces.extend(box.quads())
    return QuadSet.from_quads(faces)


def _nearest(depth: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    r = np.clip(np.floor(rows + 0.5).astype(np.int64), 0, h - 1)
    c = np.clip(np.floor(cols + 0.5).astype(np.int64), 0, w - 1)
    inside = (rows > -0.5) & (rows < h - 0.5) & (cols > -0.5) & (cols < w - 0.5)
    return np.where(inside, depth[r, c], np.inf)


class SunShadow:
    """Orthographic depth map along the sun direction."""

    def __init__(self, casters: QuadSet, sun_direction: np.ndarray, receivers: np.ndarray,
                 resolution: int = 2048):
        """Cover the casters and the (N, 3) receiver points with ``resolution`` pixels."""
        d = -np.asarray(sun_direction, float)
        d /= np.linalg.norm(d)
        helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        ex = np.cross(d, helper)
        ex /= np.linalg.norm(ex)
        ey = np.cross(d, ex)
        self.d, self.ex, self.ey = d, ex, ey
        points = np.concatenate([casters.corners().reshape(-1, 3), receivers])
        x, y = points @ ex, points @ ey
        self.x0, self.y0 = x.min() - 1.0, y.min() - 1.0
        extent = max(x.max() + 1.0 - self.x0, y.max() + 1.0 - self.y0)
        self.cell = extent / resolution
        self.depth = np.full((resolution, resolution), np.inf, np.float32)
        self._draw(casters)

    def _draw(self, q: QuadSet) -> None:
        res = self.depth.shape[0]
        grid = self.x0 + (np.arange(res) + 0.5) * self.cell
        gy = self.y0 + (np.arange(res) + 0.5) * self.cell
        corners = q.corners()
        for i in range(len(q.origins)):
            n, o, u, v = q.normals[i], q.origins[i], q.us[i], q.vs[i]
            nd = float(n @ self.d)
            if nd > -1e-6:              # faces turned away from the sun or edge-on
                continue
            cx, cy = corners[i] @ self.ex, corners[i] @ self.ey
            j0 = max(0, int((cx.min() - self.x0) / self.cell) - 1)
            j1 = min(res, int((cx.max() - self.x0) / self.cell) + 2)
            i0 = max(0, int((cy.min() - self.y0) / self.cell) - 1)
            i1 = min(res, int((cy.max() - self.y0) / self.cell) + 2)
            if j0 >= j1 or i0 >= i1:
                continue
            xs, ys = grid[None, j0:j1], gy[i0:i1, None]
            # Ray p0 + t d from the plane through the origin spanned by ex, ey.
            t = (float(n @ o) - xs * float(n @ self.ex) - ys * float(n @ self.ey)) / nd
            a = xs * float(self.ex @ u) + ys * float(self.ey @ u) + t * float(self.d @ u) - o @ u
            b = xs * float(self.ex @ v) + ys * float(self.ey @ v) + t * float(self.d @ v) - o @ v
            inside = (a >= 0) & (a <= q.sizes[i, 0]) & (b >= 0) & (b <= q.sizes[i, 1])
            window = self.depth[i0:i1, j0:j1]
            np.copyto(window, t.astype(np.float32), where=inside & (t < window))

    def visibility(self, points: np.ndarray) -> np.ndarray:
        """Lit fraction (N,) of world points, 4x4 percentage-closer filtered."""
        cols = (points @ self.ex - self.x0) / self.cell - 0.5
        rows = (points @ self.ey - self.y0) / self.cell - 0.5
        t = points @ self.d
        bias = 2.5 * self.cell + 0.01
        lit = np.zeros(len(points))
        for dy, dx in _PCF:
            lit += t <= _nearest(self.depth, rows + dy, cols + dx) + bias
        return lit / len(_PCF)


class LampShadow:
    """Cube of six perspective depth maps around a point light."""

    def __init__(self, casters: QuadSet, position: np.ndarray, resolution: int = 384):
        """Render the six 90-degree views of the casters from ``position``."""
        self.position = np.asarray(position, float)
        half = resolution / 2.0
        self.camera = PinholeCamera(resolution, resolution, half, half, half - 0.5, half - 0.5)
        self.rotations, self.depths = [], []
        for axis in range(3):
            for sign in (1.0, -1.0):
                forward = np.zeros(3)
                forward[axis] = sign
                helper = np.array([0.0, 0.0, 1.0]) if axis != 2 else np.array([0.0, 1.0, 0.0])
                right = np.cross(forward, helper)
                right /= np.linalg.norm(right)
                pose = np.eye(4)
                pose[:3, :3] = np.column_stack([right, np.cross(forward, right), forward])
                pose[:3, 3] = self.position
                depth, _ = rasterize(casters, self.camera, pose, near=0.02)
                self.rotations.append(pose[:3, :3])
                self.depths.append(depth)

    def visibility(self, points: np.ndarray) -> np.ndarray:
        """Lit fraction (N,) of world points, 4x4 percentage-closer filtered."""
        w = points - self.position
        axis = np.argmax(np.abs(w), axis=1)
        face = 2 * axis + (w[np.arange(len(w)), axis] < 0)
        lit = np.ones(len(points))
        cam = self.camera
        for f in range(6):
            sel = np.flatnonzero(face == f)
            if not len(sel):
                continue
            local = w[sel] @ self.rotations[f]
            z = np.maximum(local[:, 2], 1e-6)
            cols = cam.fx * local[:, 0] / z + cam.cx
            rows = cam.fy * local[:, 1] / z + cam.cy
            bias = 0.01 + 3.0 * z / cam.fx
            count = np.zeros(len(sel))
            for dy, dx in _PCF:
                count += z <= _nearest(self.depths[f], rows + dy, cols + dx) + bias
            lit[sel] = count / len(_PCF)
        return lit


def _form_factors(points: np.ndarray, normal: np.ndarray, q: QuadSet) -> np.ndarray:
    """
    (N, K) form factors from points with a common normal to each rectangle of ``q``.

    Lambert's polygon formula with each rectangle wound to face the point; rectangles behind
    the receiving plane give (clamped) zero.
    """
    corners = q.corners()                                        # (K, 4, 3)
    r = corners[None] - points[:, None, None, :]                 # (N, K, 4, 3)
    r /= np.linalg.norm(r, axis=3, keepdims=True) + 1e-12
    r_next = np.roll(r, -1, axis=2)
    cross = np.cross(r, r_next)
    norm = np.linalg.norm(cross, axis=3) + 1e-12
    gamma = np.arccos(np.clip(np.einsum('nkvc,nkvc->nkv', r, r_next), -1.0, 1.0))
    raw = np.sum(gamma * (cross @ normal) / norm, axis=2) / (2.0 * math.pi)
    # Sign of the winding as seen from the point: positive in front of the rectangle.
    facing = np.sign(np.einsum('nkc,kc->nk', points[:, None, :] - q.origins[None], q.normals))
    return np.clip(raw * facing, 0.0, 1.0)


def _distance_to_quads(points: np.ndarray, q: QuadSet) -> np.ndarray:
    rel = points[:, None, :] - q.origins[None]
    a = np.clip(np.einsum('nkc,kc->nk', rel, q.us), 0.0, q.sizes[:, 0])
    b = np.clip(np.einsum('nkc,kc->nk', rel, q.vs), 0.0, q.sizes[:, 1])
    closest = a[..., None] * q.us + b[..., None] * q.vs
    return np.linalg.norm(rel - closest, axis=2)


class LightBaker:
    """Builds the shadow maps of a scene once and bakes light maps face by face."""

    def __init__(self, scene):
        """Prepare occluders and shadow maps (the expensive, per-scene part)."""
        self.scene = scene
        light = scene.lighting
        indoor = scene.kind == 'indoor'
        self.cell = 0.04 if indoor else 0.2
        self.max_cells = 96 if indoor else 128
        self.radius = 0.35 if indoor else 1.5        # reach of contact occlusion (m)
        casters = _all_box_faces(scene)
        shell = QuadSet(scene.origins[:scene.n_shell], scene.us[:scene.n_shell],
                        scene.vs[:scene.n_shell], scene.normals[:scene.n_shell],
                        scene.sizes[:scene.n_shell])
        self.occluders = QuadSet(*(np.concatenate([a, b]) for a, b in zip(
            (shell.origins, shell.us, shell.vs, shell.normals, shell.sizes),
            (casters.origins, casters.us, casters.vs, casters.normals, casters.sizes))))
        corners = self.occluders.corners()
        self.occluder_lo, self.occluder_hi = corners.min(axis=1), corners.max(axis=1)
        self.sun = None
        if light.sun_strength > 0 and len(casters.origins):
            lo, hi = scene.free_lo - 40.0, scene.free_hi + 40.0
            receivers = np.array([[x, y, 0.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
            self.sun = SunShadow(casters, light.sun_direction, receivers,
                                 1024 if indoor else 2048)
        self.lamps = [LampShadow(casters, p) if len(casters.origins) else None
                      for p in light.lamp_positions]

    def lightmap(self, index: int) -> tuple:
        """(irradiance map (rows, cols) float32, metres per cell along u, along v) of a face."""
        scene = self.scene
        size = scene.sizes[index]
        nu = int(np.clip(math.ceil(size[0] / self.cell), 2, self.max_cells))
        nv = int(np.clip(math.ceil(size[1] / self.cell), 2, self.max_cells))
        cu, cv = size[0] / nu, size[1] / nv
        a = (np.arange(nu) + 0.5) * cu
        b = (np.arange(nv) + 0.5) * cv
        normal = scene.normals[index]
        points = (scene.origins[index] + b[:, None, None] * scene.vs[index]
                  + a[None, :, None] * scene.us[index]).reshape(-1, 3)
        # Lift the sample points off the surface a little against self-shadowing.
        points = points + 0.005 * normal
        light = scene.lighting
        # Occlusion varies slowly: computed on a grid twice as coarse, then interpolated.
        mu, mv = max(2, (nu + 1) // 2), max(2, (nv + 1) // 2)
        coarse = (scene.origins[index] + 0.005 * normal
                  + ((np.arange(mv) + 0.5) * size[1] / mv)[:, None, None] * scene.vs[index]
                  + ((np.arange(mu) + 0.5) * size[0] / mu)[None, :, None] * scene.us[index])
        occlusion = np.ones((mv, mu))
        # Occluders are gathered per block of cells: a big face (a ground tile) then only
        # tests the few rectangles near each block, not everything near the whole face.
        for r in range(0, mv, 16):
            for c in range(0, mu, 16):
                block = coarse[r:r + 16, c:c + 16].reshape(-1, 3)
                occlusion[r:r + 16, c:c + 16] = self._occlusion(block, normal).reshape(
                    min(16, mv - r), min(16, mu - c))
        occlusion = cv2.resize(occlusion, (nu, nv), interpolation=cv2.INTER_LINEAR)
        irradiance = light.ambient * occlusion.ravel()
        if self.sun is not None:
            cos = float(normal @ light.sun_direction)
            if cos > 0:
                irradiance = irradiance + light.sun_strength * cos * self.sun.visibility(points)
        for lamp, position, strength in zip(self.lamps, light.lamp_positions,
                                            light.lamp_strengths):
            to_lamp = position - points
            dist = np.linalg.norm(to_lamp, axis=1) + 1e-6
            cos = np.maximum(to_lamp @ normal / dist, 0.0)
            direct = strength * cos / (1.0 + (dist / light.lamp_radius) ** 2)
            if lamp is not None and np.any(direct > 0):
                direct = direct * lamp.visibility(points)
            irradiance = irradiance + direct
        return irradiance.reshape(nv, nu).astype(np.float32), float(cu), float(cv)

    def _occlusion(self, points: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Return 1 - attenuated form factor of the rectangles within reach of the points."""
        lo = points.min(axis=0) - 3 * self.radius
        hi = points.max(axis=0) + 3 * self.radius
        near = np.flatnonzero(np.all((self.occluder_lo <= hi) & (self.occluder_hi >= lo),
                                     axis=1))
        if not len(near):
            return np.ones(len(points))
        q = QuadSet(*(arr[near] for arr in (self.occluders.origins, self.occluders.us,
                                            self.occluders.vs, self.occluders.normals,
                                            self.occluders.sizes)))
        attenuation = np.exp(-_distance_to_quads(points, q) / self.radius)
        occlusion = np.sum(_form_factors(points, normal, q) * attenuation, axis=1)
        return np.clip(1.0 - 1.2 * occlusion, 0.25, 1.0)


def lightmap(scene, index: int) -> tuple:
    """Return the (cached) light map of face ``index``, see :meth:`LightBaker.lightmap`."""
    key = ('light', index)
    cached = scene.cache.get(key)
    if cached is None:
        baker = scene.cache.get('baker')
        if baker is None:
            baker = LightBaker(scene)
            scene.cache['baker'] = baker
        cached = baker.lightmap(index)
        scene.cache[key] = cached
    return cached
