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
Conversions between the project's 4x4 transforms / 6x6 covariances and geometry messages.

Stamps are handled as integer nanoseconds so that an output can carry exactly the stamp of the
image it was computed from. Covariances follow geometry_msgs/PoseWithCovariance: row-major 6x6
over (x, y, z, rotation about X, rotation about Y, rotation about Z).
"""

import math
from typing import Optional

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseWithCovarianceStamped, Transform, TransformStamped
import numpy as np

from neumap_ros.core.geometry import make_transform, quaternion_xyzw, \
    rotation_from_quaternion_xyzw

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Time) -> int:
    """Return a builtin_interfaces/Time as integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


# builtin_interfaces/Time holds seconds in an int32: a larger value would wrap when sent.
MAX_STAMP_NS = (2 ** 31 - 1) * NS_PER_S + NS_PER_S - 1


def ns_to_stamp(nanoseconds: int) -> Time:
    """Return integer nanoseconds as a builtin_interfaces/Time, clamped to what it can hold."""
    nanoseconds = min(max(int(nanoseconds), 0), MAX_STAMP_NS)
    return Time(sec=nanoseconds // NS_PER_S, nanosec=nanoseconds % NS_PER_S)


def stamp_to_seconds(stamp: Time) -> float:
    """Return a builtin_interfaces/Time in seconds (float)."""
    return stamp_to_ns(stamp) / NS_PER_S


def _check_finite(values, what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f'{what} has NaN or infinite values')


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """Return a geometry_msgs/Pose as a 4x4 transform; raises ValueError on NaN/zero quaternion."""
    p, q = pose.position, pose.orientation
    _check_finite((p.x, p.y, p.z, q.x, q.y, q.z, q.w), 'pose')
    return make_transform(rotation_from_quaternion_xyzw([q.x, q.y, q.z, q.w]), [p.x, p.y, p.z])


def matrix_to_pose(transform: np.ndarray, pose: Optional[Pose] = None) -> Pose:
    """Fill (or create) a geometry_msgs/Pose from a 4x4 transform."""
    pose = pose or Pose()
    q = quaternion_xyzw(transform[:3, :3])
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in transform[:3, 3])
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    return pose


def transform_to_matrix(transform: Transform) -> np.ndarray:
    """Return a geometry_msgs/Transform as a 4x4 matrix; raises ValueError on bad values."""
    t, q = transform.translation, transform.rotation
    _check_finite((t.x, t.y, t.z, q.x, q.y, q.z, q.w), 'transform')
    return make_transform(rotation_from_quaternion_xyzw([q.x, q.y, q.z, q.w]), [t.x, t.y, t.z])


def matrix_to_transform(matrix: np.ndarray, transform: Optional[Transform] = None) -> Transform:
    """Fill (or create) a geometry_msgs/Transform from a 4x4 matrix."""
    transform = transform or Transform()
    q = quaternion_xyzw(matrix[:3, :3])
    t = transform.translation
    t.x, t.y, t.z = (float(v) for v in matrix[:3, 3])
    r = transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return transform


def make_transform_stamped(matrix: np.ndarray, parent: str, child: str,
                           stamp_ns: int) -> TransformStamped:
    """Return ``T_parent_child`` as a TransformStamped."""
    message = TransformStamped()
    message.header.frame_id = parent
    message.header.stamp = ns_to_stamp(stamp_ns)
    message.child_frame_id = child
    matrix_to_transform(matrix, message.transform)
    return message


def covariance_to_msg(covariance: np.ndarray) -> list:
    """Return a 6x6 covariance as the 36 floats of a message (row-major)."""
    covariance = np.asarray(covariance, dtype=float).reshape(6, 6)
    return [float(v) for v in covariance.reshape(-1)]


def covariance_from_msg(values) -> np.ndarray:
    """Return the 36 floats of a message as a 6x6 matrix."""
    values = np.asarray(list(values), dtype=float)
    if values.size != 36:
        raise ValueError(f'a pose covariance has 36 values, got {values.size}')
    return values.reshape(6, 6)


def make_pose_with_covariance(matrix: np.ndarray, covariance: np.ndarray, frame_id: str,
                              stamp_ns: int) -> PoseWithCovarianceStamped:
    """Return a PoseWithCovarianceStamped of ``matrix`` in ``frame_id`` at ``stamp_ns``."""
    message = PoseWithCovarianceStamped()
    message.header.frame_id = frame_id
    message.header.stamp = ns_to_stamp(stamp_ns)
    matrix_to_pose(matrix, message.pose.pose)
    message.pose.covariance = covariance_to_msg(covariance)
    return message
