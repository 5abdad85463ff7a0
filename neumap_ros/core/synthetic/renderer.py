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
Pinhole renderer for generated scenes (numpy + OpenCV, no OpenGL).

Visibility and exact depth come from :mod:`raster`. Shading is deferred: the winning face of each
pixel is looked up in its mip-mapped texture (trilinear, level from the analytic pixel
footprint) and multiplied by the face's baked light map (:mod:`lighting`), so a surface point
has the same colour from every viewpoint except for the camera effects applied last
(auto-exposure, white balance, vignetting, gamma, blur, sensor noise, JPEG).
"""

from dataclasses import dataclass
import math
from typing import Optional

import cv2
import numpy as np

from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.synthetic import lighting
from neumap_ros.core.synthetic.raster import faces_in_camera, pixel_rays, rasterize


@dataclass(frozen=True)
class Photometric:
    """Camera effects of one frame; the defaults only apply auto-exposure."""

    exposure: float = 1.0            # auto-exposure: mean brightness relative to 0.47
    white_balance: tuple = (1.0, 1.0, 1.0)
    gamma: float = 1.0
    contrast: float = 1.0
    vignetting: float = 0.0          # relative darkening at the image corners
    blur_sigma: float = 0.0          # pixels (optics, slight defocus; also antialiases edges)
    noise_sigma: float = 0.0         # sensor noise std at mid grey, in [0, 1] units
    jpeg_quality: int = 0            # 0 = no compression

    @classmethod
    def sample(cls, rng: np.random.Generator) -> 'Photometric':
        """Random camera effects of the strength seen in handheld RGB-D captures."""
        return cls(exposure=rng.uniform(0.8, 1.2),
                   white_balance=tuple(1.0 + rng.normal(0.0, 0.04, 3)),
                   gamma=rng.uniform(0.85, 1.2),
                   contrast=rng.uniform(0.85, 1.15),
                   vignetting=rng.uniform(0.0, 0.35),
                   blur_sigma=rng.uniform(0.3, 0.7),
                   noise_sigma=rng.uniform(0.003, 0.01),
                   jpeg_quality=int(rng.integers(85, 98)))


@dataclass
class RenderResult:
    """One rendered frame: BGR colour, depth along the optical axis, index of the visible face."""

    color: np.ndarray      # (H, W, 3) uint8 BGR
    depth: np.ndarray      # (H, W) float32 metres, 0 where no surface was hit (sky)
    face: np.ndarray       # (H, W) int32, -1 where no surface was hit


def _remap(image: np.ndarray, x: np.ndarray, y: np.ndarray,
           border: int = cv2.BORDER_REFLECT_101) -> np.ndarray:
    """Bilinear lookups of (N,) float32 positions in an image -> (N, channels) float32."""
    n = len(x)
    cols = 1024 if n > 1024 else max(n, 1)
    rows = -(-n // cols)
    pad = rows * cols - n
    mx = np.pad(x.astype(np.float32, copy=False), (0, pad)).reshape(rows, cols)
    my = np.pad(y.astype(np.float32, copy=False), (0, pad)).reshape(rows, cols)
    out = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=border)
    channels = 1 if image.ndim == 2 else image.shape[2]
    return out.reshape(-1, channels)[:n].astype(np.float32)


def _sample_texture(pyramid: list, x: np.ndarray, y: np.ndarray,
                    level: np.ndarray) -> np.ndarray:
    """Trilinear lookup: bilinear on the two mip levels around ``level``, blended (0..255)."""
    level = np.clip(level, 0.0, len(pyramid) - 1.0)
    base = np.minimum(level.astype(np.int32), len(pyramid) - 1)
    frac = (level - base)[:, None]
    out = np.empty((len(x), 3), np.float32)
    h0, w0 = pyramid[0].shape[:2]
    for lv in np.unique(base):
        sel = np.flatnonzero(base == lv)
        samples = []
        for k in (lv, min(lv + 1, len(pyramid) - 1)):
            hk, wk = pyramid[k].shape[:2]
            samples.append(_remap(pyramid[k], (x[sel] + 0.5) * (wk / w0) - 0.5,
                                  (y[sel] + 0.5) * (hk / h0) - 0.5))
        out[sel] = samples[0] + (samples[1] - samples[0]) * frac[sel]
    return out


def _surface_colors(scene, camera: PinholeCamera, T_world_camera: np.ndarray,
                    depth: np.ndarray, face: np.ndarray, pixels: np.ndarray, rx: np.ndarray,
                    ry: np.ndarray) -> np.ndarray:
    """Lit colour (N, 3) of the hit pixels (flat indices, sorted by face)."""
    o, u, v, n = faces_in_camera(scene, T_world_camera)
    faces = face.ravel()[pixels]
    z = depth.ravel()[pixels]
    out = np.empty((len(pixels), 3), np.float32)
    cuts = np.flatnonzero(np.diff(faces)) + 1
    focal = math.sqrt(camera.fx * camera.fy)
    for s, e in zip(np.r_[0, cuts], np.r_[cuts, len(pixels)]):
        f = int(faces[s])
        x, y, zf = rx[s:e], ry[s:e], z[s:e]
        uf, vf, nf = u[f].tolist(), v[f].tolist(), n[f].tolist()
        a = zf * (uf[0] * x + uf[1] * y + uf[2]) - float(o[f] @ u[f])
        b = zf * (vf[0] * x + vf[1] * y + vf[2]) - float(o[f] @ v[f])
        # Pixel footprint on the surface: sqrt(area) = z / (f sqrt(|n.d|)), d = (x, y, 1);
        # half-way (in log) towards the long axis of the footprint ellipse to limit aliasing.
        n_dot_d = np.abs(nf[0] * x + nf[1] * y + nf[2]) + 1e-6
        stretch = np.sqrt(x * x + y * y + 1.0) / n_dot_d
        footprint = zf / (focal * np.sqrt(n_dot_d)) * stretch ** 0.25
        texel = float(scene.texels[f])
        level = np.log2(np.maximum(footprint / texel, 1e-6))
        albedo = _sample_texture(scene.texture(f), a / texel - 0.5, b / texel - 0.5, level)
        light, cell_u, cell_v = lighting.lightmap(scene, f)
        irradiance = _remap(light, a / cell_u - 0.5, b / cell_v - 0.5, cv2.BORDER_REPLICATE)
        out[s:e] = albedo * irradiance
    return out * np.float32(1.0 / 255.0)


def _sky(scene, directions: np.ndarray) -> np.ndarray:
    """Sky colour (N, 3) for world ray directions: gradient plus faint, smooth clouds."""
    light = scene.lighting
    d = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    elevation = np.arcsin(np.clip(d[:, 2], -1.0, 1.0))
    t = np.clip(elevation / 0.8, 0.0, 1.0)[:, None] ** 0.6
    color = light.sky_horizon * (1.0 - t) + light.sky_zenith * t
    clouds = scene.cache.get('sky')
    if clouds is None:
        rng = np.random.default_rng([scene.seed, 202])
        grid = np.tile(rng.standard_normal((9, 32)).astype(np.float32), (1, 3))
        # Upsampling three periods and keeping the middle one wraps seamlessly in azimuth.
        clouds = cv2.resize(grid, (3072, 256), interpolation=cv2.INTER_CUBIC)[:, 1024:2048]
        scene.cache['sky'] = np.ascontiguousarray(clouds)
    azimuth = np.arctan2(d[:, 1], d[:, 0])
    cx = ((azimuth / (2 * np.pi) + 0.5) * 1024 - 0.5).astype(np.float32)
    cy = (np.clip(elevation / (np.pi / 2), 0, 1) * 255).astype(np.float32)
    c = _remap(clouds, cx, cy, cv2.BORDER_WRAP).ravel()
    cover = np.clip(c * 0.5, 0.0, 1.0)[:, None] * 0.6
    return (color * (1.0 - cover) + 0.95 * cover).astype(np.float32)


def _camera_effects(image: np.ndarray, photometric: Photometric,
                    rng: Optional[np.random.Generator]) -> np.ndarray:
    """Linear float image -> uint8 BGR through exposure, optics, sensor and codec."""
    p = photometric
    height, width = image.shape[:2]
    luma = float(np.mean(image[::4, ::4]))
    image = image * (0.47 * p.exposure / max(luma, 1e-3))
    image *= np.asarray(p.white_balance, np.float32)
    if p.vignetting > 0:
        yy = (np.arange(height, dtype=np.float32) - height / 2) / (height / 2)
        xx = (np.arange(width, dtype=np.float32) - width / 2) / (width / 2)
        r2 = (xx[None, :] ** 2 + yy[:, None] ** 2) / 2.0
        image *= (1.0 - p.vignetting * r2)[..., None]
    image = np.clip(image, 0.0, None)
    if p.gamma != 1.0:
        image = image ** np.float32(1.0 / p.gamma)
    if p.contrast != 1.0:
        image = (image - 0.5) * np.float32(p.contrast) + 0.5
    if p.blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), p.blur_sigma)
    if p.noise_sigma > 0:
        if rng is None:
            raise ValueError('sensor noise needs a random generator')
        # Shot noise grows with the signal, read noise does not.
        sigma = p.noise_sigma * np.sqrt(0.3 + 1.4 * np.clip(image, 0.0, 1.0))
        image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    out = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if p.jpeg_quality > 0:
        _, data = cv2.imencode('.jpg', out, [cv2.IMWRITE_JPEG_QUALITY, int(p.jpeg_quality)])
        out = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return out


def render(scene, camera: PinholeCamera, T_world_camera: np.ndarray,
           photometric: Optional[Photometric] = None,
           rng: Optional[np.random.Generator] = None) -> RenderResult:
    """Render colour, depth and face index of ``scene`` seen from camera-to-world pose."""
    T_world_camera = np.asarray(T_world_camera, float)
    depth, face = rasterize(scene, camera, T_world_camera)
    xs, ys = pixel_rays(camera)
    pixels = np.flatnonzero(face.ravel() >= 0)
    # Stable sort of 16-bit keys is a radix sort: much faster than a comparison sort here.
    keys = face.ravel()[pixels]
    keys = keys.astype(np.int16) if len(scene) < 32768 else keys
    pixels = pixels[np.argsort(keys, kind='stable')]
    rows, cols = np.divmod(pixels, camera.width)
    rx, ry = xs[cols], ys[rows]
    image = np.empty((camera.height * camera.width, 3), np.float32)
    if len(pixels):
        colors = _surface_colors(scene, camera, T_world_camera, depth, face, pixels, rx, ry)
        image[pixels] = colors * scene.lighting.tint.astype(np.float32)
    sky = np.flatnonzero(face.ravel() < 0)
    if len(sky):
        srows, scols = np.divmod(sky, camera.width)
        dirs = np.stack([xs[scols], ys[srows], np.ones(len(sky), np.float32)], axis=1)
        world_dirs = dirs.astype(np.float64) @ T_world_camera[:3, :3].T
        image[sky] = _sky(scene, world_dirs)
    image = image.reshape(camera.height, camera.width, 3)
    color = _camera_effects(image, photometric or Photometric(), rng)
    depth[~np.isfinite(depth)] = 0.0
    return RenderResult(color, depth, face)
