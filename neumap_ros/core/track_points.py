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
One 3D point per feature track, fitted to all of its keypoints and their depths.

A depth image puts each keypoint's 3D point on the keypoint's viewing ray, with its error
mostly along that ray; on a camera whose colour and depth images are not registered (the
7-Scenes Kinect) the points also sit a few pixels off the colour keypoints' rays. The mean of
a track's points mixes all of that. Here each track's point is the least-squares fit of its
keypoints' reprojections (under the known poses) and of their measured depths (each one
precise along its own ray only), with robust weights; a weak prior towards the depth mean
keeps every 3x3 problem well posed.

Measured on the kitchen (README): maps of the mapped views localize nearby queries more
precisely, but queries from new viewpoints lose at 5 cm (the fit seems to absorb what is
particular to the mapping views); so it is a mapping option, off by default.
"""

from dataclasses import dataclass, replace

import numpy as np

from neumap_ros.core.camera import projection_jacobian
from neumap_ros.core.observations import Observations


@dataclass(frozen=True)
class TrackPointOptions:
    """Weights of the per-track least squares."""

    depth_sigma_m: float = 0.05   # each keypoint's depth, along its ray (0: not used)
    prior_sigma_m: float = 1.0    # the depth mean, in every direction (keeps it well posed)
    pixel_sigma: float = 1.0      # keypoint localisation noise
    robust_px: float = 2.0        # residuals beyond this count linearly (Huber weights)
    iterations: int = 5           # Gauss-Newton steps


def huber_weights(error: np.ndarray, threshold: float) -> np.ndarray:
    """IRLS weights of the Huber loss: 1 up to ``threshold``, then threshold / error."""
    return np.where(error <= threshold, 1.0, threshold / np.maximum(error, 1e-12))


def refine_track_points(observations: Observations, tracks: np.ndarray,
                        options: TrackPointOptions = TrackPointOptions()) -> np.ndarray:
    """
    Return (T, 3) world points of tracks ``0..T-1`` (``tracks`` as from :func:`build_tracks`).

    Each track starts at the mean of its keypoints' 3D points and takes Gauss-Newton steps on
    its robust reprojection and depth errors plus the prior; tracks are independent 3x3
    problems, solved all at once.
    """
    members = np.flatnonzero(tracks >= 0)
    count = int(tracks.max()) + 1 if len(members) else 0
    if count == 0:
        return np.zeros((0, 3))
    track = tracks[members]
    sizes = np.bincount(track, minlength=count).astype(np.float64)
    prior = np.stack([np.bincount(track, observations.xyz[members, axis].astype(np.float64),
                                  count) for axis in range(3)], axis=1) / sizes[:, None]
    frames = observations.frame_index[members]
    T_camera_world = np.linalg.inv(observations.poses)[frames]
    rotation, translation = T_camera_world[:, :3, :3], T_camera_world[:, :3, 3]
    intrinsics = np.array([[c.fx, c.fy, c.cx, c.cy] for c in observations.cameras])[frames]
    fx, fy, cx, cy = intrinsics.T
    pixels = observations.keypoints[members].astype(np.float64)
    prior_weight = 1.0 / options.prior_sigma_m ** 2
    # Depth of each keypoint's own 3D point in its camera: precise along that ray only.
    measured_depth = np.einsum('nj,nj->n', rotation[:, 2],
                               observations.xyz[members].astype(np.float64)) + translation[:, 2]
    points = prior.copy()
    for _ in range(options.iterations):
        in_camera = np.einsum('nij,nj->ni', rotation, points[track]) + translation
        z = in_camera[:, 2]
        in_front = z > 1e-3
        z = np.where(in_front, z, 1.0)
        residual = np.stack([fx * in_camera[:, 0] / z + cx,
                             fy * in_camera[:, 1] / z + cy], axis=1) - pixels
        error = np.linalg.norm(residual, axis=1)
        weight = huber_weights(error, options.robust_px) * in_front / options.pixel_sigma ** 2
        d_project = projection_jacobian(np.c_[in_camera[:, :2], z], fx, fy)
        jacobian = d_project @ rotation                               # d(pixel)/d(world point)
        normal = np.einsum('n,nki,nkj->nij', weight, jacobian, jacobian).reshape(-1, 9)
        gradient = np.einsum('n,nki,nk->ni', weight, jacobian, residual)
        if options.depth_sigma_m > 0:
            depth_residual = in_camera[:, 2] - measured_depth
            # Huber beyond two sigmas: a depth read across an edge must not hold the point.
            depth_weight = huber_weights(np.abs(depth_residual), 2.0 * options.depth_sigma_m)
            depth_weight = depth_weight * in_front / options.depth_sigma_m ** 2
            depth_row = rotation[:, 2]                                 # d(depth)/d(world point)
            normal += (depth_weight[:, None, None] * depth_row[:, :, None]
                       * depth_row[:, None, :]).reshape(-1, 9)
            gradient += (depth_weight * depth_residual)[:, None] * depth_row
        hessian = np.stack([np.bincount(track, normal[:, k], count) for k in range(9)], axis=1)
        hessian = hessian.reshape(-1, 3, 3) + prior_weight * np.eye(3)
        step_gradient = np.stack([np.bincount(track, gradient[:, k], count)
                                  for k in range(3)], axis=1) + prior_weight * (points - prior)
        points = points - np.linalg.solve(hessian, step_gradient[..., None])[..., 0]
    return points


def with_track_points(observations: Observations, tracks: np.ndarray,
                      options: TrackPointOptions = TrackPointOptions()) -> Observations:
    """Observations whose tracked keypoints carry their track's refined point."""
    points = refine_track_points(observations, tracks, options)
    xyz = observations.xyz.copy()
    tracked = tracks >= 0
    xyz[tracked] = points[tracks[tracked]].astype(xyz.dtype)
    return replace(observations, xyz=xyz)
