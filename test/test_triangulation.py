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
Two-view geometry and multi-view triangulation on exact synthetic data.

Points, poses and pixels are known exactly (pixels computed directly from K, R and C), so a
correct triangulation recovers the points to rounding error, and every rejection rule can be
triggered on purpose.
"""

import shutil

import numpy as np
import pytest
from synthetic_views import arc_of_cameras, CAMERA, look_at, points_in_box, project

from neumap_ros.core import synthetic
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.observations import collect_observations
from neumap_ros.core.triangulation import epipolar_distances, fundamental_matrix, \
    projection_matrix, triangulate_dlt, triangulate_frames, TriangulationOptions

TARGET = np.array([0.5, 1.0, 0.2])


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Return the rows of ``matrix`` scaled to unit length."""
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def two_views(count: int = 50, seed: int = 0):
    """Return two poses 30 deg apart, world points and their exact pixels in both views."""
    poses = arc_of_cameras(2, TARGET, 5.0, 30.0)
    points = points_in_box(np.random.default_rng(seed), count, TARGET, 1.0)
    return poses, points, project(CAMERA, poses[0], points)[0], \
        project(CAMERA, poses[1], points)[0]


def test_projection_matrix_projects_like_the_camera():
    """P [X; 1] dehomogenised equals the direct pinhole projection."""
    poses, points, pixels, _ = two_views()
    homogeneous = np.hstack([points, np.ones((len(points), 1))]) @ \
        projection_matrix(CAMERA, poses[0]).T
    np.testing.assert_allclose(homogeneous[:, :2] / homogeneous[:, 2:], pixels, atol=1e-9)


def test_fundamental_matrix_satisfies_the_epipolar_constraint():
    """x2^T F x1 = 0 for true correspondences; F has rank 2."""
    poses, _, x1, x2 = two_views()
    F = fundamental_matrix(CAMERA, poses[0], CAMERA, poses[1])
    h1 = np.hstack([x1, np.ones((len(x1), 1))])
    h2 = np.hstack([x2, np.ones((len(x2), 1))])
    residual = np.abs(np.sum(h2 * (h1 @ F.T), axis=1))
    assert residual.max() < 1e-9 * np.abs(F).max() * 640 ** 2
    singular = np.linalg.svd(F, compute_uv=False)
    assert singular[2] < 1e-12 * singular[0]


def test_epipolar_distances_are_zero_for_true_matches_and_pixels_off_the_line():
    """True matches: 0 px; moved 5 px across the epipolar line: >= 5 px; along it: ~0."""
    poses, _, x1, x2 = two_views()
    F = fundamental_matrix(CAMERA, poses[0], CAMERA, poses[1])
    assert epipolar_distances(F, x1, x2).max() < 1e-6
    lines = np.hstack([x1, np.ones((len(x1), 1))]) @ F.T       # lines in image 2
    normals = unit_rows(lines[:, :2])
    across = epipolar_distances(F, x1, x2 + 5.0 * normals)
    np.testing.assert_array_less(5.0 - 1e-6, across)
    along = np.stack([-normals[:, 1], normals[:, 0]], axis=1)
    assert epipolar_distances(F, x1, x2 + 5.0 * along).max() < 1e-6


def test_dlt_recovers_exact_points():
    """Two or more exact views triangulate a point to rounding error."""
    poses = arc_of_cameras(4, TARGET, 5.0, 40.0)
    projections = np.array([projection_matrix(CAMERA, pose) for pose in poses])
    for point in points_in_box(np.random.default_rng(1), 10, TARGET, 1.0):
        pixels = np.array([project(CAMERA, pose, point[None])[0][0] for pose in poses])
        np.testing.assert_allclose(triangulate_dlt(projections, pixels), point, atol=1e-9)
        np.testing.assert_allclose(triangulate_dlt(projections[:2], pixels[:2]), point,
                                   atol=1e-9)


def synthetic_frames(seed: int = 0, views: int = 5, count: int = 200, distractors: int = 40):
    """
    Return (poses, keypoints, vectors, truth) for exact views of a cloud of points.

    Each 3D point has one random unit descriptor shared by all views; every view lists its
    keypoints in its own random order and adds distractor keypoints with unique descriptors.
    ``truth[f][k]`` is the point index of keypoint ``k`` of view ``f`` (-1 for distractors).
    """
    rng = np.random.default_rng(seed)
    poses = arc_of_cameras(views, TARGET, 5.0, 40.0)
    points = points_in_box(rng, count, TARGET, 1.0)
    descriptors = unit_rows(rng.normal(size=(count, 128)))
    keypoints, vectors, truth = [], [], []
    for pose in poses:
        pixels, depth = project(CAMERA, pose, points)
        assert np.all(depth > 0)
        assert np.all((pixels > 0) & (pixels < [CAMERA.width, CAMERA.height]))
        noise_pixels = rng.uniform([0.0, 0.0], [CAMERA.width, CAMERA.height], (distractors, 2))
        all_pixels = np.vstack([pixels, noise_pixels])
        all_vectors = np.vstack([descriptors, unit_rows(rng.normal(size=(distractors, 128)))])
        ids = np.concatenate([np.arange(count), -np.ones(distractors, int)])
        order = rng.permutation(len(ids))
        keypoints.append(all_pixels[order])
        vectors.append(all_vectors[order].astype(np.float32))
        truth.append(ids[order])
    return poses, keypoints, vectors, truth, points


def test_triangulate_frames_recovers_exact_points():
    """Every keypoint of a point seen in 5 views gets that point to 1e-6 relative error."""
    poses, keypoints, vectors, truth, points = synthetic_frames()
    xyz = triangulate_frames([CAMERA] * len(poses), poses, keypoints, vectors)
    assert len(xyz) == len(poses)
    scale = np.linalg.norm(points - poses[0][:3, 3], axis=1).max()
    for frame_xyz, ids in zip(xyz, truth):
        assert frame_xyz.shape == (len(ids), 3)
        real = ids >= 0
        assert np.all(np.isfinite(frame_xyz[real]))
        assert np.abs(frame_xyz[real] - points[ids[real]]).max() < 1e-6 * scale
        # Distractors are seen once: nothing to triangulate.
        assert np.all(np.isnan(frame_xyz[~real]))


def test_an_observation_off_its_epipolar_lines_is_left_out():
    """One view's keypoint moved 25 px is not attached; the other views still triangulate."""
    poses, keypoints, vectors, truth, points = synthetic_frames(seed=1)
    corrupted = 17
    row = int(np.flatnonzero(truth[2] == corrupted)[0])
    keypoints[2] = keypoints[2].copy()
    keypoints[2][row] += [18.0, -18.0]
    xyz = triangulate_frames([CAMERA] * len(poses), poses, keypoints, vectors)
    assert np.all(np.isnan(xyz[2][row]))
    for frame in (0, 1, 3, 4):
        k = int(np.flatnonzero(truth[frame] == corrupted)[0])
        np.testing.assert_allclose(xyz[frame][k], points[corrupted], atol=1e-6)


def test_repeated_descriptors_are_not_triangulated():
    """Two points with the same descriptor fail the ratio test and stay without 3D."""
    poses, keypoints, vectors, truth, points = synthetic_frames(seed=2)
    for frame in range(len(poses)):
        vectors[frame] = vectors[frame].copy()
        vectors[frame][truth[frame] == 5] = vectors[frame][truth[frame] == 6]
    xyz = triangulate_frames([CAMERA] * len(poses), poses, keypoints, vectors)
    for frame_xyz, ids in zip(xyz, truth):
        assert np.all(np.isnan(frame_xyz[(ids == 5) | (ids == 6)]))
        others = ids >= 7
        assert np.all(np.isfinite(frame_xyz[others]))


def test_narrow_baseline_points_are_rejected():
    """Views 0.5 deg apart (below min_triangulation_angle) give no points at all."""
    rng = np.random.default_rng(3)
    centre = TARGET + [0.0, -5.0, 0.3]
    poses = [look_at(centre, TARGET), look_at(centre + [0.04, 0.0, 0.0], TARGET)]
    points = points_in_box(rng, 50, TARGET, 0.5)
    vectors = unit_rows(rng.normal(size=(50, 128))).astype(np.float32)
    keypoints = [project(CAMERA, pose, points)[0] for pose in poses]
    xyz = triangulate_frames([CAMERA] * 2, poses, keypoints, [vectors, vectors])
    assert all(np.all(np.isnan(frame_xyz)) for frame_xyz in xyz)
    # The same data is triangulated once the angle threshold allows it.
    loose = TriangulationOptions(min_triangulation_angle=0.1)
    xyz = triangulate_frames([CAMERA] * 2, poses, keypoints, [vectors, vectors], loose)
    np.testing.assert_allclose(xyz[0], points, atol=1e-6)


def test_views_facing_apart_are_not_matched():
    """Cameras whose optical axes differ by more than max_view_angle are never paired."""
    rng = np.random.default_rng(4)
    points = points_in_box(rng, 40, [0.0, 0.0, 0.0], 0.3)
    poses = [look_at([0.0, -5.0, 0.2], [0.0, 0.0, 0.0]), look_at([5.0, 0.0, 0.2], [0.0] * 3)]
    vectors = unit_rows(rng.normal(size=(40, 128))).astype(np.float32)
    keypoints = [project(CAMERA, pose, points)[0] for pose in poses]
    xyz = triangulate_frames([CAMERA] * 2, poses, keypoints, [vectors, vectors])
    assert all(np.all(np.isnan(frame_xyz)) for frame_xyz in xyz)                # 90 deg apart
    wide = TriangulationOptions(max_view_angle=100.0)
    xyz = triangulate_frames([CAMERA] * 2, poses, keypoints, [vectors, vectors], wide)
    np.testing.assert_allclose(xyz[1], points, atol=1e-6)


@pytest.mark.parametrize('views', [1, 2])
def test_frames_without_keypoints_are_handled(views):
    """Views with no keypoints at all return empty (0, 3) arrays."""
    poses = arc_of_cameras(views, TARGET, 5.0, 20.0)
    empty = [np.zeros((0, 2))] * views
    xyz = triangulate_frames([CAMERA] * views, poses, empty, [np.zeros((0, 128))] * views)
    assert [a.shape for a in xyz] == [(0, 3)] * views


@pytest.fixture(scope='module')
def rendered_scene(tmp_path_factory):
    """Render 8 views of a synthetic room; return (with depth, same images without depth)."""
    folder = tmp_path_factory.mktemp('rendered')
    with_depth = synthetic.generate_dataset(
        folder / 'depth', seed=3, n_map=8, n_query=0, width=320, height=240,
        photometric=False, image_format='png',
        config=synthetic.SceneConfig(kind='indoor', texel_size=0.012))
    without_depth = folder / 'no-depth'
    shutil.copytree(with_depth, without_depth)
    for path in without_depth.glob('*.depth.png'):
        path.unlink()
    return with_depth, without_depth


def test_triangulated_rendered_keypoints_agree_with_rendered_depth(rendered_scene):
    """
    Without depth, keypoints are triangulated from the poses to where the depth puts them.

    The renderer's depth (millimetre PNGs) is the reference; SIFT keypoints sit a fraction of
    a pixel from the true image position, so a few millimetres of error are expected.
    """
    config = FeatureConfig(max_keypoints=400)
    reference = open_dataset(rendered_scene[0])
    posed_only = open_dataset(rendered_scene[1])
    assert reference.has_depth and not posed_only.has_depth
    from_depth = collect_observations(reference, reference.split(None), config, False)
    triangulated = collect_observations(posed_only, posed_only.split(None), config, False)
    # Same images and extractor: the same keypoints, only the source of 3D differs.
    np.testing.assert_array_equal(from_depth.keypoints, triangulated.keypoints)
    both = from_depth.valid & triangulated.valid
    assert triangulated.valid.mean() > 0.5 and both.sum() > 500
    distance = np.linalg.norm(from_depth.xyz[both] - triangulated.xyz[both], axis=1)
    assert np.median(distance) < 0.015
    assert np.mean(distance < 0.05) > 0.85
