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
Exact ray casting of rectangles: the visible face and its depth for every pixel.

Every pixel's ray is intersected with the rectangles, but only inside each rectangle's projected
bounding box (the rectangle is clipped to the near plane first). That makes the cost that of a
z-buffer rasteriser while the depth stays the exact ray / plane intersection.
"""

import math
from typing import Optional

import numpy as np

from neumap_ros.core.camera import PinholeCamera

_EDGE_EPS = 1e-4      # metres of overlap between adjacent faces so that no ray slips through


def check_camera(camera: PinholeCamera) -> None:
    """Reject cameras the renderer cannot draw (distortion)."""
    if camera.has_distortion:
        raise ValueError('the synthetic renderer draws undistorted pinhole images only')


def pixel_rays(camera: PinholeCamera) -> tuple:
    """Normalised image coordinates of the pixel centres along x and y (float32)."""
    xs = (np.arange(camera.width, dtype=np.float64) - camera.cx) / camera.fx
    ys = (np.arange(camera.height, dtype=np.float64) - camera.cy) / camera.fy
    return xs.astype(np.float32), ys.astype(np.float32)


def faces_in_camera(scene, T_world_camera: np.ndarray) -> tuple:
    """Origins and axes of all faces expressed in the camera frame."""
    rotation = T_world_camera[:3, :3]
    centre = T_world_camera[:3, 3]
    origins = (scene.origins - centre) @ rotation
    return origins, scene.us @ rotation, scene.vs @ rotation, scene.normals @ rotation


def _clip_near(polygon: np.ndarray, near: float) -> Optional[np.ndarray]:
    """Part of a convex polygon (K, 3) with z >= near (Sutherland-Hodgman), or None."""
    inside = polygon[:, 2] >= near
    if inside.all():
        return polygon
    if not inside.any():
        return None
    out = []
    for k in range(len(polygon)):
        p, q = polygon[k], polygon[(k + 1) % len(polygon)]
        if inside[k]:
            out.append(p)
        if inside[k] != inside[(k + 1) % len(polygon)]:
            out.append(p + (near - p[2]) / (q[2] - p[2]) * (q - p))
    return np.array(out)


def rasterize(scene, camera: PinholeCamera, T_world_camera: np.ndarray,
              near: float = 0.01) -> tuple:
    """Exact depth (H, W) float32 (inf where nothing is hit) and face index (H, W) int32."""
    check_camera(camera)
    width, height = camera.width, camera.height
    xs, ys = pixel_rays(camera)
    depth = np.full((height, width), np.inf, np.float32)
    face = np.full((height, width), -1, np.int32)
    o, u, v, n = faces_in_camera(scene, np.asarray(T_world_camera, float))
    n_dot_o = np.einsum('ij,ij->i', n, o)
    u_dot_o = np.einsum('ij,ij->i', u, o)
    v_dot_o = np.einsum('ij,ij->i', v, o)
    sizes = scene.sizes
    for i in np.flatnonzero(n_dot_o < -1e-9):        # front faces only
        du, dv = sizes[i, 0] * u[i], sizes[i, 1] * v[i]
        polygon = _clip_near(np.stack([o[i], o[i] + du, o[i] + du + dv, o[i] + dv]), near)
        if polygon is None:
            continue
        px = camera.fx * polygon[:, 0] / polygon[:, 2] + camera.cx
        py = camera.fy * polygon[:, 1] / polygon[:, 2] + camera.cy
        x0, x1 = max(0, int(math.floor(px.min()))), min(width, int(math.ceil(px.max())) + 1)
        y0, y1 = max(0, int(math.floor(py.min()))), min(height, int(math.ceil(py.max())) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        wx, wy = xs[None, x0:x1], ys[y0:y1, None]
        # Python floats keep the per-pixel arithmetic in float32 (numpy scalars would promote).
        ni, ui, vi = n[i].tolist(), u[i].tolist(), v[i].tolist()
        with np.errstate(divide='ignore', invalid='ignore'):
            t = float(n_dot_o[i]) / (ni[0] * wx + ni[1] * wy + ni[2])
        a = t * (ui[0] * wx + ui[1] * wy + ui[2]) - float(u_dot_o[i])
        b = t * (vi[0] * wx + vi[1] * wy + vi[2]) - float(v_dot_o[i])
        win_depth = depth[y0:y1, x0:x1]
        mask = ((t > near) & (t < win_depth) & (a >= -_EDGE_EPS) & (b >= -_EDGE_EPS)
                & (a <= sizes[i, 0] + _EDGE_EPS) & (b <= sizes[i, 1] + _EDGE_EPS))
        np.copyto(win_depth, t, where=mask)
        np.copyto(face[y0:y1, x0:x1], np.int32(i), where=mask)
    return depth, face


def render_depth(scene, camera: PinholeCamera, T_world_camera: np.ndarray) -> np.ndarray:
    """Depth only (float32 metres along the optical axis, 0 = no hit)."""
    depth, _ = rasterize(scene, camera, T_world_camera)
    depth[~np.isfinite(depth)] = 0.0
    return depth
