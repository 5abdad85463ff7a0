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
PnP-RANSAC on exact synthetic correspondences, with outliers, noise and too little data.

The scene is a cloud of points 4 m in front of a camera; pixels are computed directly from
K, R and C, so the true pose, the true inliers and the true noise are known exactly.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from synthetic_views import CAMERA, look_at, points_in_box, project

from neumap_ros.core.geometry import pose_errors
from neumap_ros.core.pnp import PnPOptions, pose_covariance, solve_pnp

POSE = look_at([0.7, -4.0, 1.2], [0.1, 0.0, -0.2])


def scene(count: int, seed: int):
    """Return world points (a 2 m cube at the origin) and their exact pixels in POSE."""
    points = points_in_box(np.random.default_rng(seed), count, [0.0, 0.0, 0.0], 1.0)
    return points, project(CAMERA, POSE, points)[0]


def test_exact_correspondences_with_half_outliers():
    """With 50% gross outliers the pose is exact and the inliers are exactly the true ones."""
    rng = np.random.default_rng(0)
    points, pixels = scene(200, seed=0)
    corrupted = pixels.copy()
    outliers = rng.permutation(200)[:100]
    corrupted[outliers] = rng.uniform([0.0, 0.0], [640.0, 480.0], (100, 2))
    result = solve_pnp(corrupted, points, CAMERA)
    assert result.success
    t_err, r_err = pose_errors(result.T_world_camera, POSE)
    assert t_err < 1e-6 and r_err < 1e-5
    # A correspondence is an inlier exactly when it reprojects within the threshold under
    # the true pose (a random pixel can land near the true projection by chance).
    distance = np.linalg.norm(corrupted - pixels, axis=1)
    np.testing.assert_array_equal(result.inliers, distance < PnPOptions().max_reprojection_error)
    assert result.num_inliers == int(result.inliers.sum()) >= 100
    expected_rms = np.sqrt(np.mean(distance[result.inliers] ** 2))
    assert result.reprojection_error_px == pytest.approx(expected_rms, abs=1e-6)
    covariance = result.covariance
    assert covariance.shape == (6, 6)
    np.testing.assert_allclose(covariance, covariance.T)
    assert np.all(np.linalg.eigvalsh(covariance) > 0)


def test_exact_correspondences_have_zero_reprojection_error():
    """Without outliers every match is an inlier and the RMS reprojection error is ~0."""
    points, pixels = scene(60, seed=1)
    result = solve_pnp(pixels, points, CAMERA)
    assert result.success and result.inliers.all()
    assert result.reprojection_error_px < 1e-6
    t_err, r_err = pose_errors(result.T_world_camera, POSE)
    assert t_err < 1e-7 and r_err < 1e-6


def test_noisy_pixels_give_a_close_pose_and_a_consistent_covariance():
    """One-pixel noise over many trials: spread of the poses matches the predicted covariance."""
    points, pixels = scene(150, seed=2)
    rng = np.random.default_rng(2)
    errors, covariances = [], []
    for _ in range(150):
        result = solve_pnp(pixels + rng.normal(scale=1.0, size=pixels.shape), points, CAMERA)
        assert result.success and result.num_inliers >= 145
        estimate = result.T_world_camera
        rotation = Rotation.from_matrix(estimate[:3, :3] @ POSE[:3, :3].T).as_rotvec()
        errors.append(np.concatenate([estimate[:3, 3] - POSE[:3, 3], rotation]))
        covariances.append(result.covariance)
    errors = np.array(errors)
    # Position within a few centimetres at 4 m, rotation within a fraction of a degree.
    assert np.abs(errors[:, :3]).max() < 0.05
    assert np.degrees(np.linalg.norm(errors[:, 3:], axis=1)).max() < 0.5
    sampled = np.cov(errors.T)
    predicted = np.mean(covariances, axis=0)
    # Variances of 150 samples are within about +-25% of the truth (chi-square, 3 sigma).
    ratios = np.diag(sampled) / np.diag(predicted)
    assert np.all((ratios > 0.7) & (ratios < 1.35)), ratios


def test_point_errors_give_a_consistent_covariance():
    """
    Exact pixels of 3D points off by 2 cm: the pose spread matches the covariance given 2 cm.

    From pixel noise alone (the residuals) the covariance would be several times too small:
    a fix would be trusted far beyond its real accuracy.
    """
    points, pixels = scene(150, seed=4)
    rng = np.random.default_rng(4)
    errors, covariances, pixel_only = [], [], []
    for _ in range(150):
        noisy = points + rng.normal(scale=0.02, size=points.shape)
        result = solve_pnp(pixels, noisy, CAMERA, PnPOptions(point_std_m=0.02))
        assert result.success
        errors.append(result.T_world_camera[:3, 3] - POSE[:3, 3])
        covariances.append(result.covariance[:3, :3])
        pixel_only.append(solve_pnp(pixels, noisy, CAMERA).covariance[:3, :3])
    ratios = np.diag(np.cov(np.array(errors).T)) / np.diag(np.mean(covariances, axis=0))
    assert np.all((ratios > 0.6) & (ratios < 1.6)), ratios
    assert np.trace(np.mean(pixel_only, axis=0)) < 0.5 * np.trace(np.mean(covariances, axis=0))


def test_a_keypoint_matched_twice_is_one_inlier():
    """Two hypotheses of one keypoint (two voxels) count once, first one kept."""
    points, pixels = scene(60, seed=5)
    doubled = solve_pnp(np.concatenate([pixels, pixels]),
                        np.concatenate([points, points + 0.001]), CAMERA)
    single = solve_pnp(pixels, points, CAMERA)
    assert doubled.num_inliers == single.num_inliers == 60
    assert doubled.inliers[:60].all() and not doubled.inliers[60:].any()
    np.testing.assert_allclose(doubled.covariance, single.covariance, rtol=0.05)


def test_points_on_a_line_give_no_covariance():
    """Collinear points leave the pose unobservable: no covariance, not a made-up one."""
    line = np.column_stack([np.linspace(-1.0, 1.0, 20), np.zeros(20), np.zeros(20)])
    pixels = project(CAMERA, POSE, line)[0]
    assert pose_covariance(POSE, pixels, line, CAMERA) is None
    assert pose_covariance(POSE, pixels, line, CAMERA, point_std_m=0.02) is None


def test_too_few_points_fail_cleanly():
    """Three correspondences (or none) give success False and no pose, not an exception."""
    points, pixels = scene(3, seed=3)
    for count in (0, 3):
        result = solve_pnp(pixels[:count], points[:count], CAMERA)
        assert not result.success
        assert result.T_world_camera is None and result.covariance is None
        assert result.num_inliers == 0 and len(result.inliers) == count


def test_pure_outliers_do_not_produce_a_confident_pose():
    """Random pixels for random points: RANSAC never claims most of them as inliers."""
    rng = np.random.default_rng(4)
    points, _ = scene(100, seed=4)
    pixels = rng.uniform([0.0, 0.0], [640.0, 480.0], (100, 2))
    result = solve_pnp(pixels, points, CAMERA, PnPOptions(max_reprojection_error=2.0))
    # RANSAC may fit a few points by chance, but never most of them.
    assert result.num_inliers < 20
