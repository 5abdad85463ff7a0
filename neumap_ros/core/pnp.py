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

"""Camera pose from 2D-3D matches: poselib LO-RANSAC plus a covariance from the inliers."""

from dataclasses import dataclass
from typing import Optional

import numpy as np
import poselib

from neumap_ros.core.camera import PinholeCamera, projection_jacobian
from neumap_ros.core.geometry import invert_transform, make_transform


@dataclass(frozen=True)
class PnPOptions:
    """RANSAC settings; the threshold is in pixels of the query image."""

    max_reprojection_error: float = 8.0
    min_iterations: int = 100
    max_iterations: int = 10000
    success_probability: float = 0.9999
    # Matches are given best first: sample them progressively (PROSAC) for speed.
    progressive_sampling: bool = True
    seed: int = 0
    # Error of the matched 3D points (m), beside the pixel noise the inliers' residuals show:
    # it keeps the covariance honest where points are regressed or measured, not exact.
    point_std_m: float = 0.0


@dataclass
class PnPResult:
    """Outcome of :func:`solve_pnp`."""

    success: bool
    T_world_camera: Optional[np.ndarray]
    inliers: np.ndarray              # boolean mask over the input matches
    num_inliers: int
    reprojection_error_px: float     # RMS over inliers
    covariance: Optional[np.ndarray]  # 6x6 over (x, y, z, rx, ry, rz) of the camera in world


def solve_pnp(points2d: np.ndarray, points3d: np.ndarray, camera: PinholeCamera,
              options: PnPOptions = PnPOptions()) -> PnPResult:
    """Estimate the camera-to-world pose from undistorted pixels and world points."""
    points2d = np.ascontiguousarray(points2d, dtype=np.float64)
    points3d = np.ascontiguousarray(points3d, dtype=np.float64)
    count = len(points2d)
    if count < 4:
        return PnPResult(False, None, np.zeros(count, bool), 0, float('nan'), None)
    ransac = {'max_reproj_error': float(options.max_reprojection_error),
              'min_iterations': int(options.min_iterations),
              'max_iterations': int(options.max_iterations),
              'success_prob': float(options.success_probability), 'seed': int(options.seed),
              'progressive_sampling': bool(options.progressive_sampling)}
    pose, info = poselib.estimate_absolute_pose(points2d, points3d, camera.poselib_dict(),
                                                ransac, {})
    inliers = distinct_observations(points2d, np.asarray(info['inliers'], dtype=bool))
    num_inliers = int(inliers.sum())
    if num_inliers < 4:
        return PnPResult(False, None, inliers, num_inliers, float('nan'), None)
    T_camera_world = make_transform(pose.R, pose.t)
    if not np.all(np.isfinite(T_camera_world)):   # degenerate input; never publish NaN
        return PnPResult(False, None, inliers, num_inliers, float('nan'), None)
    residuals = _residuals(T_camera_world, points2d[inliers], points3d[inliers], camera)
    rms = float(np.sqrt(np.mean(np.sum(residuals ** 2, axis=1))))
    covariance = pose_covariance(invert_transform(T_camera_world), points2d[inliers],
                                 points3d[inliers], camera, options.point_std_m)
    return PnPResult(True, invert_transform(T_camera_world), inliers, num_inliers, rms,
                     covariance)


def distinct_observations(points2d: np.ndarray, inliers: np.ndarray) -> np.ndarray:
    """
    Return ``inliers`` with one inlier per image point: the first (best) of its matches.

    A keypoint matched twice (decoded in two voxels) is one observation: counted twice it
    would pass ``min_inliers`` sooner and shrink the covariance.
    """
    kept = inliers.copy()
    indices = np.flatnonzero(inliers)
    _, first = np.unique(points2d[indices], axis=0, return_index=True)
    kept[indices] = False
    kept[indices[first]] = True
    return kept


def _residuals(T_camera_world, points2d, points3d, camera):
    in_camera = points3d @ T_camera_world[:3, :3].T + T_camera_world[:3, 3]
    depth = np.maximum(in_camera[:, 2:3], 1e-9)
    projected = in_camera[:, :2] / depth * [camera.fx, camera.fy] + [camera.cx, camera.cy]
    return projected - points2d


def pose_covariance(T_world_camera: np.ndarray, points2d: np.ndarray, points3d: np.ndarray,
                    camera: PinholeCamera, point_std_m: float = 0.0) -> Optional[np.ndarray]:
    """
    Gauss-Newton covariance of the camera pose from its inliers; None when not positive definite.

    Each point's pixel variance is the inliers' residual variance plus its 3D error
    ``point_std_m`` seen at its depth (f * std / z). Parameters are the camera position in the
    world frame and a small rotation about the world axes (the layout of
    ``geometry_msgs/PoseWithCovariance``). The Jacobian is analytic.
    """
    count = len(points2d)
    if count < 4:
        return None
    R_wc = T_world_camera[:3, :3]
    centre = T_world_camera[:3, 3]
    relative = points3d - centre                      # world-frame rays from the camera centre
    in_camera = relative @ R_wc                        # R_wc^T (X - c)
    in_camera[:, 2] = np.maximum(in_camera[:, 2], 1e-9)
    d_proj = projection_jacobian(in_camera, camera.fx, camera.fy)      # d(pixel)/d(point)
    # A position step dc moves the point by -R^T dc; a world-axis rotation step dtheta
    # (R <- exp(dtheta) R) moves it by R^T [X - c]_x dtheta.
    d_centre = -R_wc.T
    skews = np.zeros((count, 3, 3))
    skews[:, 0, 1], skews[:, 0, 2] = -relative[:, 2], relative[:, 1]
    skews[:, 1, 0], skews[:, 1, 2] = relative[:, 2], -relative[:, 0]
    skews[:, 2, 0], skews[:, 2, 1] = -relative[:, 1], relative[:, 0]
    d_rotation = np.einsum('ij,njk->nik', R_wc.T, skews)
    jacobian = np.concatenate([d_proj @ d_centre, d_proj @ d_rotation], axis=2).reshape(-1, 6)
    residuals = _residuals(invert_transform(T_world_camera), points2d, points3d, camera)
    dof = max(2 * count - 6, 1)
    variance = max(float(np.sum(residuals ** 2)) / dof, 0.25)  # floor: quarter-pixel noise
    focal = 0.5 * (camera.fx + camera.fy)
    per_point = variance + (focal * point_std_m / in_camera[:, 2]) ** 2
    weights = np.repeat(1.0 / per_point, 2)
    information = jacobian.T @ (jacobian * weights[:, None])
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return None
    covariance = 0.5 * (covariance + covariance.T)
    # Nearly collinear points give a finite inverse that is not a covariance at all.
    if not np.all(np.isfinite(covariance)) or np.linalg.eigvalsh(covariance).min() <= 0:
        return None
    return covariance
