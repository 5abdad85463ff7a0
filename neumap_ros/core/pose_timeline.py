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
Ground-truth poses by stamp, looked up at other stamps (ROS-free).

Ground truth rarely shares the camera's stamps: a motion-capture system runs at 100+ Hz on a
clock of its own, a reference localizer at its own rate. A pose between two samples is
interpolated (linear in translation, slerp in rotation) as TF does; samples further apart
than ``max_gap_ns`` (a tracking dropout) are not bridged, and then the nearest sample within
``tolerance_ns`` is used, if any.
"""

from typing import Dict, Optional

import numpy as np

from neumap_ros.core.geometry import make_transform, quaternion_xyzw, \
    rotation_from_quaternion_xyzw
from neumap_ros.core.transform_buffer import slerp

# Samples further apart than this are not interpolated between.
MAX_INTERPOLATION_GAP_NS = 500_000_000


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, fraction: float) -> np.ndarray:
    """Interpolate two 4x4 poses: linear in translation, slerp in rotation."""
    rotation = slerp(quaternion_xyzw(T0[:3, :3]), quaternion_xyzw(T1[:3, :3]), fraction)
    return make_transform(rotation_from_quaternion_xyzw(rotation),
                          (1.0 - fraction) * T0[:3, 3] + fraction * T1[:3, 3])


class PoseTimeline:
    """4x4 poses keyed by integer stamps (ns), with interpolating lookups."""

    def __init__(self, tolerance_ns: int = 0, max_gap_ns: int = MAX_INTERPOLATION_GAP_NS):
        """Create an empty timeline."""
        self.tolerance_ns = int(tolerance_ns)
        self.max_gap_ns = int(max_gap_ns)
        self.poses: Dict[int, np.ndarray] = {}
        self._sorted: Optional[np.ndarray] = None

    def add(self, stamp: int, pose: np.ndarray) -> bool:
        """Add a pose; return False (and keep the first) when the stamp is already there."""
        if stamp in self.poses:
            return False
        self.poses[int(stamp)] = pose
        self._sorted = None
        return True

    def __len__(self) -> int:
        """Count the samples."""
        return len(self.poses)

    def stamps(self) -> np.ndarray:
        """Return the sample stamps, sorted."""
        if self._sorted is None:
            self._sorted = np.array(sorted(self.poses), dtype=np.int64)
        return self._sorted

    def pose_at(self, stamp: int) -> Optional[np.ndarray]:
        """Return the pose at ``stamp``: exact, interpolated, or nearest within tolerance."""
        if stamp in self.poses:
            return self.poses[stamp]
        stamps = self.stamps()
        after = int(np.searchsorted(stamps, stamp))
        if 0 < after < len(stamps) and stamps[after] - stamps[after - 1] <= self.max_gap_ns:
            t0, t1 = int(stamps[after - 1]), int(stamps[after])
            return interpolate_pose(self.poses[t0], self.poses[t1], (stamp - t0) / (t1 - t0))
        near = [int(stamps[i]) for i in (after - 1, after) if 0 <= i < len(stamps)]
        best = min(near, key=lambda s: abs(s - stamp), default=None)
        if best is not None and abs(best - stamp) <= self.tolerance_ns:
            return self.poses[best]
        return None
