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
The localizer's front door: bad images and cameras give clear errors or a failure status.

The map is a tiny feature map built in memory from random observations: these tests are about
input handling, which happens before the map's content matters.
"""

import cv2
import numpy as np
import pytest
from synthetic_views import arc_of_cameras, CAMERA

from neumap_ros.core.camera import CameraError, PinholeCamera
from neumap_ros.core.feature_map import build_feature_map
from neumap_ros.core.features import FeatureConfig, ImageError
from neumap_ros.core.localizer import FeatureMatchingLocalizer, load_localizer, \
    LocalizerOptions
from neumap_ros.core.map_io import MapFormatError
from neumap_ros.core.observations import assemble_observations

KITCHEN_CAMERA = PinholeCamera(640, 480, 525.0, 525.0, 320.0, 240.0)


@pytest.fixture(scope='module')
def localizer():
    """Return a feature-matching localizer over a 3-frame map of random SIFT descriptors."""
    rng = np.random.default_rng(0)
    poses = arc_of_cameras(3, [0.0, 0.0, 0.0], 3.0, 20.0)
    per_frame = [(rng.uniform(0, 600, (40, 2)).astype(np.float32),
                  rng.integers(0, 256, (40, 128)).astype(np.uint8),
                  rng.normal(size=(40, 3)).astype(np.float32)) for _ in poses]
    observations = assemble_observations('sift', ['a', 'b', 'c'], per_frame, poses,
                                         [CAMERA] * 3)
    feature_map = build_feature_map(observations, FeatureConfig(), vocabulary_size=8)
    return FeatureMatchingLocalizer(feature_map, LocalizerOptions())


@pytest.fixture(scope='module')
def kitchen_image(shared_data_dir):
    """Return one real 640x480 frame of the kitchen."""
    return cv2.imread(str(shared_data_dir / '7scenes-redkitchen' / 'frame-000100.color.jpg'))


def test_image_size_must_match_the_camera(localizer, kitchen_image):
    """An image of another size than the camera raises CameraError naming both sizes."""
    small = cv2.resize(kitchen_image, (320, 240))
    with pytest.raises(CameraError, match='320x240 but the camera is 640x480'):
        localizer.localize(small, KITCHEN_CAMERA)
    with pytest.raises(CameraError, match='480x640'):
        localizer.localize(np.ascontiguousarray(kitchen_image.transpose(1, 0, 2)),
                           KITCHEN_CAMERA)


def test_textureless_image_is_a_failure_status_not_an_exception(localizer):
    """A blank frame returns success False with status too_few_keypoints and timings."""
    for value in (0, 200):
        result = localizer.localize(np.full((480, 640, 3), value, np.uint8), KITCHEN_CAMERA)
        assert not result.success
        assert result.status == 'too_few_keypoints'
        assert result.num_keypoints == 0 and 'without texture' in result.message
        assert result.T_world_camera is None and result.covariance is None
        assert {'features', 'total'} <= set(result.timings_ms)


def test_real_image_against_an_unrelated_map_finds_no_pose(localizer, kitchen_image):
    """Many keypoints but a map of random descriptors: a failure status, never a pose."""
    result = localizer.localize(kitchen_image, KITCHEN_CAMERA)
    assert result.num_keypoints > 300
    assert not result.success and result.T_world_camera is None
    assert result.status in ('too_few_matches', 'too_few_inliers', 'pnp_failed')


def test_a_prior_that_narrows_nothing_gets_no_second_search(localizer, kitchen_image):
    """
    A failed search under a prior is retried globally only if the prior had narrowed it.

    A prior covering the whole map already searched everything: a retry would repeat the
    same work. An explicit radius of 0 is a prior without position error, not the default.
    """
    from neumap_ros.core.geometry import make_transform
    from neumap_ros.core.localizer import PosePrior
    centre = localizer.map.frame_centres[0]
    everywhere = PosePrior(make_transform(np.eye(3), centre), radius_m=1000.0)
    result = localizer.localize(kitchen_image, KITCHEN_CAMERA, everywhere)
    assert not result.success and not result.prior_ignored
    exact = PosePrior(make_transform(np.eye(3), centre), radius_m=0.0)
    assert localizer._prior_selection(exact, KITCHEN_CAMERA).tolist() == [0]
    result = localizer.localize(kitchen_image, KITCHEN_CAMERA, exact)
    assert not result.success and result.prior_ignored   # narrowed, failed, retried


@pytest.mark.parametrize('image, error', [
    (None, ImageError),
    (np.zeros(640, np.uint8), ImageError),
    (np.full((480, 640), np.nan, np.float32), ImageError),
    (np.zeros((480, 640, 2), np.uint8), ImageError),
    (np.zeros((480, 640), np.int64), ImageError),
])
def test_invalid_images_raise_image_error(localizer, image, error):
    """None, 1-D, NaN, two-channel and integer-typed images raise ImageError."""
    with pytest.raises(error):
        localizer.localize(image, KITCHEN_CAMERA)


def test_nan_intrinsics_never_reach_the_localizer():
    """A camera with NaN intrinsics cannot even be built (CameraError)."""
    with pytest.raises(CameraError):
        PinholeCamera(640, 480, float('nan'), 525.0, 320.0, 240.0)


def test_missing_map_file(tmp_path):
    """load_localizer on a missing map raises MapFormatError naming the path."""
    with pytest.raises(MapFormatError, match='does not exist'):
        load_localizer(tmp_path / 'absent.safetensors', device='cpu')


def test_a_distorted_camera_localizes_through_its_calibration(tmp_path_factory,
                                                              shared_data_dir):
    """
    Keypoints of a distorted image are undistorted before PnP.

    The kitchen frame is re-rendered as a barrel-distorted lens would take it. With the
    distortion in the camera, the pose is as accurate as from the original; read as a
    pinhole image, the same pixels give a worse pose.
    """
    from neumap_testing import cached_map, pose_error, QUERY_FRAMES, SCENE
    from neumap_ros.core.datasets import open_dataset
    frame = open_dataset(shared_data_dir / SCENE).frames[QUERY_FRAMES[1]]
    pinhole = frame.camera
    lens = PinholeCamera(pinhole.width, pinhole.height, pinhole.fx, pinhole.fy, pinhole.cx,
                         pinhole.cy, (-0.25, 0.08, 0.001, -0.001, 0.0))
    # Each pixel of the distorted image shows what the pinhole image has at its undistorted
    # position.
    u, v = np.meshgrid(np.arange(pinhole.width, dtype=np.float32),
                       np.arange(pinhole.height, dtype=np.float32))
    grid = np.stack([u.ravel(), v.ravel()], axis=1)
    source = lens.undistort_points(grid).reshape(pinhole.height, pinhole.width, 2)
    distorted = cv2.remap(frame.load_image(), source[..., 0].astype(np.float32),
                          source[..., 1].astype(np.float32), cv2.INTER_LINEAR)
    localizer = load_localizer(cached_map(tmp_path_factory, shared_data_dir), 'cpu')
    original = localizer.localize(frame.load_image(), pinhole)
    calibrated = localizer.localize(distorted, lens)
    assert original.success and calibrated.success
    error = pose_error(calibrated.T_world_camera, frame.T_world_camera)[0]
    assert error < 0.05
    assert error < pose_error(original.T_world_camera, frame.T_world_camera)[0] + 0.01
    ignored = localizer.localize(distorted, pinhole)
    assert not ignored.success or \
        pose_error(ignored.T_world_camera, frame.T_world_camera)[0] > 2 * error
