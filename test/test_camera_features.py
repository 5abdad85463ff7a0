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
Camera model validation and geometry, keypoint extraction and image checks.

Real images come from the shared 7-Scenes kitchen; exact expectations come from OpenCV's own
forward distortion model and from an image whose downscaled version is known bit for bit.
"""

import cv2
import numpy as np
import pytest

from neumap_ros.core.camera import CameraError, PinholeCamera
from neumap_ros.core.features import create_extractor, descriptor_vectors, FeatureConfig, \
    Features, ImageError, to_gray_uint8, uint16_to_uint8
from neumap_ros.core.observations import depth_at, observe_frame

NAN = float('nan')
DISTORTION = (-0.21, 0.06, 0.0012, -0.0008, -0.01)


@pytest.fixture(scope='module')
def kitchen_image(shared_data_dir):
    """Return one real 640x480 BGR frame of the kitchen."""
    image = cv2.imread(str(shared_data_dir / '7scenes-redkitchen' / 'frame-000000.color.jpg'))
    assert image is not None and image.shape == (480, 640, 3)
    return image


@pytest.mark.parametrize('kwargs, message', [
    ({'width': 0}, 'size must be positive'),
    ({'height': -480}, 'size must be positive'),
    ({'fx': NAN}, 'finite'),
    ({'cy': float('inf')}, 'finite'),
    ({'fx': -525.0}, 'focal lengths must be positive'),
    ({'fy': 0.0}, 'focal lengths must be positive'),
    ({'distortion': (0.1, 0.0, 0.0)}, 'distortion terms'),
    ({'distortion': (0.1, NAN, 0.0, 0.0)}, 'finite'),
])
def test_invalid_camera_parameters_raise_camera_error(kwargs, message):
    """Zero size, NaN/inf values, non-positive focal lengths, bad distortion -> CameraError."""
    values = {'width': 640, 'height': 480, 'fx': 525.0, 'fy': 525.0, 'cx': 320.0, 'cy': 240.0}
    values.update(kwargs)
    with pytest.raises(CameraError, match=message):
        PinholeCamera(**values)
    assert issubclass(CameraError, ValueError)


@pytest.mark.parametrize('terms', [0, 4, 5, 8, 12, 14])
def test_every_opencv_distortion_length_is_accepted(terms):
    """The coefficient counts OpenCV understands are all valid."""
    camera = PinholeCamera(640, 480, 500.0, 500.0, 320.0, 240.0, (0.01,) * terms)
    assert len(camera.distortion) == terms
    assert camera.has_distortion == (terms > 0)


def test_matrix_and_dict_round_trip():
    """from_matrix/K and to_dict/from_dict reproduce the same camera."""
    K = np.array([[500.0, 0.0, 321.5], [0.0, 510.0, 238.0], [0.0, 0.0, 1.0]])
    camera = PinholeCamera.from_matrix(K, 640, 480, DISTORTION)
    np.testing.assert_array_equal(camera.K, K)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (500.0, 510.0, 321.5, 238.0)
    assert PinholeCamera.from_dict(camera.to_dict()) == camera
    assert camera.undistorted().distortion == () and not camera.undistorted().has_distortion


def test_undistort_inverts_opencv_projection():
    """Pixels distorted by cv2.projectPoints undistort to the ideal pinhole projection."""
    camera = PinholeCamera(640, 480, 500.0, 510.0, 322.5, 237.0, DISTORTION)
    rng = np.random.default_rng(0)
    # Points filling most of the image (up to about 30 deg off axis).
    points = np.column_stack([rng.uniform(-0.55, 0.55, 300), rng.uniform(-0.4, 0.4, 300),
                              np.ones(300)]) * rng.uniform(1.0, 5.0, (300, 1))
    distorted, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), camera.K,
                                     np.array(DISTORTION))
    distorted = distorted.reshape(-1, 2)
    ideal = camera.project(points)
    assert np.abs(distorted - ideal).max() > 10.0  # the distortion is not negligible
    np.testing.assert_allclose(camera.undistort_points(distorted), ideal, atol=0.05)
    # A camera without distortion leaves pixels alone (and returns a copy).
    pinhole = camera.undistorted()
    result = pinhole.undistort_points(distorted)
    np.testing.assert_array_equal(result, distorted)
    assert result is not distorted
    assert camera.undistort_points(np.zeros((0, 2))).shape == (0, 2)


@pytest.mark.parametrize('distortion', [(-0.3, 0.1, 0.0, 0.0), (-0.4, 0.2, 0.0, 0.0, -0.05),
                                        (0.5, 0.3, 0.001, 0.001, 0.1, 0.8, 0.4, 0.2)])
def test_undistortion_converges_for_strong_distortion(distortion):
    """
    Undistorted pixels re-distort to the input within 1e-3 px, even for strong lenses.

    OpenCV's default of 5 iterations left up to 0.13 px (k1=-0.3) and 0.73 px (k1=-0.4).
    """
    camera = PinholeCamera(640, 480, 500.0, 500.0, 320.0, 240.0, distortion)
    grid = np.stack(np.meshgrid(np.linspace(-0.75, 0.75, 21), np.linspace(-0.55, 0.55, 21)),
                    -1).reshape(-1, 2)

    def distort(normalized):
        rays = np.column_stack([normalized, np.ones(len(normalized))])
        pixels, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), camera.K,
                                      np.array(distortion))
        return pixels.reshape(-1, 2)

    distorted = distort(grid)
    inside = np.all((distorted >= 0) & (distorted < [640, 480]), axis=1)
    distorted = distorted[inside]
    assert len(distorted) > 200
    undistorted = camera.undistort_points(distorted)
    np.testing.assert_allclose(undistorted, grid[inside] * 500.0 + [320.0, 240.0], atol=1e-3)
    again = distort((undistorted - [320.0, 240.0]) / 500.0)
    assert np.abs(again - distorted).max() < 1e-3


def test_project_and_backproject_are_inverse():
    """Back-projecting a projected point with its depth returns the point."""
    camera = PinholeCamera(640, 480, 500.0, 510.0, 322.5, 237.0)
    rng = np.random.default_rng(1)
    points = rng.uniform([-1.0, -1.0, 0.5], [1.0, 1.0, 6.0], (50, 3))
    np.testing.assert_allclose(camera.backproject(camera.project(points), points[:, 2]),
                               points, atol=1e-12)
    # The principal point is where the optical axis lands.
    np.testing.assert_allclose(camera.project(np.array([[0.0, 0.0, 2.0]])), [[322.5, 237.0]])


def test_scaled_camera_follows_the_pixel_centre_convention():
    """Halving the image maps every pixel u to (u + 0.5) / 2 - 0.5, as cv2.resize does."""
    camera = PinholeCamera(640, 480, 500.0, 510.0, 322.5, 237.0, DISTORTION)
    half = camera.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    assert half.distortion == camera.distortion
    points = np.random.default_rng(2).uniform([-1.0, -1.0, 1.0], [1.0, 1.0, 4.0], (20, 3))
    np.testing.assert_allclose(half.project(points),
                               (camera.project(points) + 0.5) * 0.5 - 0.5, atol=1e-9)
    assert camera.scaled(0.001).width == 1  # never a zero-size camera


def test_sift_on_a_real_frame(kitchen_image):
    """SIFT finds hundreds of keypoints inside the image with 128-byte descriptors."""
    features = create_extractor(FeatureConfig(kind='sift', max_keypoints=1024)).extract(
        kitchen_image)
    assert 300 <= len(features) <= 1024
    assert features.descriptors.shape == (len(features), 128)
    assert features.descriptors.dtype == np.uint8 and features.kind == 'sift'
    assert features.keypoints.shape == (len(features), 2)
    assert np.all((features.keypoints >= -0.5) & (features.keypoints < [640, 480]))
    assert np.all(features.scales > 0)


def test_orb_on_a_real_frame_and_keypoint_cap(kitchen_image):
    """ORB gives 32-byte descriptors; max_keypoints caps both extractors exactly."""
    orb = create_extractor(FeatureConfig(kind='orb', max_keypoints=500)).extract(kitchen_image)
    assert 300 <= len(orb) <= 500
    assert orb.descriptors.shape == (len(orb), 32) and orb.kind == 'orb'
    capped = create_extractor(FeatureConfig(kind='sift', max_keypoints=100)).extract(
        kitchen_image)
    assert len(capped) == 100
    subset = capped.subset(np.arange(10))
    assert len(subset) == 10 and subset.descriptors.shape == (10, 128)


def test_downscaled_detection_reports_full_resolution_pixels(kitchen_image):
    """
    Detecting on a downscaled copy returns keypoints in the input image's pixels.

    A 2x nearest-neighbour upscale of an image shrinks back (INTER_AREA) to that exact image,
    so detection with max_image_side must equal detection on the small image mapped by
    u -> 2 (u + 0.5) - 0.5, bit for bit.
    """
    gray = cv2.cvtColor(kitchen_image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (320, 240), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (640, 480), interpolation=cv2.INTER_NEAREST)
    on_big = create_extractor(FeatureConfig(max_image_side=320)).extract(big)
    on_small = create_extractor(FeatureConfig()).extract(small)
    assert len(on_big) == len(on_small) > 100
    np.testing.assert_allclose(on_big.keypoints, (on_small.keypoints + 0.5) * 2.0 - 0.5,
                               atol=1e-4)
    np.testing.assert_allclose(on_big.scales, on_small.scales * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(on_big.descriptors, on_small.descriptors)


def test_downscaled_detection_lands_on_full_resolution_keypoints(kitchen_image):
    """On a real frame, most keypoints found at half size sit within 2 px of full-size ones."""
    half = create_extractor(FeatureConfig(max_image_side=320)).extract(kitchen_image)
    full = create_extractor(FeatureConfig(max_keypoints=4000)).extract(kitchen_image)
    distance = np.linalg.norm(half.keypoints[:, None] - full.keypoints[None], axis=2).min(1)
    assert np.median(distance) < 1.0
    assert np.mean(distance < 2.0) > 0.7


@pytest.mark.parametrize('kind, width', [('sift', 128), ('orb', 32)])
def test_textureless_images_give_no_keypoints(kind, width):
    """A constant image is valid input but has no keypoints (empty arrays of the right width)."""
    for value in (0, 128):
        features = create_extractor(FeatureConfig(kind=kind)).extract(
            np.full((480, 640, 3), value, np.uint8))
        assert len(features) == 0
        assert features.descriptors.shape == (0, width)
        assert features.keypoints.shape == (0, 2) and features.scales.shape == (0,)


@pytest.mark.parametrize('image, message', [
    (None, 'numpy array'),
    ([[1, 2], [3, 4]], 'numpy array'),
    (np.zeros((0, 0), np.uint8), 'empty'),
    (np.zeros((480, 640, 0), np.uint8), 'empty'),
    (np.zeros(640, np.uint8), 'shape'),
    (np.zeros((2, 480, 640, 3), np.uint8), 'shape'),
    (np.zeros((480, 640, 2), np.uint8), 'channel'),
    (np.zeros((8, 640), np.uint8), 'too small'),
    (np.full((480, 640), NAN, np.float32), 'NaN'),
    (np.full((480, 640), np.inf, np.float64), 'NaN or infinite'),
    (np.zeros((480, 640), np.int32), 'dtype'),
    (np.zeros((480, 640), bool), 'dtype'),
])
def test_bad_images_raise_image_error(image, message):
    """Empty, None, 1-D/4-D, odd channels, tiny, non-finite or odd-dtype images -> ImageError."""
    with pytest.raises(ImageError, match=message):
        create_extractor(FeatureConfig()).extract(image)
    assert issubclass(ImageError, ValueError)


def test_to_gray_handles_depths_and_channel_layouts():
    """uint16 scales to its own range, floats in [0, 1] or [0, 255] map to 8 bits, BGRA works."""
    ramp = np.tile(np.arange(64, dtype=np.uint16) * 1000, (32, 1))   # 0 .. 63000
    gray = to_gray_uint8(ramp)
    assert gray.dtype == np.uint8 and gray.shape == (32, 64)
    assert gray.max() == 255 and gray.min() == 0
    assert gray[0, 32] == int(32000 * 255 / 63000)
    assert to_gray_uint8(np.zeros((32, 32), np.uint16)).max() == 0  # no division by zero
    unit = np.full((32, 32), 0.5, np.float32)
    assert to_gray_uint8(unit)[0, 0] == 127
    assert to_gray_uint8(unit * 200.0)[0, 0] == 100
    bgr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    bgra = np.dstack([bgr, np.full((32, 32), 255, np.uint8)])
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(to_gray_uint8(bgr), expected)
    np.testing.assert_array_equal(to_gray_uint8(bgra), expected)
    single = to_gray_uint8(bgr[:, :, :1])
    assert single.shape == (32, 32)
    np.testing.assert_array_equal(single, bgr[:, :, 0])


def test_16_bit_alpha_does_not_set_the_colour_scale():
    """A 12-bit BGRA16 image with opaque alpha (65535) keeps its contrast: alpha is dropped."""
    bgr = np.random.default_rng(4).integers(0, 4096, (32, 32, 3)).astype(np.uint16)
    bgra = np.dstack([bgr, np.full((32, 32), 65535, np.uint16)])
    scaled = uint16_to_uint8(bgra)
    assert scaled.shape == (32, 32, 3)
    np.testing.assert_array_equal(scaled, uint16_to_uint8(bgr))
    gray = to_gray_uint8(bgra)
    np.testing.assert_array_equal(gray, to_gray_uint8(bgr))
    assert gray.max() > 200


def test_descriptor_vectors_are_unit_length_with_meaningful_dot_products():
    """Descriptor vectors: unit-norm RootSIFT; ORB dot products equal 1 - 2 * Hamming / 256."""
    rng = np.random.default_rng(3)
    sift = rng.integers(0, 256, (50, 128), dtype=np.uint8)
    vectors = descriptor_vectors(sift, 'sift')
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert np.all(vectors >= 0)
    # Hellinger kernel: v_a . v_b = sum sqrt(p_a p_b) for the normalised histograms p.
    p = sift / sift.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[0] @ vectors[1], np.sqrt(p[0] * p[1]).sum(), rtol=1e-5)
    orb = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    bits = descriptor_vectors(orb, 'orb')
    # float32 like SIFT's: the decoder and the code optimiser mix the two without casts.
    assert bits.shape == (50, 256) and bits.dtype == vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bits, axis=1), 1.0, rtol=1e-5)
    hamming = np.unpackbits(orb[0] ^ orb[1]).sum()
    assert bits[0] @ bits[1] == pytest.approx(1.0 - 2.0 * hamming / 256.0, abs=1e-6)
    with pytest.raises(ValueError, match='unknown feature kind'):
        descriptor_vectors(orb, 'surf')


@pytest.mark.parametrize('side', [1, 8, 15])
def test_detection_sides_too_small_for_keypoints_are_refused(side):
    """
    A max_image_side of 1-15 is refused by name, not left to give no keypoints or a cv2.error.

    0 (full resolution) and 16 are fine, and the extractors run on an image shrunk to 16.
    """
    with pytest.raises(ValueError, match='max_image_side must be 0 .* or >= 16, got'):
        FeatureConfig(max_image_side=side)
    image = np.random.default_rng(side).integers(0, 256, (480, 640), dtype=np.uint8)
    for kind in ('sift', 'orb'):
        assert FeatureConfig(kind=kind, max_image_side=0).max_image_side == 0
        features = create_extractor(FeatureConfig(kind=kind, max_image_side=16)).extract(image)
        assert features.keypoints.shape[1] == 2


def test_unknown_extractor_and_config_round_trip():
    """Unknown feature kinds are refused by name; configs survive to_dict/from_dict."""
    with pytest.raises(ValueError, match="unknown feature kind 'surf'"):
        create_extractor(FeatureConfig(kind='surf'))
    config = FeatureConfig(kind='orb', max_keypoints=321, max_image_side=800)
    data = config.to_dict()
    data['added_in_a_newer_version'] = 1
    assert FeatureConfig.from_dict(data) == config


def test_depth_must_be_registered_to_the_image(kitchen_image):
    """Depth of another size is an error: pixels are looked up one to one."""
    extractor = create_extractor(FeatureConfig(kind='orb', max_keypoints=200))
    camera = PinholeCamera(640, 480, 525.0, 525.0, 320.0, 240.0)
    depth = np.full((480, 640), 2.0, np.float32)
    pixels, _, points = observe_frame(extractor, kitchen_image, camera, np.eye(4), depth)
    assert len(pixels) > 50 and np.isfinite(points).all(axis=1).mean() > 0.9
    with pytest.raises(ValueError, match='depth is 320x240 but the image is 640x480'):
        observe_frame(extractor, kitchen_image, camera, np.eye(4), depth[::2, ::2])


class FixedKeypoints:
    """Extractor stand-in that returns the given raw keypoints, whatever the image."""

    def __init__(self, keypoints):
        self.keypoints = np.asarray(keypoints, np.float32)

    def extract(self, image):
        """Return the fixed keypoints with empty SIFT descriptors."""
        count = len(self.keypoints)
        return Features(self.keypoints, np.zeros((count, 128), np.uint8),
                        np.ones(count, np.float32), 'sift')


def test_depth_is_looked_up_at_the_raw_keypoint_pixels():
    """
    Registered depth follows the raw (distorted) image: it is read at the raw keypoints.

    With k1=-0.3 the raw pixel (80, 80) undistorts to about (51, 61), left of the step at
    u=60; reading depth there gave the 1 m wall instead of the 4 m seen at the keypoint.
    """
    camera = PinholeCamera(640, 480, 500.0, 500.0, 320.0, 240.0, (-0.3, 0.1, 0.0, 0.0))
    depth = np.full((480, 640), 4.0, np.float32)
    depth[:, :60] = 1.0
    raw = np.array([[80.0, 80.0], [20.0, 20.0], [320.0, 240.0]])
    assert camera.undistort_points(raw)[0, 0] < 58   # the bug's lookup fell on the wall
    pixels, _, points = observe_frame(FixedKeypoints(raw), np.zeros((480, 640, 3), np.uint8),
                                      camera, np.eye(4), depth)
    np.testing.assert_allclose(points[:, 2], [4.0, 1.0, 4.0])
    # Lifted along the undistorted rays, not the raw ones.
    np.testing.assert_allclose(pixels, camera.undistort_points(raw), atol=1e-4)
    np.testing.assert_allclose(points, camera.backproject(pixels.astype(float), points[:, 2]),
                               rtol=1e-6)


def test_pixels_outside_the_depth_image_have_no_depth():
    """Pixels beyond the border get NaN, not the border's depth; border pixels still count."""
    depth = np.full((48, 64), 2.0, np.float32)
    pixels = np.array([[-5.0, 10.0], [70.0, 10.0], [10.0, -3.0], [10.0, 50.0], [NAN, 1.0],
                       [0.0, 0.0], [63.0, 47.0], [10.0, 10.0]])
    z = depth_at(depth, pixels)
    assert np.isnan(z[:5]).all()
    np.testing.assert_array_equal(z[5:], [2.0, 2.0, 2.0])
