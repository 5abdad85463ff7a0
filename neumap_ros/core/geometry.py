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
Rigid-transform helpers.

Convention used throughout the project: ``T_a_b`` is a 4x4 matrix that maps points expressed in
frame ``b`` into frame ``a`` (so ``T_world_camera`` is the camera-to-world pose). Cameras use the
optical frame of REP-103: x right, y down, z forward.
"""

import numpy as np
from scipy.spatial.transform import Rotation


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Build a 4x4 transform from a 3x3 rotation and a translation vector."""
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = np.asarray(translation, dtype=float).reshape(3)
    return transform


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Invert a rigid 4x4 transform without a general matrix inverse."""
    rotation = transform[:3, :3]
    inverse = np.eye(4)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ transform[:3, 3]
    return inverse


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """Project a 3x3 matrix onto SO(3) (SVD), e.g. slightly non-orthonormal ground truth."""
    u, _, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        u[:, -1] *= -1
        rotation = u @ vt
    return rotation


def orthonormalize_transform(transform: np.ndarray) -> np.ndarray:
    """Return ``transform`` with its rotation block projected onto SO(3)."""
    return make_transform(nearest_rotation(transform[:3, :3]), transform[:3, 3])


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to an (N, 3) array of points."""
    return points @ transform[:3, :3].T + transform[:3, 3]


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Rotation angle of a 3x3 rotation matrix, in degrees."""
    cos_angle = (np.trace(rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos_angle, -1.0, 1.0))))


def pose_errors(T_world_estimate: np.ndarray, T_world_truth: np.ndarray) -> tuple[float, float]:
    """Camera-centre distance (m) and rotation angle (deg) between two camera-to-world poses."""
    translation_error = float(np.linalg.norm(T_world_estimate[:3, 3] - T_world_truth[:3, 3]))
    relative = T_world_estimate[:3, :3].T @ T_world_truth[:3, :3]
    return translation_error, rotation_angle_deg(relative)


def quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation matrix, the order ROS messages use."""
    return Rotation.from_matrix(rotation).as_quat()


def rotation_from_quaternion_xyzw(quaternion) -> np.ndarray:
    """Rotation matrix from an (x, y, z, w) quaternion; rejects zero-length input."""
    quaternion = np.asarray(quaternion, dtype=float)
    norm = np.linalg.norm(quaternion)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f'invalid quaternion {quaternion.tolist()}')
    return Rotation.from_quat(quaternion / norm).as_matrix()


def skew(vector: np.ndarray) -> np.ndarray:
    """Cross-product matrix of a 3-vector."""
    x, y, z = vector
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def pose_covariance_with_lever_arm(T_world_a: np.ndarray, covariance_a: np.ndarray,
                                   T_a_b: np.ndarray) -> np.ndarray:
    """
    Propagate a pose covariance from frame ``a`` to a frame ``b`` rigidly attached to it.

    ``covariance_a`` is 6x6 over (x, y, z, rx, ry, rz): the position of ``a`` in the world and
    a small rotation about the fixed world axes (R <- exp(dtheta) R, the layout of
    geometry_msgs/PoseWithCovariance and of the localizer). ``T_a_b`` is the known, exact
    mounting of ``b`` in ``a`` (e.g. base_link in the camera frame). The rotation uncertainty
    is the same for both frames; the lever arm ``R_world_a @ t_a_b`` turns it into extra
    position uncertainty of ``b``: dp_b = dp_a - [R_world_a t_a_b]x dtheta.
    """
    covariance_a = np.asarray(covariance_a, dtype=float).reshape(6, 6)
    lever = T_world_a[:3, :3] @ np.asarray(T_a_b, dtype=float)[:3, 3]
    jacobian = np.eye(6)
    jacobian[:3, 3:] = -skew(lever)
    covariance_b = jacobian @ covariance_a @ jacobian.T
    return 0.5 * (covariance_b + covariance_b.T)
