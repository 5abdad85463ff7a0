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

"""Time-indexed transform buffer: chains, interpolation, extrapolation limits, bounded history."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from neumap_ros.core.geometry import invert_transform, make_transform
from neumap_ros.core.transform_buffer import ConnectivityError, ExtrapolationError, slerp, \
    TransformBuffer, UnknownFrameError


def yaw(degrees):
    """Return a rotation about z as a 3x3 matrix."""
    return Rotation.from_euler('z', degrees, degrees=True).as_matrix()


def quat(degrees):
    """Return a rotation about z as an (x, y, z, w) quaternion."""
    return Rotation.from_euler('z', degrees, degrees=True).as_quat()


@pytest.fixture
def robot():
    """Return map -> odom (dynamic), odom -> base (dynamic), base -> camera (static)."""
    tf = TransformBuffer(cache_time=10.0)
    tf.set_transform('map', 'odom', 100.0, [1.0, 0.0, 0.0], quat(0.0))
    tf.set_transform('map', 'odom', 102.0, [3.0, 0.0, 0.0], quat(90.0))
    tf.set_transform('odom', 'base_link', 100.0, [0.0, 1.0, 0.0], quat(0.0))
    tf.set_transform('odom', 'base_link', 102.0, [0.0, 3.0, 0.0], quat(0.0))
    T_base_camera = make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]]),
                                   [0.2, 0.0, 0.5])
    tf.set_matrix('base_link', 'camera', 0.0, T_base_camera, static=True)
    return tf, T_base_camera


def test_chain_lookup_composes_the_tree(robot):
    """A chain of two dynamic and one static edge equals the product of the three."""
    tf, T_base_camera = robot
    T = tf.lookup('map', 'camera', 100.0)
    expected = make_transform(np.eye(3), [1.0, 0.0, 0.0]) @ \
        make_transform(np.eye(3), [0.0, 1.0, 0.0]) @ T_base_camera
    np.testing.assert_allclose(T, expected, atol=1e-12)
    # The reverse lookup is the inverse, and lookups between siblings go via the ancestor.
    np.testing.assert_allclose(tf.lookup('camera', 'map', 100.0), invert_transform(expected),
                               atol=1e-12)
    np.testing.assert_allclose(tf.lookup('base_link', 'camera', 55.0), T_base_camera,
                               atol=1e-12)
    np.testing.assert_allclose(tf.lookup('/map', 'map'), np.eye(4))


def test_interpolation_is_linear_and_slerp(robot):
    """Half-way between samples: translation half-way, rotation half the angle (SLERP)."""
    tf, _ = robot
    T = tf.lookup('map', 'odom', 101.0)
    np.testing.assert_allclose(T[:3, 3], [2.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], yaw(45.0), atol=1e-9)
    T = tf.lookup('map', 'odom', 101.5)
    np.testing.assert_allclose(T[:3, :3], yaw(67.5), atol=1e-9)


def test_slerp_takes_the_short_way_and_stays_unit():
    """Interpolating q and -q (the same rotation) gives that rotation, not a flip."""
    q = quat(30.0)
    np.testing.assert_allclose(np.abs(slerp(q, -q, 0.5)), np.abs(q), atol=1e-12)
    mid = slerp(quat(350.0), quat(10.0), 0.5)
    assert math.isclose(np.linalg.norm(mid), 1.0)
    np.testing.assert_allclose(Rotation.from_quat(mid).as_matrix(), np.eye(3), atol=1e-9)


def test_extrapolation_is_an_error_beyond_the_tolerance(robot):
    """Stamps outside the buffered interval fail, unless within the tolerance."""
    tf, _ = robot
    with pytest.raises(ExtrapolationError, match='future'):
        tf.lookup('map', 'camera', 102.5)
    with pytest.raises(ExtrapolationError, match='past'):
        tf.lookup('map', 'camera', 99.0)
    T = tf.lookup('map', 'odom', 102.05, tolerance=0.1)
    np.testing.assert_allclose(T[:3, 3], [3.0, 0.0, 0.0])
    assert not tf.can_transform('map', 'camera', 102.5)
    assert tf.can_transform('map', 'camera', 101.0)


def test_unknown_and_disconnected_frames_have_clear_errors(robot):
    """A frame never published and two separate trees are reported as such."""
    tf, _ = robot
    with pytest.raises(UnknownFrameError, match='"wheel" does not exist'):
        tf.lookup('map', 'wheel', 100.0)
    tf.set_transform('world', 'gps', 100.0, [0, 0, 0], [0, 0, 0, 1])
    with pytest.raises(ConnectivityError, match='not connected'):
        tf.lookup('map', 'gps', 100.0)


def test_latest_common_time(robot):
    """Stamp None uses the newest time every dynamic edge of the chain has."""
    tf, _ = robot
    tf.set_transform('map', 'odom', 103.0, [4.0, 0.0, 0.0], quat(90.0))
    assert tf.latest_common_time('map', 'camera') == 102.0
    np.testing.assert_allclose(tf.lookup('map', 'odom')[:3, 3], [4.0, 0.0, 0.0])
    np.testing.assert_allclose(tf.lookup('odom', 'base_link')[:3, 3], [0.0, 3.0, 0.0])
    assert tf.latest_common_time('base_link', 'camera') is None


def test_history_is_bounded():
    """Samples older than cache_time behind the newest are dropped; older input is ignored."""
    tf = TransformBuffer(cache_time=2.0)
    for t in range(10):
        tf.set_transform('odom', 'base', float(t), [t, 0, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(tf.lookup('odom', 'base', 8.5)[:3, 3], [8.5, 0, 0])
    with pytest.raises(ExtrapolationError):
        tf.lookup('odom', 'base', 6.0)
    assert not tf.set_transform('odom', 'base', 1.0, [0, 0, 0], [0, 0, 0, 1])
    assert tf.old_data_count == 1
    tf.clear()
    assert tf.frames() == []


def test_clear_keeps_static_transforms(robot):
    """After a time jump only dynamic transforms go: a latched static one is never resent."""
    tf, T_base_camera = robot
    tf.clear()
    np.testing.assert_allclose(tf.lookup('base_link', 'camera', 5.0), T_base_camera,
                               atol=1e-12)
    with pytest.raises(UnknownFrameError):
        tf.lookup('map', 'odom', 100.0)
    # The dynamic chain is rebuilt from new samples on the new timeline.
    tf.set_transform('map', 'odom', 1.0, [0.0, 0.0, 0.0], quat(0.0))
    tf.set_transform('odom', 'base_link', 1.0, [0.0, 0.0, 0.0], quat(0.0))
    np.testing.assert_allclose(tf.lookup('map', 'camera', 1.0), T_base_camera, atol=1e-12)


def test_reparenting_and_bad_input():
    """A child that changes parent is re-linked; malformed transforms raise ValueError."""
    tf = TransformBuffer()
    tf.set_transform('a', 'c', 1.0, [1, 0, 0], [0, 0, 0, 1])
    tf.set_transform('b', 'c', 1.0, [2, 0, 0], [0, 0, 0, 1])
    assert tf.parent_of('c') == 'b' and tf.reparent_count == 1
    for args in ((('a', 'a', 1.0, [0, 0, 0], [0, 0, 0, 1])),
                 (('a', '', 1.0, [0, 0, 0], [0, 0, 0, 1])),
                 (('a', 'd', 1.0, [math.nan, 0, 0], [0, 0, 0, 1])),
                 (('a', 'd', 1.0, [0, 0, 0], [0, 0, 0, 0]))):
        with pytest.raises(ValueError):
            tf.set_transform(*args)
    # Quaternions are normalised on the way in.
    tf.set_transform('a', 'e', 1.0, [0, 0, 0], 2.0 * quat(90.0))
    np.testing.assert_allclose(tf.lookup('a', 'e', 1.0)[:3, :3], yaw(90.0), atol=1e-12)
