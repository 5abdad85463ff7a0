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
Track points from multi-view reprojection, on views built so the true points are known.

Every keypoint is the exact projection of its track's point (plus a little pixel noise); its
"depth" 3D point is pushed along its own viewing ray, as depth noise and unregistered
colour/depth images do on a real RGB-D camera.
"""

import numpy as np
import pytest
from synthetic_views import arc_of_cameras, CAMERA, look_at, points_in_box, project

from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.observations import collect_observations, Observations
from neumap_ros.core.track_points import refine_track_points, TrackPointOptions, \
    with_track_points
from neumap_ros.core.tracks import build_tracks


def observe(poses, points, rng, depth_noise_m=0.05, pixel_noise=0.3):
    """Return Observations of every point in every pose (one track per point) and tracks."""
    frame_index, keypoints, xyz, tracks = [], [], [], []
    for frame, pose in enumerate(poses):
        pixels, depth = project(CAMERA, pose, points)
        assert np.all(depth > 0)
        centre = pose[:3, 3]
        rays = (points - centre) / depth[:, None]  # world offset per metre of depth
        noisy_depth = depth + rng.uniform(-depth_noise_m, depth_noise_m, len(points))
        frame_index.append(np.full(len(points), frame))
        keypoints.append(pixels + rng.normal(0.0, pixel_noise, pixels.shape))
        xyz.append(centre + rays * noisy_depth[:, None])
        tracks.append(np.arange(len(points)))
    count = sum(len(k) for k in keypoints)
    observations = Observations(
        'sift', [f'f{i}' for i in range(len(poses))],
        np.concatenate(frame_index).astype(np.int32),
        np.concatenate(keypoints).astype(np.float32),
        np.zeros((count, 128), np.uint8), np.concatenate(xyz).astype(np.float32),
        np.stack(poses), [CAMERA] * len(poses))
    return observations, np.concatenate(tracks)


def reprojection_errors(observations, tracks, points):
    """Pixel distance of each tracked keypoint from its track point's projection."""
    errors = []
    for frame, pose in enumerate(observations.poses):
        mine = (observations.frame_index == frame) & (tracks >= 0)
        pixels, _ = project(observations.cameras[frame], pose, points[tracks[mine]])
        errors.append(np.linalg.norm(pixels - observations.keypoints[mine], axis=1))
    return np.concatenate(errors)


def reprojection_rms(observations, tracks, points):
    """RMS pixel error of track points against their keypoints (per axis)."""
    return float(np.sqrt(np.mean(reprojection_errors(observations, tracks, points) ** 2) / 2))


def depth_means(observations, tracks):
    """Mean of each track's keypoint 3D points."""
    tracked = tracks >= 0
    return np.stack([np.bincount(tracks[tracked], observations.xyz[tracked, axis])
                     for axis in range(3)], axis=1) / np.bincount(tracks[tracked])[:, None]


@pytest.fixture(scope='module')
def scene():
    """Return (true points, observations, tracks) of 200 points seen from an arc of 8 views."""
    rng = np.random.default_rng(3)
    points = points_in_box(rng, 200, [0.0, 0.0, 0.0], 0.4)
    poses = arc_of_cameras(8, [0.0, 0.0, 0.0], 2.0, 50.0)
    observations, tracks = observe(poses, points, rng)
    return points, observations, tracks


def test_refined_points_are_closer_to_the_truth_than_the_depth_mean(scene):
    """Errors along 8 different rays average to an off-ray error; reprojection removes it."""
    truth, observations, tracks = scene
    mean = depth_means(observations, tracks)
    refined = refine_track_points(observations, tracks)
    mean_error = np.linalg.norm(mean - truth, axis=1)
    refined_error = np.linalg.norm(refined - truth, axis=1)
    assert np.median(refined_error) < 0.3 * np.median(mean_error)
    assert np.median(refined_error) < 0.004
    refined_rms = reprojection_rms(observations, tracks, refined)
    assert refined_rms < 0.4  # the keypoints' own noise: 0.3 px per axis
    assert reprojection_rms(observations, tracks, mean) > 2.0 * refined_rms


def test_a_track_seen_from_one_place_stays_near_its_depth_mean():
    """Without a baseline the depth direction is unconstrained: the prior must hold it."""
    rng = np.random.default_rng(4)
    points = points_in_box(rng, 50, [0.0, 0.0, 0.0], 0.3)
    pose = look_at([0.0, -2.0, 0.3], [0.0, 0.0, 0.0])
    observations, tracks = observe([pose, pose.copy()], points, rng, pixel_noise=0.0)
    mean = depth_means(observations, tracks)
    refined = refine_track_points(observations, tracks)
    assert np.all(np.isfinite(refined))
    assert np.max(np.linalg.norm(refined - mean, axis=1)) < 0.005
    # ... while still snapping onto the (exact) rays.
    assert reprojection_rms(observations, tracks, refined) < 0.05


def test_an_outlier_keypoint_does_not_drag_its_track(scene):
    """A keypoint 40 px off (a wrong match inside a track) gets Huber weight, not the say."""
    truth, observations, tracks = scene
    keypoints = observations.keypoints.copy()
    first = np.flatnonzero(tracks == 0)[0]
    keypoints[first] += [40.0, 0.0]
    damaged = Observations(observations.feature_kind, observations.frame_names,
                           observations.frame_index, keypoints, observations.descriptors,
                           observations.xyz, observations.poses, observations.cameras)
    robust = refine_track_points(damaged, tracks)[0]
    squared = refine_track_points(damaged, tracks, TrackPointOptions(robust_px=1e6))[0]
    assert np.linalg.norm(robust - truth[0]) < 0.5 * np.linalg.norm(squared - truth[0])


def test_with_track_points_replaces_tracked_points_only(scene):
    """Untracked keypoints keep their own point and the input is left as it was."""
    _, observations, tracks = scene
    tracks = tracks.copy()
    tracks[::7] = -1
    before = observations.xyz.copy()
    updated = with_track_points(observations, tracks)
    np.testing.assert_array_equal(observations.xyz, before)
    np.testing.assert_array_equal(updated.xyz[tracks < 0], before[tracks < 0])
    for track in (0, 5, 123):
        members = updated.xyz[tracks == track]
        assert np.all(members == members[0])
    assert not np.allclose(updated.xyz[tracks >= 0], before[tracks >= 0])


def test_no_tracks_give_no_points(scene):
    """Every keypoint untracked: nothing to refine, nothing changes."""
    _, observations, tracks = scene
    none = np.full_like(tracks, -1)
    assert refine_track_points(observations, none).shape == (0, 3)
    np.testing.assert_array_equal(with_track_points(observations, none).xyz, observations.xyz)


@pytest.mark.slow
def test_kitchen_track_points_fit_the_keypoints_better(shared_data_dir):
    """
    On real RGB-D frames, refined points reproject closer to their keypoints than depth means.

    Colour and depth images of the kitchen are not registered, so depth means sit a few
    pixels off the colour keypoints' rays; refinement moves them towards the rays, as far as
    the measured depths allow.
    """
    dataset = open_dataset(shared_data_dir / '7scenes-redkitchen')
    frames = [dataset.frames[f'frame-{i:06d}'] for i in range(0, 64, 4)]
    observations = collect_observations(dataset, frames, FeatureConfig(max_keypoints=512),
                                        progress=False)
    tracks = build_tracks(observations)
    assert (tracks >= 0).sum() > 1000
    before = reprojection_errors(observations, tracks, depth_means(observations, tracks))
    after = reprojection_errors(observations, tracks, refine_track_points(observations, tracks))
    assert np.median(after) < 0.97 * np.median(before)
    assert np.percentile(after, 90) < 0.93 * np.percentile(before, 90)
    # Without the depths, the rays alone pull points further onto the keypoints.
    rays_only = TrackPointOptions(depth_sigma_m=0.0, prior_sigma_m=0.1)
    free = reprojection_errors(observations, tracks,
                               refine_track_points(observations, tracks, rays_only))
    assert np.percentile(free, 90) < np.percentile(after, 90)
