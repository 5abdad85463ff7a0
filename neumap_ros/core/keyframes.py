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
Keyframe selection for mapping: keep a frame once the camera has moved or turned enough.

A camera recorded at 30 Hz sees nearly the same view in consecutive frames; mapping them all
costs extraction time and disk and adds no landmarks. The map builder node applies the same
rule to live topics and to bags.
"""

from typing import Optional

import numpy as np

from neumap_ros.core.geometry import rotation_angle_deg


class KeyframeSelector:
    """
    Accept a camera pose as a keyframe when it is far enough from the last accepted one.

    Far enough is ``translation_m`` metres of camera travel or ``rotation_deg`` degrees of
    turn, whichever comes first. Both 0 accepts every frame.
    """

    def __init__(self, translation_m: float = 0.0, rotation_deg: float = 0.0):
        if not (translation_m >= 0.0 and rotation_deg >= 0.0):   # NaN too
            raise ValueError(f'keyframe distances must be >= 0, got {translation_m} m and '
                             f'{rotation_deg} deg')
        self.translation_m = float(translation_m)
        self.rotation_deg = float(rotation_deg)
        self.last: Optional[np.ndarray] = None

    def is_keyframe(self, T_world_camera: np.ndarray) -> bool:
        """Return whether this pose would be a keyframe (nothing is recorded)."""
        if self.last is None:
            return True
        moved = float(np.linalg.norm(T_world_camera[:3, 3] - self.last[:3, 3]))
        turned = rotation_angle_deg(self.last[:3, :3].T @ T_world_camera[:3, :3])
        return moved >= self.translation_m or turned >= self.rotation_deg

    def accept(self, T_world_camera: np.ndarray) -> None:
        """Record a pose that became a keyframe (the next ones are measured from it)."""
        self.last = np.array(T_world_camera, dtype=float)
