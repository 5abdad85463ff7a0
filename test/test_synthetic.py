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
Procedural scene generator: determinism, exact depth, SIFT-friendly views, 7-Scenes output.

Small images and coarse texels keep most tests fast; the SIFT checks use full 640x480 frames
with the default texture detail, as pretraining will.
"""

import json
import math
import re

import cv2
import numpy as np
import pytest

from neumap_ros.core import synthetic
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.synthetic import textures
from neumap_ros.core.synthetic.quality import reprojection_consistency
from neumap_ros.core.synthetic.writer import depth_to_millimetres

# Coarser texels than the default: same scenes and paths, quicker texture generation.
FAST_INDOOR = synthetic.SceneConfig(kind='indoor', texel_size=0.012)
FAST_OUTDOOR = synthetic.SceneConfig(kind='outdoor', texel_size=0.08)


@pytest.fixture(scope='module')
def small_camera():
    """Return a 160x120 camera with the 7-Scenes field of view."""
    return synthetic.default_camera(160, 120)


@pytest.fixture(scope='module')
def fast_indoor():
    """Return an indoor scene with coarse texels, shared by the tests of this module."""
    return synthetic.generate_scene(4, FAST_INDOOR)


def test_scene_paths_and_images_are_a_function_of_the_seed(small_camera):
    """Same seed, same scene, path and pixels; another seed, another scene."""
    a = synthetic.generate_scene(11, FAST_INDOOR)
    b = synthetic.generate_scene(11, FAST_INDOOR)
    other = synthetic.generate_scene(12, FAST_INDOOR)
    np.testing.assert_array_equal(a.origins, b.origins)
    assert a.styles == b.styles
    assert a.origins.shape != other.origins.shape or not np.allclose(a.origins, other.origins)
    poses_a = synthetic.sample_trajectory(a, 6, 11, small_camera)
    poses_b = synthetic.sample_trajectory(b, 6, 11, small_camera)
    np.testing.assert_array_equal(np.array(poses_a), np.array(poses_b))
    # Textures are made lazily per face from the scene seed: the order views are rendered in
    # must not matter.
    renders_b = dict.fromkeys((5, 0))
    for i in renders_b:
        rng = np.random.default_rng(i)
        renders_b[i] = synthetic.render(b, small_camera, poses_b[i],
                                        synthetic.Photometric.sample(rng), rng)
    for i in (0, 5):
        rng = np.random.default_rng(i)
        first = synthetic.render(a, small_camera, poses_a[i], synthetic.Photometric.sample(rng),
                                 rng)
        np.testing.assert_array_equal(first.color, renders_b[i].color)
        np.testing.assert_array_equal(first.depth, renders_b[i].depth)


def _plane_depth(camera, pose, normal, offset):
    """Return the depth of the plane n.X = offset at every pixel, and the pixel rays."""
    u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy,
                     np.ones(u.shape)], axis=-1)
    n_dot_ray = rays @ (pose[:3, :3].T @ normal)
    return (offset - normal @ pose[:3, 3]) / n_dot_ray, rays


def test_rendered_depth_equals_the_analytic_depth_of_known_geometry():
    """A wall and a box at known places: depth is the exact ray / plane intersection."""
    wall = synthetic.Quad.from_center((4.0, 0.0, 1.25), (-1.0, 0.0, 0.0), (0.0, 0.0, -1.0),
                                      12.0, 2.5, 'paint')
    box = synthetic.Box.on_floor(2.0, 0.3, (0.5, 0.6, 1.0), 'wood')
    scene = synthetic.Scene.from_geometry([wall], [box])
    camera = synthetic.default_camera(320, 240)
    pose = synthetic.look_pose((0.0, 0.0, 1.2), 0.1, math.radians(-3.0), math.radians(2.0))
    result = synthetic.render(scene, camera, pose)
    depth, face = result.depth, result.face

    wall_depth, rays = _plane_depth(camera, pose, np.array([1.0, 0.0, 0.0]), 4.0)
    hit = pose[:3, 3] + (rays * wall_depth[..., None]) @ pose[:3, :3].T
    on_wall = face == 0
    assert on_wall.mean() > 0.5
    np.testing.assert_allclose(depth[on_wall], wall_depth[on_wall], rtol=1e-5, atol=1e-5)
    # Above the 2.5 m wall nothing is hit: depth 0, face -1.
    above = hit[..., 2] > 2.5 + 0.01
    assert above.any() and np.all(depth[above] == 0) and np.all(face[above] == -1)
    # The box's front face (x = 1.75, facing the camera) hides the wall behind it.
    box_depth, _ = _plane_depth(camera, pose, np.array([1.0, 0.0, 0.0]), 1.75)
    box_hit = pose[:3, 3] + (rays * box_depth[..., None]) @ pose[:3, :3].T
    in_front = ((np.abs(box_hit[..., 1] - 0.3) < 0.29) & (box_hit[..., 2] > 0.01)
                & (box_hit[..., 2] < 0.99))
    assert in_front.sum() > 500
    np.testing.assert_allclose(depth[in_front], box_depth[in_front], rtol=1e-5, atol=1e-5)
    # The scene's own ray caster (used for path checks) agrees with the renderer.
    picks = np.flatnonzero((depth > 0).ravel())[::997]
    directions = rays.reshape(-1, 3)[picks] @ pose[:3, :3].T
    t, _ = scene.raycast(pose[:3, 3], directions)
    np.testing.assert_allclose(t, depth.ravel()[picks], rtol=1e-5)


@pytest.mark.parametrize('kind, seed', [('indoor', 4), ('outdoor', 1)])
def test_sift_matches_agree_with_the_rendered_geometry(kind, seed):
    """Overlapping 640x480 views: many keypoints, and matches land where the geometry says."""
    camera = synthetic.default_camera(640, 480)
    scene = synthetic.generate_scene(seed, kind=kind)
    poses = synthetic.sample_trajectory(scene, 30, seed, camera)
    reports = []
    for i in (0, 8, 16, 24):
        views = []
        for k in (i, i + 3):
            rng = np.random.default_rng([seed, k])
            views.append(synthetic.render(scene, camera, poses[k],
                                          synthetic.Photometric.sample(rng), rng))
        reports.append(reprojection_consistency(views[0].color, views[0].depth, poses[i],
                                                views[1].color, poses[i + 3], camera))
    # Real 7-Scenes frames give 800-1800 SIFT keypoints; blank renders give a few dozen.
    keypoints = [r.keypoints_a for r in reports] + [r.keypoints_b for r in reports]
    assert min(keypoints) >= 200 and np.mean(keypoints) >= 500
    assert min(r.matches for r in reports) >= 50
    assert np.median([r.median_error_px for r in reports]) < 1.0
    consistent = sum(r.consistent for r in reports) / sum(r.checked for r in reports)
    assert consistent > 0.7, reports


def test_trajectories_keep_their_constraints(fast_indoor):
    """Paths stay free, smooth, level and at sensible depths; revisits overlap the map."""
    scene = fast_indoor
    camera = synthetic.default_camera(160, 120)
    cfg = synthetic.TrajectoryConfig.for_kind('indoor')
    poses = synthetic.sample_trajectory(scene, 40, 4, camera)
    assert len(poses) == 40
    rotations = np.array([T[:3, :3] for T in poses])
    centres = np.array([T[:3, 3] for T in poses])
    np.testing.assert_allclose(rotations.transpose(0, 2, 1) @ rotations,
                               np.broadcast_to(np.eye(3), rotations.shape), atol=1e-9)
    assert np.allclose(np.linalg.det(rotations), 1.0)
    assert scene.is_free(centres).all()
    # Small roll: the image x axis stays nearly horizontal.
    roll = np.degrees(np.arcsin(np.abs(rotations[:, 2, 0])))
    assert roll.max() < cfg.max_roll_deg + 2.0
    # Smooth: steps near the configured spacing, small turns between frames.
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert 0.5 * cfg.step < np.median(steps) < 1.5 * cfg.step and steps.max() < 3 * cfg.step
    turns = [math.degrees(math.acos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))
             for a, b in zip(rotations[:-1], rotations[1:])]
    assert max(turns) < 8.0
    for pose in poses[::5]:
        depth = synthetic.render_depth(scene, camera, pose)
        assert (depth > 0).mean() >= cfg.min_valid_fraction
        assert depth[depth > 0].min() >= cfg.min_depth
        assert cfg.median_depth[0] * 0.8 <= np.median(depth[depth > 0]) <= cfg.median_depth[1]
    queries = synthetic.sample_revisits(scene, poses, 4, 4, camera)
    for query in queries:
        assert np.min(np.linalg.norm(centres - query[:3, 3], axis=1)) >= cfg.revisit_min_offset
        assert max(synthetic.view_overlap(scene, camera, query, pose) for pose in poses) >= 0.35


def test_dataset_is_written_in_the_7scenes_layout(tmp_path):
    """File names, pose text, millimetre depth, intrinsics, splits; the loader reads it."""
    root = synthetic.generate_dataset(tmp_path / 'synthetic', seed=5, n_map=6, n_query=2,
                                      width=160, height=120, config=FAST_INDOOR)
    camera = synthetic.default_camera(160, 120)
    names = [f'frame-{i:06d}' for i in range(8)]
    for name in names:
        for suffix in ('.color.jpg', '.depth.png', '.pose.txt'):
            assert (root / (name + suffix)).is_file(), name + suffix
    number = r'-?\d\.\d{18}e[+-]\d{2}'
    scene = synthetic.generate_scene(5, FAST_INDOOR)
    for name in names:
        text = (root / f'{name}.pose.txt').read_text()
        lines = text.splitlines()
        assert len(lines) == 4 and all(re.fullmatch(' '.join([number] * 4), line)
                                       for line in lines)
        pose = np.loadtxt(root / f'{name}.pose.txt')
        np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
        np.testing.assert_allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3), atol=1e-12)
        raw = cv2.imread(str(root / f'{name}.depth.png'), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16 and raw.shape == (120, 160)
        truth = synthetic.render_depth(scene, camera, pose)
        assert np.all((raw > 0) == (truth > 0))
        np.testing.assert_allclose(raw[raw > 0] / 1000.0, truth[raw > 0], atol=0.0006)
        color = cv2.imread(str(root / f'{name}.color.jpg'))
        assert color.shape == (120, 160, 3)
    intrinsics = (root / 'rgb-camera-intrinsics.txt').read_text()
    assert intrinsics.splitlines()[2] == '0 0 1'
    np.testing.assert_allclose(np.loadtxt(root / 'rgb-camera-intrinsics.txt'), camera.K)
    assert (root / 'split-revisit-map.txt').read_text().split() == names[:6]
    assert (root / 'split-revisit-query.txt').read_text().split() == names[6:]
    meta = json.loads((root / 'scene.json').read_text())
    assert meta['seed'] == 5 and meta['kind'] == 'indoor'
    assert meta['scene_config']['texel_size'] == FAST_INDOOR.texel_size
    # The project's own loader reads it back, depth in metres.
    dataset = open_dataset(root)
    assert dataset.layout == 'sevenscenes' and dataset.has_depth
    assert [f.name for f in dataset.split('revisit-query')] == names[6:]
    frame = dataset.frames[names[3]]
    np.testing.assert_allclose(frame.camera.K, camera.K)
    depth = frame.load_depth()
    raw = cv2.imread(str(root / f'{names[3]}.depth.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(depth, raw / 1000.0, atol=1e-6)


def test_depth_is_stored_in_millimetres_with_zero_for_invalid():
    """Rounded millimetres; no hit, non-finite and too far become 0."""
    depth = np.array([[0.0, 1.2344, 1.2346, 65.534], [65.6, np.nan, np.inf, -1.0]])
    np.testing.assert_array_equal(depth_to_millimetres(depth),
                                  [[0, 1234, 1235, 65534], [0, 0, 0, 0]])


def test_training_frames_stream_without_files():
    """iter_scene_frames yields posed RGB-D frames with intrinsics, deterministically."""
    frames = list(synthetic.iter_scene_frames(3, 4, width=96, height=72, config=FAST_OUTDOOR))
    again = next(synthetic.iter_scene_frames(3, 4, width=96, height=72, config=FAST_OUTDOOR))
    assert len(frames) == 4
    camera = synthetic.default_camera(96, 72)
    for color, depth, K, pose in frames:
        assert color.shape == (72, 96, 3) and color.dtype == np.uint8
        assert depth.shape == (72, 96) and depth.dtype == np.float32
        assert (depth > 0).mean() > 0.4          # outdoor: the sky has no depth
        np.testing.assert_allclose(K, camera.K)
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
    np.testing.assert_array_equal(frames[0].color, again.color)


def test_every_texture_style_is_deterministic_and_in_range():
    """Each style renders, is a function of the generator state and is not flat."""
    assert textures.available_photos() > 0
    styles = sorted({s for group in textures.STYLES.values() for s in group} | {'glass'})
    for style in styles:
        texel = 0.05 if style.startswith('facade') else 0.01
        a = textures.make_texture(np.random.default_rng(1), style, 64, 96, texel)
        b = textures.make_texture(np.random.default_rng(1), style, 64, 96, texel)
        assert a.shape == (64, 96, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert a.std() > 2.0, style           # never a flat colour
    pyramid = textures.build_pyramid(np.zeros((64, 96, 3), np.uint8))
    assert [p.shape[:2] for p in pyramid[:3]] == [(64, 96), (32, 48), (16, 24)]
