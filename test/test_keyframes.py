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

"""Keyframe selection: distances from the last keyframe, not from the previous frame."""

import math

import numpy as np
import pytest

from neumap_ros.core.geometry import make_transform
from neumap_ros.core.keyframes import KeyframeSelector


def pose(x: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    """Return a camera pose at x metres, turned yaw_deg about the vertical axis."""
    angle = math.radians(yaw_deg)
    rotation = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                         [-math.sin(angle), 0, math.cos(angle)]])
    return make_transform(rotation, [x, 0.0, 0.0])


def selected(selector: KeyframeSelector, poses) -> list:
    """Return the indices of the poses the selector keeps, accepting each kept one."""
    kept = []
    for index, T in enumerate(poses):
        if selector.is_keyframe(T):
            selector.accept(T)
            kept.append(index)
    return kept


def test_slow_motion_is_measured_from_the_last_keyframe():
    """Steps of 2 cm under a 5 cm threshold keep every third frame, not none."""
    poses = [pose(0.02 * i) for i in range(10)]
    # 0.06 m from frame 0 is frame 3 (float steps: 0.02 * 3 >= 0.05 first at i = 3).
    assert selected(KeyframeSelector(0.05, 90.0), poses) == [0, 3, 6, 9]


def test_turning_on_the_spot_makes_keyframes():
    """A camera that only turns gets a keyframe per rotation step."""
    poses = [pose(0.0, 2.0 * i) for i in range(8)]
    assert selected(KeyframeSelector(0.05, 5.0), poses) == [0, 3, 6]


def test_zero_distances_keep_every_frame_and_is_keyframe_records_nothing():
    """Both 0 keeps every frame, also a repeated pose; only accept() moves the reference."""
    still = [pose()] * 4
    assert selected(KeyframeSelector(), still) == [0, 1, 2, 3]
    selector = KeyframeSelector(0.05, 5.0)
    assert selector.is_keyframe(pose()) and selector.is_keyframe(pose())
    selector.accept(pose())
    assert not selector.is_keyframe(pose(0.01))


@pytest.mark.parametrize('translation, rotation', [(-0.1, 5.0), (0.05, -1.0),
                                                   (float('nan'), 5.0)])
def test_negative_or_nan_distances_are_refused(translation, rotation):
    """A distance that cannot be compared is refused when the selector is made."""
    with pytest.raises(ValueError, match='keyframe distances'):
        KeyframeSelector(translation, rotation)
