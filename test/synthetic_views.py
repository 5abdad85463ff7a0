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
Exact synthetic views for the core tests: look-at poses and direct pinhole projections.

The projections here are written out from K, R and C on purpose, not through the engine's own
transform helpers, so tests of those helpers and of the solvers built on them compare against
an independent computation.
"""

import numpy as np

from neumap_ros.core.camera import PinholeCamera

# A VGA camera with unequal focal lengths and an off-centre principal point, so swapped axes or
# a forgotten cx/cy show up as errors.
CAMERA = PinholeCamera(640, 480, 500.0, 510.0, 322.5, 237.0)


def look_at(centre, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Return the camera-to-world pose of an optical frame (x right, y down, z forward)."""
    centre = np.asarray(centre, dtype=float)
    forward = np.asarray(target, dtype=float) - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=float))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = centre
    return pose


def project(camera: PinholeCamera, T_world_camera: np.ndarray, points: np.ndarray):
    """Return (pixels (N, 2), depths (N,)) of world points seen by a posed pinhole camera."""
    rotation, centre = T_world_camera[:3, :3], T_world_camera[:3, 3]
    local = (np.asarray(points, dtype=float) - centre) @ rotation
    depth = local[:, 2]
    u = camera.fx * local[:, 0] / depth + camera.cx
    v = camera.fy * local[:, 1] / depth + camera.cy
    return np.stack([u, v], axis=1), depth


def points_in_box(rng: np.random.Generator, count: int, centre, half_size: float) -> np.ndarray:
    """Return ``count`` uniform random points in an axis-aligned cube."""
    return np.asarray(centre, dtype=float) + rng.uniform(-half_size, half_size, (count, 3))


def arc_of_cameras(count: int, target, radius: float, span_deg: float,
                   height: float = 0.3) -> list:
    """Return poses on a horizontal arc around ``target``, all looking at it."""
    target = np.asarray(target, dtype=float)
    poses = []
    for angle in np.radians(np.linspace(-span_deg / 2, span_deg / 2, count)):
        centre = target + radius * np.array([np.sin(angle), -np.cos(angle), 0.0])
        centre[2] += height
        poses.append(look_at(centre, target))
    return poses
