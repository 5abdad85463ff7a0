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
Camera paths through generated scenes: smooth handheld sequences and revisiting queries.

Poses are camera-to-world 4x4 matrices in the OpenCV optical frame (x right, y down, z
forward) in a z-up world. A path is a Catmull-Rom spline through waypoints that are free of
obstacles (with a clearance that guarantees the minimum depth over the whole image) and whose
views look at surfaces at a sensible distance; frames are spaced by arc length, get a little
smooth handheld shake, and every frame is checked again before it is returned.
"""

from dataclasses import dataclass
import math
from typing import Optional

import numpy as np
from scipy.ndimage import gaussian_filter1d

from neumap_ros.core.camera import PinholeCamera


def default_camera(width: int = 640, height: int = 480) -> PinholeCamera:
    """Return the 7-Scenes colour camera (f = 525 at 640x480) scaled to width x height."""
    scale = width / 640.0
    return PinholeCamera(int(width), int(height), 525.0 * scale, 525.0 * scale,
                         width / 2.0, height / 2.0)


@dataclass(frozen=True)
class TrajectoryConfig:
    """Constraints and motion statistics of camera paths; ``for_kind`` gives the defaults."""

    step: float = 0.05                     # metres between consecutive frames
    waypoint_spacing: tuple = (0.6, 2.0)   # metres between spline waypoints
    yaw_change_deg: float = 45.0           # largest heading change between waypoints
    pitch_deg: tuple = (-40.0, 12.0)
    max_roll_deg: float = 6.0
    min_depth: float = 0.3                 # no pixel closer than this (metres)
    median_depth: tuple = (0.6, 4.5)       # accepted range of a view's median depth
    min_valid_fraction: float = 0.97       # share of pixels that must hit a surface
    shake_m: float = 0.004                 # handheld position jitter (std, metres)
    shake_deg: float = 0.4                 # handheld angular jitter (std, degrees)
    revisit_angle_deg: tuple = (8.0, 35.0)   # how far queries orbit away from a map view
    revisit_min_offset: float = 0.15         # metres a query keeps from every map camera

    @classmethod
    def for_kind(cls, kind: str) -> 'TrajectoryConfig':
        """Defaults for 'indoor' (handheld) or 'outdoor' (walking along the open area)."""
        if kind == 'indoor':
            return cls()
        if kind == 'outdoor':
            return cls(step=0.2, waypoint_spacing=(3.0, 9.0), yaw_change_deg=45.0,
                       pitch_deg=(-15.0, 12.0), max_roll_deg=4.0, median_depth=(4.0, 45.0),
                       min_valid_fraction=0.55, shake_m=0.01, revisit_angle_deg=(8.0, 30.0),
                       revisit_min_offset=0.6)
        raise ValueError(f'unknown scene kind {kind!r}')


@dataclass(frozen=True)
class ViewStats:
    """Depth statistics of a view from a sparse grid of rays."""

    min_depth: float
    median_depth: float
    valid_fraction: float
    n_faces: int = 0               # distinct faces hit: a rough measure of how much is in view


def look_pose(position, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """
    Camera-to-world pose at ``position`` looking along yaw / pitch (radians, z-up world).

    Yaw is measured from world +x towards +y, pitch upwards from the horizon, roll turns the
    image clockwise around the optical axis.
    """
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw),
                        math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    c, s = math.cos(roll), math.sin(roll)
    pose = np.eye(4)
    pose[:3, 0] = c * right + s * down
    pose[:3, 1] = -s * right + c * down
    pose[:3, 2] = forward
    pose[:3, 3] = position
    return pose


def _grid_rays(camera: PinholeCamera, nx: int = 16, ny: int = 12) -> np.ndarray:
    """Camera-frame ray directions (z = 1) through a regular grid of pixels."""
    u = (np.arange(nx) + 0.5) * camera.width / nx - 0.5
    v = (np.arange(ny) + 0.5) * camera.height / ny - 0.5
    uu, vv = np.meshgrid(u, v)
    return np.stack([(uu.ravel() - camera.cx) / camera.fx, (vv.ravel() - camera.cy) / camera.fy,
                     np.ones(uu.size)], axis=1)


def _corner_ray_norm(camera: PinholeCamera) -> float:
    """Largest |(x, y, 1)| over the image: depth >= distance / this for every pixel."""
    x = max(camera.cx, camera.width - camera.cx) / camera.fx
    y = max(camera.cy, camera.height - camera.cy) / camera.fy
    return math.sqrt(1.0 + x * x + y * y)


def view_stats(scene, camera: PinholeCamera, T_world_camera: np.ndarray) -> ViewStats:
    """Depth statistics of a view, from a 16 x 12 grid of rays."""
    rays = _grid_rays(camera)
    t, face = scene.raycast(T_world_camera[:3, 3], rays @ T_world_camera[:3, :3].T)
    hit = np.isfinite(t)
    if not hit.any():
        return ViewStats(0.0, 0.0, 0.0)
    return ViewStats(float(t[hit].min()), float(np.median(t[hit])), float(hit.mean()),
                     len(np.unique(face[hit])))


def _view_ok(stats: ViewStats, cfg: TrajectoryConfig) -> bool:
    return (stats.valid_fraction >= cfg.min_valid_fraction and stats.min_depth >= cfg.min_depth
            and cfg.median_depth[0] <= stats.median_depth <= cfg.median_depth[1])


def _clearance(camera: PinholeCamera, cfg: TrajectoryConfig) -> float:
    # A camera this far from every surface sees no pixel closer than min_depth.
    return cfg.min_depth * _corner_ray_norm(camera) + 0.02


def _catmull_rom(points: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Uniform Catmull-Rom spline through ``points`` (K, D) at params in [0, K-1]."""
    padded = np.concatenate([2 * points[:1] - points[1:2], points,
                             2 * points[-1:] - points[-2:-1]])
    seg = np.clip(np.floor(params).astype(int), 0, len(points) - 2)
    t = (params - seg)[:, None]
    p0, p1, p2, p3 = padded[seg], padded[seg + 1], padded[seg + 2], padded[seg + 3]
    return 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)


def _choose_view(scene, camera, cfg, rng, position, yaw0: float, spread: float):
    """
    Yaw, pitch, roll around ``yaw0`` whose view passes the checks, or None.

    Among a few valid candidates the one showing the most distinct faces at a comfortable
    distance wins, so that paths look at furniture and facades more than at blank walls.
    """
    best, best_score, valid = None, -np.inf, 0
    for attempt in range(24):
        # Widen the search only when the allowed turn gives no usable view at all.
        width = spread * (1.0 if valid or attempt < 12 else 1.0 + (attempt - 11) / 4.0)
        yaw = yaw0 + rng.uniform(-width, width)
        pitch = math.radians(rng.uniform(*cfg.pitch_deg))
        roll = math.radians(np.clip(rng.normal(0.0, cfg.max_roll_deg / 2), -cfg.max_roll_deg,
                                    cfg.max_roll_deg))
        stats = view_stats(scene, camera, look_pose(position, yaw, pitch, roll))
        if not _view_ok(stats, cfg):
            continue
        preferred = math.sqrt(cfg.median_depth[0] * cfg.median_depth[1])
        score = stats.n_faces - 4.0 * abs(math.log(stats.median_depth / preferred))
        if score > best_score:
            best, best_score = (yaw, pitch, roll), score
        valid += 1
        if valid == 6:
            break
    return best


def _segment_free(scene, p: np.ndarray, q: np.ndarray, clearance: float) -> bool:
    n = max(2, int(np.linalg.norm(q - p) / 0.05) + 1)
    points = p + np.linspace(0.0, 1.0, n)[:, None] * (q - p)
    return bool(scene.is_free(points, clearance).all())


def _waypoints(scene, camera, cfg, rng, length: float, clearance: float) -> list:
    """Waypoints (x, y, z, yaw, pitch, roll) covering at least ``length`` metres of path."""
    start = scene.sample_free_points(rng, 1, clearance + 0.1)
    if len(start) == 0:
        return []
    position = start[0]
    view = _choose_view(scene, camera, cfg, rng, position, rng.uniform(0, 2 * math.pi), math.pi)
    if view is None:
        return []
    points = [np.r_[position, view]]
    heading, total = rng.uniform(0, 2 * math.pi), 0.0
    z_lo, z_hi = scene.free_lo[2], scene.free_hi[2]
    while total < length:
        for attempt in range(60):
            direction = heading + (rng.normal(0.0, 0.9) if attempt < 30
                                   else rng.uniform(-math.pi, math.pi))
            dist = rng.uniform(*cfg.waypoint_spacing)
            z = float(np.clip(position[2] + rng.normal(0.0, 0.1 * dist), z_lo, z_hi))
            candidate = position + [dist * math.cos(direction), dist * math.sin(direction), 0.0]
            candidate[2] = z
            if not _segment_free(scene, position, candidate, clearance + 0.05):
                continue
            # Yaw is drawn around the previous one and never wrapped, so the spline turns the
            # short way round.
            yaw_change = math.radians(cfg.yaw_change_deg)
            view = _choose_view(scene, camera, cfg, rng, candidate, points[-1][3], yaw_change)
            if view is not None:
                break
        else:
            break
        points.append(np.r_[candidate, view])
        position, heading, total = candidate, direction, total + dist
    return points


def _frames_along(points: np.ndarray, n_frames: int, step: float, rng) -> np.ndarray:
    """(n_frames, 6) states spaced by ``step`` metres of arc length along the spline."""
    dense = np.linspace(0.0, len(points) - 1.0, 40 * (len(points) - 1) + 1)
    xyz = _catmull_rom(points[:, :3], dense)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(xyz, axis=0), axis=1))]
    # Handheld speed is not constant: +-30 % smooth variation of the step.
    speed = 1.0 + 0.3 * np.tanh(gaussian_filter1d(rng.normal(0.0, 3.0, n_frames), 6.0))
    s = np.r_[0.0, np.cumsum(step * speed[1:])]
    if s[-1] > arc[-1]:
        return np.zeros((0, 6))
    params = np.interp(s, arc, dense)
    return np.concatenate([_catmull_rom(points[:, :3], params),
                           _catmull_rom(points[:, 3:], params)], axis=1)


def _shake(states: np.ndarray, cfg: TrajectoryConfig, rng) -> np.ndarray:
    noise = gaussian_filter1d(rng.normal(0.0, 1.0, states.shape), 3.0, axis=0)
    noise /= max(float(noise.std()), 1e-9)
    states = states.copy()
    states[:, :3] += cfg.shake_m * noise[:, :3]
    states[:, 3:] += math.radians(cfg.shake_deg) * noise[:, 3:]
    return states


def _frame_ok(scene, camera, cfg, T, clearance) -> bool:
    return (bool(scene.is_free(T[:3, 3], clearance)[0])
            and _view_ok(view_stats(scene, camera, T), cfg))


def sample_trajectory(scene, n_frames: int, seed: int,
                      camera: Optional[PinholeCamera] = None,
                      config: Optional[TrajectoryConfig] = None) -> list:
    """
    Sample a smooth handheld sequence of ``n_frames`` camera-to-world poses.

    Frames that fail the checks are dropped (a rare small jump in the sequence); the path is
    re-drawn when that would leave fewer than ``n_frames``. Raises RuntimeError when the scene
    leaves no room for a path.
    """
    camera = camera or default_camera()
    cfg = config or TrajectoryConfig.for_kind(scene.kind)
    rng = np.random.default_rng([int(seed), 303])
    clearance = _clearance(camera, cfg)
    best = []
    for _attempt in range(8):
        points = _waypoints(scene, camera, cfg, rng, 1.6 * n_frames * cfg.step + 0.5, clearance)
        if len(points) < 2:
            continue
        states = _frames_along(np.array(points), int(1.4 * n_frames) + 2, cfg.step, rng)
        if len(states) == 0:
            states = _frames_along(np.array(points), n_frames, cfg.step, rng)
        if len(states) == 0:
            continue
        states = _shake(states, cfg, rng)
        poses = [look_pose(s[:3], s[3], s[4], s[5]) for s in states]
        ok = np.array([_frame_ok(scene, camera, cfg, T, clearance) for T in poses])
        start, length = _longest_run(ok)
        if length >= n_frames:
            return poses[start:start + n_frames]
        valid = [T for T, good in zip(poses, ok) if good]
        if len(valid) > len(best):
            best = valid
    if not best:
        raise RuntimeError(f'no camera path fits scene {scene.seed} ({scene.kind})')
    # No clean run was long enough: drop the failing frames (small jumps) and, if still short,
    # continue with further paths from new starting points.
    while len(best) < n_frames:
        best.extend(sample_trajectory(scene, n_frames - len(best), int(rng.integers(1 << 31)),
                                      camera, cfg))
    return best[:n_frames]


def _longest_run(ok: np.ndarray) -> tuple:
    """Start and length of the longest run of True values."""
    best_start, best_len, start = 0, 0, None
    for i, good in enumerate(list(ok) + [False]):
        if good and start is None:
            start = i
        elif not good and start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    return best_start, best_len


def _visible_from(scene, camera, T_world_camera, points: np.ndarray) -> np.ndarray:
    """Which world points the camera sees (in the image and not occluded)."""
    local = (points - T_world_camera[:3, 3]) @ T_world_camera[:3, :3]
    z = local[:, 2]
    ok = z > 1e-3
    u = camera.fx * local[:, 0] / np.where(ok, z, 1.0) + camera.cx
    v = camera.fy * local[:, 1] / np.where(ok, z, 1.0) + camera.cy
    ok &= (u >= 0) & (u <= camera.width - 1) & (v >= 0) & (v <= camera.height - 1)
    if ok.any():
        rays = local[ok] / z[ok, None]
        t, _ = scene.raycast(T_world_camera[:3, 3], rays @ T_world_camera[:3, :3].T)
        ok[np.flatnonzero(ok)] = np.abs(t - z[ok]) < 0.01 + 0.01 * z[ok]
    return ok


def view_overlap(scene, camera: PinholeCamera, T_query: np.ndarray,
                 T_reference: np.ndarray) -> float:
    """Share of the query's surface points (16 x 12 grid) that the reference camera also sees."""
    rays = _grid_rays(camera)
    t, _ = scene.raycast(T_query[:3, 3], rays @ T_query[:3, :3].T)
    hit = np.isfinite(t)
    if not hit.any():
        return 0.0
    points = T_query[:3, 3] + t[hit, None] * (rays[hit] @ T_query[:3, :3].T)
    return float(_visible_from(scene, camera, T_reference, points).sum() / len(rays))


def sample_revisits(scene, map_poses: list, n_queries: int, seed: int,
                    camera: Optional[PinholeCamera] = None,
                    config: Optional[TrajectoryConfig] = None,
                    min_overlap: float = 0.35) -> list:
    """
    Query poses that see mapped surfaces from new viewpoints.

    Each query orbits a random map view's look-at point by a few tens of degrees, changes the
    distance and height a little, keeps ``revisit_min_offset`` from every map camera and still
    shares at least ``min_overlap`` of its view with that map frame.
    """
    camera = camera or default_camera()
    cfg = config or TrajectoryConfig.for_kind(scene.kind)
    rng = np.random.default_rng([int(seed), 505])
    clearance = _clearance(camera, cfg)
    centres = np.array([T[:3, 3] for T in map_poses])
    queries = []
    for _ in range(200 * max(n_queries, 1)):
        if len(queries) == n_queries:
            break
        T_map = map_poses[int(rng.integers(len(map_poses)))]
        t, _ = scene.raycast(T_map[:3, 3], T_map[:3, 2])
        if not np.isfinite(t[0]):
            continue
        target = T_map[:3, 3] + t[0] * T_map[:3, 2]
        offset = T_map[:3, 3] - target
        angle = math.radians(rng.uniform(*cfg.revisit_angle_deg)) * rng.choice([-1.0, 1.0])
        c, s = math.cos(angle), math.sin(angle)
        offset = np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1],
                           offset[2]]) * rng.uniform(0.75, 1.3)
        position = target + offset
        position[2] = np.clip(T_map[2, 3] + rng.normal(0.0, 0.15), scene.free_lo[2],
                              scene.free_hi[2])
        if np.min(np.linalg.norm(centres - position, axis=1)) < cfg.revisit_min_offset:
            continue
        if not scene.is_free(position, clearance)[0]:
            continue
        aim = target + rng.normal(0.0, 0.08 * t[0], 3) - position
        yaw = math.atan2(aim[1], aim[0])
        pitch = math.atan2(aim[2], math.hypot(aim[0], aim[1]))
        roll = math.radians(np.clip(rng.normal(0.0, cfg.max_roll_deg / 2), -cfg.max_roll_deg,
                                    cfg.max_roll_deg))
        T = look_pose(position, yaw, pitch, roll)
        if not _view_ok(view_stats(scene, camera, T), cfg):
            continue
        if view_overlap(scene, camera, T, T_map) < min_overlap:
            continue
        queries.append(T)
    if len(queries) < n_queries:
        raise RuntimeError(f'found only {len(queries)} of {n_queries} revisit views')
    return queries
