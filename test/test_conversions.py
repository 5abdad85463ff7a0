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
Message conversions without cv_bridge: images, calibration, poses, stamps, covariances.

Covers the pixel decoding of every supported encoding against OpenCV's own decoding of a real
7-Scenes frame, the errors for malformed messages, CameraInfo to PinholeCamera, and the
propagation of the pose covariance over the camera-to-base lever arm.
"""

import array
import math
import struct
import zlib

import cv2
from geometry_msgs.msg import Pose
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.geometry import invert_transform, make_transform, \
    pose_covariance_with_lever_arm
from neumap_ros.ros.image_conversion import camera_info_to_camera, camera_to_camera_info, \
    CameraInfoError, check_size, compressed_to_numpy, image_to_numpy, ImageConversionError, \
    numpy_to_image
from neumap_ros.ros.msg_conversions import covariance_from_msg, covariance_to_msg, \
    make_pose_with_covariance, make_transform_stamped, matrix_to_pose, ns_to_stamp, \
    pose_to_matrix, stamp_to_ns, transform_to_matrix


@pytest.fixture(scope='module')
def bgr(shared_data_dir):
    """Return a real 640x480 BGR frame."""
    path = shared_data_dir / '7scenes-redkitchen' / 'frame-000000.color.jpg'
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert pixels is not None
    return pixels


def raw_image(pixels, encoding, step=None, bigendian=False):
    """Build an Image message by hand (independently of numpy_to_image)."""
    msg = Image()
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    row = pixels.reshape(msg.height, -1).view(np.uint8)
    step = step or row.shape[1]
    padded = np.zeros((msg.height, step), np.uint8)
    padded[:, :row.shape[1]] = row
    msg.step = step
    msg.data = array.array('B', padded.tobytes())
    return msg


@pytest.mark.parametrize('encoding,convert', [
    ('bgr8', None), ('rgb8', cv2.COLOR_BGR2RGB), ('bgra8', cv2.COLOR_BGR2BGRA),
    ('rgba8', cv2.COLOR_BGR2RGBA), ('mono8', cv2.COLOR_BGR2GRAY), ('8UC3', None)])
def test_8bit_encodings_decode_to_bgr_or_gray(bgr, encoding, convert):
    """Every 8-bit encoding comes back as the original BGR (or gray) pixels, padding ignored."""
    pixels = cv2.cvtColor(bgr, convert) if convert is not None else bgr
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    decoded = image_to_numpy(raw_image(pixels, encoding, step=640 * channels + 12))
    expected = pixels if encoding == 'mono8' else bgr
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
@pytest.mark.parametrize('bigendian', [False, True])
def test_16bit_encodings_respect_byte_order(encoding, bigendian):
    """16-bit images decode to native uint16 whatever the message byte order."""
    values = (np.arange(480 * 640, dtype=np.uint32) % 65536).astype(np.uint16).reshape(480, 640)
    wire = values.astype('>u2' if bigendian else '<u2')
    decoded = image_to_numpy(raw_image(wire, encoding, bigendian=bigendian))
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, values)


def test_malformed_images_raise_clear_errors(bgr):
    """Unsupported encodings and inconsistent sizes are errors that say what is wrong."""
    msg = raw_image(bgr, 'yuv422')
    with pytest.raises(ImageConversionError, match='unsupported image encoding "yuv422"'):
        image_to_numpy(msg)
    msg = raw_image(bgr, 'bgr8')
    msg.step = 100
    with pytest.raises(ImageConversionError, match='step 100 is smaller'):
        image_to_numpy(msg)
    msg = raw_image(bgr, 'bgr8')
    msg.data = msg.data[:-10]
    with pytest.raises(ImageConversionError, match='holds 921590 bytes'):
        image_to_numpy(msg)
    with pytest.raises(ImageConversionError, match='empty image'):
        image_to_numpy(Image(encoding='bgr8'))
    with pytest.raises(ImageConversionError, match='depth image'):
        image_to_numpy(raw_image(np.zeros((4, 4), np.float32), '32FC1'))


def test_compressed_images(bgr):
    """JPEG and PNG CompressedImage decode; garbage and compressed depth are errors."""
    for image_format, extension in (('jpeg', '.jpg'), ('png', '.png')):
        ok, data = cv2.imencode(extension, bgr)
        msg = CompressedImage(format=image_format, data=array.array('B', data.tobytes()))
        decoded = compressed_to_numpy(msg)
        assert decoded.shape == bgr.shape
        assert cv2.PSNR(decoded, bgr) > 30   # the same picture, colour order included
        if image_format == 'png':
            np.testing.assert_array_equal(decoded, bgr)
    with pytest.raises(ImageConversionError, match='cannot decode'):
        compressed_to_numpy(CompressedImage(format='jpeg', data=array.array('B', b'not jpeg')))
    with pytest.raises(ImageConversionError, match='compressed depth'):
        compressed_to_numpy(CompressedImage(format='16UC1; compressedDepth png',
                                            data=array.array('B', b'x')))
    # image_transport names the source encoding first: a Bayer mosaic or 16-bit colour PNG
    # would decode as a grey or uint16 picture, so the source is held to the raw rules.
    ok, data = cv2.imencode('.png', cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    for source, message in (('bayer_rggb8', 'debayer'), ('rgb16', 'source encoding "rgb16"')):
        with pytest.raises(ImageConversionError, match=message):
            compressed_to_numpy(CompressedImage(format=f'{source}; png compressed ',
                                                data=array.array('B', data.tobytes())))
    mono = compressed_to_numpy(CompressedImage(format='mono8; png compressed ',
                                               data=array.array('B', data.tobytes())))
    assert mono.shape == (480, 640)


def png_claiming(width: int, height: int) -> bytes:
    """Return a tiny, well-formed PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind, body):
        return (struct.pack('>I', len(body)) + kind + body
                + struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff))
    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
            + chunk(b'IDAT', zlib.compress(b'\0' * 100)) + chunk(b'IEND', b''))


def test_a_damaged_compressed_header_is_a_conversion_error():
    """A header claiming billions of pixels (OpenCV raises, not returns None) is one bad image."""
    msg = CompressedImage(format='png', data=array.array('B', png_claiming(60000, 60000)))
    with pytest.raises(ImageConversionError, match='cannot decode compressed image'):
        compressed_to_numpy(msg)


def test_16bit_depth_saturation_is_no_reading():
    """65535 mm (a driver's "no return") reads as unknown depth, as 0 does."""
    from neumap_ros.core.sensor_data import decode_depth
    millimetres = np.array([[0, 1500], [65535, 65534]], np.uint16)
    depth = decode_depth(2, 2, '16UC1', 4, millimetres.tobytes())
    np.testing.assert_allclose(depth, [[0.0, 1.5], [0.0, 65.534]], rtol=1e-6)


def test_numpy_to_image_round_trip(bgr):
    """numpy_to_image and image_to_numpy are inverse for bgr8, rgb8 and mono8."""
    for encoding in ('bgr8', 'rgb8'):
        msg = numpy_to_image(bgr, encoding)
        assert msg.encoding == encoding and msg.step == 640 * 3
        np.testing.assert_array_equal(image_to_numpy(msg), bgr)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(gray, 'mono8')), gray)


def info(width=640, height=480, k=(525.0, 0, 320.0, 0, 525.0, 240.0, 0, 0, 1),
         model='plumb_bob', d=(0.0,) * 5):
    """Return a CameraInfo message."""
    msg = CameraInfo(width=width, height=height, distortion_model=model)
    msg.k = [float(v) for v in k]
    msg.d = [float(v) for v in d]
    msg.p = [525.0, 0.0, 320.0, 0.0, 0.0, 525.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def test_camera_info_to_camera():
    """K, distortion models, binning, ROI and rectified input become the right camera."""
    camera = camera_info_to_camera(info())
    assert camera == PinholeCamera(640, 480, 525.0, 525.0, 320.0, 240.0)
    distorted = camera_info_to_camera(info(d=(0.1, -0.2, 0.001, 0.002, 0.05)))
    assert distorted.distortion == (0.1, -0.2, 0.001, 0.002, 0.05)
    rational = camera_info_to_camera(info(model='rational_polynomial', d=(0.1,) * 8))
    assert len(rational.distortion) == 8
    rectified = camera_info_to_camera(info(d=(0.1, -0.2, 0, 0, 0)), rectified=True)
    assert rectified.distortion == () and rectified.fx == 525.0
    # Rectified input reads P (here unlike K) and ignores D, whatever it holds.
    stereo = info(d=(math.nan,) * 5)
    stereo.p = [500.0, 0.0, 310.0, -30.0, 0.0, 505.0, 235.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    camera = camera_info_to_camera(stereo, rectified=True)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (500.0, 505.0, 310.0, 235.0)
    assert camera.distortion == ()
    empty_p = info()
    empty_p.p = [0.0] * 12
    with pytest.raises(CameraInfoError, match='P is all zero'):
        camera_info_to_camera(empty_p, rectified=True)
    binned = info()
    binned.binning_x = binned.binning_y = 2
    binned.roi.x_offset, binned.roi.y_offset, binned.roi.width, binned.roi.height = \
        40, 20, 400, 300
    camera = camera_info_to_camera(binned)
    assert (camera.width, camera.height) == (200, 150)
    assert (camera.cx, camera.cy, camera.fx) == (140.0, 110.0, 262.5)
    round_trip = camera_info_to_camera(camera_to_camera_info(distorted))
    assert round_trip == distorted
    # Zero coefficients of a pinhole model, or none at all, mean no distortion.
    no_distortion = (('plumb_bob', ()), ('', ()), ('', (0.0,) * 5),
                     ('rational_polynomial', (0.0,) * 8))
    for model, d in no_distortion:
        assert camera_info_to_camera(info(model=model, d=d)).distortion == ()


@pytest.mark.parametrize('msg,message', [
    (info(k=(0.0,) * 9), 'not positive'),
    (info(k=(math.nan, 0, 320, 0, 525, 240, 0, 0, 1)), 'NaN'),
    (info(width=0, height=0), 'no image size'),
    (info(model='equidistant', d=(0.1, 0.1, 0.1, 0.1)), 'fisheye'),
    (info(model='plumb_bob', d=(0.1, 0.2)), 'needs 5 coefficients'),
    (info(model='kannala', d=(0.1,) * 4), 'unsupported distortion model'),
    # A fisheye maps r = f * theta even with zero coefficients: never a pinhole.
    (info(model='equidistant', d=(0.0,) * 4), 'fisheye'),
    (info(model='equidistant', d=()), 'fisheye'),
    (info(model='kannala_brandt', d=(0.0,) * 4), 'unsupported distortion model'),
    (info(model='', d=(0.1, 0.0, 0.0, 0.0, 0.0)), 'without a distortion model'),
    (info(k=(525.0, 50.0, 320.0, 0, 525.0, 240.0, 0, 0, 1)), r'skew \(entries \[1\]=50'),
    (info(k=(525.0, 0, 320.0, 0, 525.0, 240.0, 0, 0, 0)), r'\[8\]=0'),
])
def test_bad_camera_info_is_rejected(msg, message):
    """Uncalibrated or unsupported calibrations raise CameraInfoError naming the problem."""
    with pytest.raises(CameraInfoError, match=message):
        camera_info_to_camera(msg)


def test_size_check():
    """An image that does not match its calibration's size is an error."""
    camera = camera_info_to_camera(info())
    check_size(np.zeros((480, 640), np.uint8), camera)
    with pytest.raises(CameraInfoError, match='image is 320x240 but camera_info describes'):
        check_size(np.zeros((240, 320, 3), np.uint8), camera)


def test_pose_transform_and_stamp_conversions():
    """Poses, transforms, covariances and stamps survive the trip through messages."""
    T = make_transform(Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix(), [1.5, -2.0, 0.25])
    np.testing.assert_allclose(pose_to_matrix(matrix_to_pose(T)), T, atol=1e-12)
    stamp_ns = 1_700_000_123_456_789_012
    assert stamp_to_ns(ns_to_stamp(stamp_ns)) == stamp_ns
    # Time holds int32 seconds: beyond 2038 it saturates instead of wrapping to 1901.
    latest = ns_to_stamp(2 ** 31 * 10 ** 9 + 5)
    assert (latest.sec, latest.nanosec) == (2 ** 31 - 1, 999_999_999)
    assert stamp_to_ns(ns_to_stamp(-5)) == 0
    msg = make_transform_stamped(T, 'map', 'odom', stamp_ns)
    assert (msg.header.frame_id, msg.child_frame_id) == ('map', 'odom')
    np.testing.assert_allclose(transform_to_matrix(msg.transform), T, atol=1e-12)
    covariance = np.diag([1.0, 2, 3, 4, 5, 6]) * 1e-4
    covariance[0, 5] = covariance[5, 0] = 1e-5
    pose = make_pose_with_covariance(T, covariance, 'map', stamp_ns)
    np.testing.assert_array_equal(covariance_from_msg(pose.pose.covariance), covariance)
    assert len(covariance_to_msg(covariance)) == 36
    bad = Pose()
    bad.orientation.w = math.nan
    with pytest.raises(ValueError, match='NaN'):
        pose_to_matrix(bad)


def test_lever_arm_covariance_matches_sampling():
    """
    The propagated base_link covariance equals that of sampled perturbed camera poses.

    Camera poses are perturbed as the localizer's covariance defines (position plus a rotation
    about the world axes), turned into base poses through a fixed mount, and the spread of
    the base poses in the same parameters is compared with the analytic propagation.
    """
    rng = np.random.default_rng(0)
    T_world_camera = make_transform(Rotation.from_rotvec([0.4, 1.2, -0.3]).as_matrix(),
                                    [2.0, 1.0, 0.5])
    T_camera_base = invert_transform(make_transform(
        np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [0.25, 0.05, 0.6]))
    A = rng.normal(size=(6, 6)) * [0.01, 0.01, 0.01, 0.005, 0.005, 0.005]
    covariance = A @ A.T
    samples = rng.multivariate_normal(np.zeros(6), covariance, size=40000)
    T_world_base = T_world_camera @ T_camera_base
    rotations = Rotation.from_rotvec(samples[:, 3:]).as_matrix() @ T_world_camera[:3, :3]
    positions = T_world_camera[:3, 3] + samples[:, :3] + rotations @ T_camera_base[:3, 3]
    base_rotations = rotations @ T_camera_base[:3, :3]
    turned = Rotation.from_matrix(base_rotations @ T_world_base[:3, :3].T).as_rotvec()
    empirical = np.cov(np.hstack([positions - T_world_base[:3, 3], turned]).T)
    propagated = pose_covariance_with_lever_arm(T_world_camera, covariance, T_camera_base)
    np.testing.assert_allclose(propagated, empirical, atol=2e-6, rtol=0.05)
    # Yaw uncertainty alone moves the base sideways in proportion to the lever arm.
    yaw_only = np.diag([0.0, 0.0, 0.0, 0.0, 0.0, 1e-4])
    lever = T_world_camera[:3, :3] @ T_camera_base[:3, 3]
    base = pose_covariance_with_lever_arm(T_world_camera, yaw_only, T_camera_base)
    np.testing.assert_allclose(np.diag(base)[:2], 1e-4 * lever[[1, 0]] ** 2, rtol=1e-9)
    assert base[2, 2] == 0.0 and base[5, 5] == 1e-4
