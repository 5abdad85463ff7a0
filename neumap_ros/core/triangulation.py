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

"""3D points for posed images without depth: epipolar-verified matches, tracks, multi-view DLT."""

from dataclasses import dataclass

import numpy as np

from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.geometry import invert_transform, skew
from neumap_ros.core.matching import match_descriptors


@dataclass(frozen=True)
class TriangulationOptions:
    """Thresholds in pixels and degrees."""

    ratio: float = 0.8
    max_epipolar_error: float = 2.0
    max_reprojection_error: float = 3.0
    min_triangulation_angle: float = 2.0
    max_view_angle: float = 70.0   # skip image pairs whose optical axes differ more than this


def projection_matrix(camera: PinholeCamera, T_world_camera: np.ndarray) -> np.ndarray:
    """3x4 matrix mapping homogeneous world points to homogeneous undistorted pixels."""
    return camera.K @ invert_transform(T_world_camera)[:3, :]


def fundamental_matrix(camera1: PinholeCamera, T_world_camera1: np.ndarray,
                       camera2: PinholeCamera, T_world_camera2: np.ndarray) -> np.ndarray:
    """F with x2^T F x1 = 0 for undistorted pixels of two posed cameras."""
    T_2_1 = invert_transform(T_world_camera2) @ T_world_camera1
    essential = skew(T_2_1[:3, 3]) @ T_2_1[:3, :3]
    return np.linalg.inv(camera2.K).T @ essential @ np.linalg.inv(camera1.K)


def epipolar_distances(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Symmetric point-to-epipolar-line distance in pixels (the larger of the two)."""
    h1 = np.hstack([x1, np.ones((len(x1), 1))])
    h2 = np.hstack([x2, np.ones((len(x2), 1))])
    lines2 = h1 @ F.T
    lines1 = h2 @ F
    numerator = np.abs(np.sum(h2 * lines2, axis=1))
    d2 = numerator / np.maximum(np.linalg.norm(lines2[:, :2], axis=1), 1e-12)
    d1 = numerator / np.maximum(np.linalg.norm(lines1[:, :2], axis=1), 1e-12)
    return np.maximum(d1, d2)


def triangulate_dlt(projections: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Least-squares (DLT) point from (n, 3, 4) projections and (n, 2) pixels."""
    rows = []
    for P, (u, v) in zip(projections, pixels):
        rows.append(u * P[2] - P[0])
        rows.append(v * P[2] - P[1])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    homogeneous = vt[-1]
    return homogeneous[:3] / homogeneous[3] if abs(homogeneous[3]) > 1e-12 else \
        np.full(3, np.nan)


class _UnionFind:
    def __init__(self, size):
        self.parent = np.arange(size)

    def find(self, item):
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def triangulate_frames(cameras: list, poses: list, keypoints: list, vectors: list,
                       options: TriangulationOptions = TriangulationOptions()) -> list:
    """
    World points for every keypoint of every frame (NaN rows where none was found).

    ``keypoints`` are undistorted pixels and ``vectors`` unit descriptor vectors, per frame.
    """
    offsets = np.concatenate([[0], np.cumsum([len(k) for k in keypoints])])
    tracks = _UnionFind(int(offsets[-1]))
    axes = [pose[:3, 2] for pose in poses]
    for i in range(len(poses)):
        for j in range(i + 1, len(poses)):
            angle = np.degrees(np.arccos(np.clip(axes[i] @ axes[j], -1.0, 1.0)))
            if angle > options.max_view_angle:
                continue
            matches = match_descriptors(vectors[i], vectors[j], options.ratio, mutual=True)
            if len(matches) == 0:
                continue
            F = fundamental_matrix(cameras[i], poses[i], cameras[j], poses[j])
            errors = epipolar_distances(F, keypoints[i][matches[:, 0]],
                                        keypoints[j][matches[:, 1]])
            for a, b in matches[errors < options.max_epipolar_error]:
                tracks.union(offsets[i] + a, offsets[j] + b)

    frame_of = np.repeat(np.arange(len(poses)), np.diff(offsets))
    roots = np.array([tracks.find(k) for k in range(int(offsets[-1]))])
    projections = [projection_matrix(c, p) for c, p in zip(cameras, poses)]
    centres = np.array([p[:3, 3] for p in poses])
    xyz = np.full((int(offsets[-1]), 3), np.nan)
    order = np.argsort(roots, kind='stable')
    boundaries = np.flatnonzero(np.diff(roots[order])) + 1
    for members in np.split(order, boundaries):
        if len(members) < 2:
            continue
        frames = frame_of[members]
        if len(np.unique(frames)) != len(frames):
            continue  # one keypoint per image: a track visiting an image twice is ambiguous
        local = members - offsets[frames]
        pixels = np.array([keypoints[f][k] for f, k in zip(frames, local)])
        point = _robust_track_point(np.array([projections[f] for f in frames]), pixels,
                                    centres[frames], options)
        if point is not None:
            xyz[members] = point
    return [xyz[offsets[f]:offsets[f + 1]] for f in range(len(poses))]


def _robust_track_point(projections, pixels, centres, options):
    point = triangulate_dlt(projections, pixels)
    for _ in range(3):
        if not np.all(np.isfinite(point)):
            return None
        homogeneous = projections @ np.append(point, 1.0)
        depth = homogeneous[:, 2]
        errors = np.linalg.norm(homogeneous[:, :2] / np.maximum(depth[:, None], 1e-12) - pixels,
                                axis=1)
        good = (depth > 0) & (errors < options.max_reprojection_error)
        if good.sum() < 2:
            return None
        if good.all():
            break
        projections, pixels, centres = projections[good], pixels[good], centres[good]
        point = triangulate_dlt(projections, pixels)
    else:
        return None  # views kept disagreeing: not a reliable point
    rays = point - centres
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    widest = np.degrees(np.arccos(np.clip(np.min(rays @ rays.T), -1.0, 1.0)))
    return point if widest >= options.min_triangulation_angle else None
