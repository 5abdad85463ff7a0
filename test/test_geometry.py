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
Rigid-transform helpers and pose-covariance math against known cases.

Expected values come from closed forms (rotations about one axis, Pythagorean offsets),
from scipy's rotation code, from finite differences, or from Monte-Carlo sampling; never from
the functions under test.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from synthetic_views import CAMERA, look_at, points_in_box, project

from neumap_ros.core import geometry
from neumap_ros.core.pnp import pose_covariance


def random_transform(seed: int) -> np.ndarray:
    """Return a random rigid transform (uniform rotation, translation in a 10 m box)."""
    rng = np.random.default_rng(seed)
    rotation = Rotation.random(random_state=seed).as_matrix()
    return geometry.make_transform(rotation, rng.uniform(-5.0, 5.0, 3))


def rot_z(degrees: float) -> np.ndarray:
    """Return the rotation by ``degrees`` about the z axis, written out."""
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0],
                     [0.0, 0.0, 1.0]])


def test_make_transform_places_rotation_and_translation():
    """make_transform puts R in the top-left block, t in the last column, [0 0 0 1] below."""
    T = geometry.make_transform(rot_z(30.0), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(T[:3, :3], rot_z(30.0))
    np.testing.assert_array_equal(T[:3, 3], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(T[3], [0.0, 0.0, 0.0, 1.0])


def test_invert_transform_matches_general_inverse():
    """The rigid inverse equals numpy's general matrix inverse and undoes the transform."""
    for seed in range(5):
        T = random_transform(seed)
        inverse = geometry.invert_transform(T)
        np.testing.assert_allclose(inverse, np.linalg.inv(T), atol=1e-12)
        np.testing.assert_allclose(inverse @ T, np.eye(4), atol=1e-12)


def test_transform_points_composes_like_matrices():
    """Applying A @ B to points equals applying B then A; a known point maps as expected."""
    rng = np.random.default_rng(3)
    points = rng.normal(size=(20, 3))
    A, B = random_transform(1), random_transform(2)
    np.testing.assert_allclose(
        geometry.transform_points(A @ B, points),
        geometry.transform_points(A, geometry.transform_points(B, points)), atol=1e-12)
    # 90 deg about z then +1 in x: (1, 0, 0) -> (0, 1, 0) -> (1, 1, 0).
    T = geometry.make_transform(rot_z(90.0), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(geometry.transform_points(T, np.array([[1.0, 0.0, 0.0]])),
                               [[1.0, 1.0, 0.0]], atol=1e-12)


def test_nearest_rotation_repairs_a_perturbed_rotation():
    """A slightly non-orthonormal matrix projects to a proper rotation next to the original."""
    rng = np.random.default_rng(4)
    rotation = Rotation.random(random_state=4).as_matrix()
    perturbed = rotation + 1e-4 * rng.normal(size=(3, 3))
    repaired = geometry.nearest_rotation(perturbed)
    np.testing.assert_allclose(repaired.T @ repaired, np.eye(3), atol=1e-12)
    assert np.linalg.det(repaired) == pytest.approx(1.0, abs=1e-12)
    assert geometry.rotation_angle_deg(repaired.T @ rotation) < 0.05
    # The SVD projection ignores a uniform scale and keeps an exact rotation as it is.
    np.testing.assert_allclose(geometry.nearest_rotation(2.5 * rotation), rotation, atol=1e-12)
    np.testing.assert_allclose(geometry.nearest_rotation(rotation), rotation, atol=1e-12)


def test_nearest_rotation_never_returns_a_reflection():
    """A matrix with negative determinant still projects to det +1, not to a mirror."""
    reflection = np.diag([1.0, 1.0, -1.0]) @ Rotation.random(random_state=5).as_matrix()
    repaired = geometry.nearest_rotation(reflection)
    assert np.linalg.det(repaired) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(repaired.T @ repaired, np.eye(3), atol=1e-12)


def test_orthonormalize_transform_keeps_translation():
    """Only the rotation block is repaired; the translation is untouched."""
    T = random_transform(6)
    T[:3, :3] *= 1.0002
    repaired = geometry.orthonormalize_transform(T)
    np.testing.assert_array_equal(repaired[:3, 3], T[:3, 3])
    np.testing.assert_allclose(repaired[:3, :3].T @ repaired[:3, :3], np.eye(3), atol=1e-12)


@pytest.mark.parametrize('degrees', [0.0, 1e-3, 30.0, 90.0, 179.0, 180.0])
def test_rotation_angle_of_known_rotations(degrees):
    """A rotation of d degrees about any axis measures d degrees."""
    assert geometry.rotation_angle_deg(rot_z(degrees)) == pytest.approx(degrees, abs=1e-5)
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    rotation = Rotation.from_rotvec(np.radians(degrees) * axis).as_matrix()
    assert geometry.rotation_angle_deg(rotation) == pytest.approx(degrees, abs=1e-5)


def test_pose_errors_of_known_offsets():
    """A 3-4-5 camera-centre offset and a 10 deg turn give 5 m and 10 deg, either side."""
    truth = random_transform(7)
    estimate = truth.copy()
    estimate[:3, 3] += [3.0, 4.0, 0.0]
    estimate[:3, :3] = truth[:3, :3] @ rot_z(10.0)         # turn in the camera frame
    t_err, r_err = geometry.pose_errors(estimate, truth)
    assert t_err == pytest.approx(5.0, abs=1e-12)
    assert r_err == pytest.approx(10.0, abs=1e-9)
    estimate[:3, :3] = rot_z(-10.0) @ truth[:3, :3]        # turn about the world axis
    assert geometry.pose_errors(estimate, truth)[1] == pytest.approx(10.0, abs=1e-9)
    assert geometry.pose_errors(truth, truth) == pytest.approx((0.0, 0.0), abs=1e-6)


def test_quaternion_of_known_rotation_is_xyzw():
    """90 deg about z is (0, 0, sin 45, cos 45) in the ROS (x, y, z, w) order."""
    quaternion = geometry.quaternion_xyzw(rot_z(90.0))
    quaternion *= np.sign(quaternion[3])
    np.testing.assert_allclose(quaternion, [0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)


def test_quaternion_round_trip_and_normalisation():
    """Matrix -> quaternion -> matrix is exact, and a scaled quaternion is normalised."""
    for seed in range(5):
        rotation = Rotation.random(random_state=seed).as_matrix()
        quaternion = geometry.quaternion_xyzw(rotation)
        assert np.linalg.norm(quaternion) == pytest.approx(1.0)
        np.testing.assert_allclose(geometry.rotation_from_quaternion_xyzw(quaternion),
                                   rotation, atol=1e-12)
        np.testing.assert_allclose(geometry.rotation_from_quaternion_xyzw(3.0 * quaternion),
                                   rotation, atol=1e-12)


@pytest.mark.parametrize('quaternion', [[0.0, 0.0, 0.0, 0.0], [1e-12, 0.0, 0.0, 0.0],
                                        [float('nan'), 0.0, 0.0, 1.0],
                                        [float('inf'), 0.0, 0.0, 1.0]])
def test_degenerate_quaternions_are_rejected(quaternion):
    """Zero-length and non-finite quaternions raise ValueError instead of a made-up rotation."""
    with pytest.raises(ValueError, match='invalid quaternion'):
        geometry.rotation_from_quaternion_xyzw(quaternion)


def test_skew_is_the_cross_product():
    """skew(a) @ b equals a x b and skew(a) is antisymmetric."""
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=3), rng.normal(size=3)
    np.testing.assert_allclose(geometry.skew(a) @ b, np.cross(a, b), atol=1e-12)
    np.testing.assert_array_equal(geometry.skew(a), -geometry.skew(a).T)


def test_lever_arm_covariance_matches_sampled_poses():
    """Propagating a pose covariance to a mounted frame agrees with sampling the mounting."""
    rng = np.random.default_rng(9)
    T_world_a = random_transform(10)
    T_a_b = geometry.make_transform(rot_z(20.0), [0.4, -0.2, 1.0])
    sqrt_cov = np.diag([0.02, 0.01, 0.03, 0.01, 0.02, 0.015]) + 0.002 * rng.normal(size=(6, 6))
    covariance_a = sqrt_cov @ sqrt_cov.T
    samples = rng.multivariate_normal(np.zeros(6), covariance_a, size=100000)
    # Perturb a (position, then rotation about the world axes) and read off b's position.
    rotations = Rotation.from_rotvec(samples[:, 3:]).as_matrix() @ T_world_a[:3, :3]
    positions_a = T_world_a[:3, 3] + samples[:, :3]
    positions_b = positions_a + rotations @ T_a_b[:3, 3]
    truth_b = T_world_a[:3, 3] + T_world_a[:3, :3] @ T_a_b[:3, 3]
    sampled = np.cov(np.hstack([positions_b - truth_b, samples[:, 3:]]).T)
    covariance_b = geometry.pose_covariance_with_lever_arm(T_world_a, covariance_a, T_a_b)
    np.testing.assert_allclose(covariance_b, covariance_b.T)
    scale = np.sqrt(np.outer(np.diag(sampled), np.diag(sampled)))
    assert np.max(np.abs(covariance_b - sampled) / scale) < 0.03
    # The lever arm adds position uncertainty: b's position is less certain than a's.
    assert np.trace(covariance_b[:3, :3]) > 1.5 * np.trace(covariance_a[:3, :3])
    # Without a lever arm nothing changes.
    np.testing.assert_allclose(
        geometry.pose_covariance_with_lever_arm(T_world_a, covariance_a,
                                                geometry.make_transform(rot_z(45.0), np.zeros(3))),
        covariance_a, atol=1e-15)


def pnp_scene(count: int, seed: int = 0):
    """Return (pose, world points, exact pixels) of a camera 4 m from a 2 m cloud of points."""
    rng = np.random.default_rng(seed)
    pose = look_at([0.5, -4.0, 1.0], [0.0, 0.0, 0.0])
    points = points_in_box(rng, count, [0.0, 0.0, 0.0], 1.0)
    pixels, _ = project(CAMERA, pose, points)
    return pose, points, pixels


def numeric_jacobian(pose: np.ndarray, points: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """(2N, 6) central-difference Jacobian of the pixels w.r.t. (centre, world-axis rotation)."""
    columns = []
    for k in range(6):
        shifted = []
        for sign in (1.0, -1.0):
            delta = np.zeros(6)
            delta[k] = sign * step
            perturbed = pose.copy()
            perturbed[:3, 3] += delta[:3]
            perturbed[:3, :3] = Rotation.from_rotvec(delta[3:]).as_matrix() @ pose[:3, :3]
            shifted.append(project(CAMERA, perturbed, points)[0].reshape(-1))
        columns.append((shifted[0] - shifted[1]) / (2.0 * step))
    return np.stack(columns, axis=1)


def test_pose_covariance_matches_finite_difference_jacobian():
    """The analytic covariance equals (J^T J)^-1 sigma^2 with a numeric J, sigma^2 floored."""
    pose, points, pixels = pnp_scene(40)
    jacobian = numeric_jacobian(pose, points)
    # Exact pixels: zero residuals, so the documented quarter-pixel variance floor applies.
    expected = np.linalg.inv(jacobian.T @ jacobian) * 0.25
    covariance = pose_covariance(pose, pixels, points, CAMERA)
    np.testing.assert_allclose(covariance, expected, rtol=1e-5,
                               atol=1e-7 * np.abs(expected).max())
    # With noisy pixels the residual variance (2N - 6 degrees of freedom) scales it.
    noise = np.random.default_rng(1).normal(scale=2.0, size=pixels.shape)
    variance = np.sum(noise ** 2) / (2 * len(points) - 6)
    noisy = pose_covariance(pose, pixels + noise, points, CAMERA)
    np.testing.assert_allclose(noisy, expected / 0.25 * variance, rtol=1e-5,
                               atol=1e-7 * np.abs(expected).max() * variance)


def test_pose_covariance_shrinks_with_points_and_grows_with_noise():
    """Ten times more points: much smaller covariance; 4x pixel noise: about 16x larger."""
    pose, points, pixels = pnp_scene(300, seed=2)
    few = pose_covariance(pose, pixels[:30], points[:30], CAMERA)
    many = pose_covariance(pose, pixels, points, CAMERA)
    assert np.trace(many[:3, :3]) < np.trace(few[:3, :3]) / 5.0
    assert np.trace(many[3:, 3:]) < np.trace(few[3:, 3:]) / 5.0
    rng = np.random.default_rng(3)
    unit = rng.normal(size=pixels.shape)
    low = pose_covariance(pose, pixels + 1.0 * unit, points, CAMERA)
    high = pose_covariance(pose, pixels + 4.0 * unit, points, CAMERA)
    ratio = np.trace(high[:3, :3]) / np.trace(low[:3, :3])
    assert ratio == pytest.approx(16.0, rel=1e-6)


def test_pose_covariance_needs_four_points():
    """Fewer than four correspondences cannot constrain a pose: no covariance."""
    pose, points, pixels = pnp_scene(3)
    assert pose_covariance(pose, pixels, points, CAMERA) is None
