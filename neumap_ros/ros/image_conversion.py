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
sensor_msgs images and calibration to numpy and PinholeCamera, without cv_bridge.

Supported raw encodings: mono8, 8UC1, bgr8, 8UC3, rgb8, bgra8, rgba8, mono16, 16UC1;
CompressedImage in JPEG or PNG. Colour comes back as BGR, which is what the engine expects.
Every failure raises ImageConversionError or CameraInfoError (both ValueError) with a message
fit for a diagnostic, so a node can report the bad message and keep running.
"""

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.sensor_data import camera_from_calibration, CameraInfoError, \
    decode_compressed, decode_image, encode_image, ENCODINGS, ImageConversionError

__all__ = ['CameraInfoError', 'ImageConversionError', 'SUPPORTED_ENCODINGS',
           'camera_info_to_camera', 'camera_to_camera_info', 'check_size',
           'compressed_to_numpy', 'image_to_numpy', 'numpy_to_image']

SUPPORTED_ENCODINGS = tuple(ENCODINGS)


def image_to_numpy(msg: Image) -> np.ndarray:
    """Return the pixels of a sensor_msgs/Image (BGR, or 2D for mono encodings)."""
    return decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                        msg.is_bigendian)


def compressed_to_numpy(msg: CompressedImage) -> np.ndarray:
    """Return the pixels of a JPEG or PNG sensor_msgs/CompressedImage (BGR or 2D)."""
    return decode_compressed(msg.format, msg.data)


def numpy_to_image(pixels: np.ndarray, encoding: str = 'bgr8', header=None) -> Image:
    """Return a sensor_msgs/Image holding ``pixels`` (BGR or 2D) in ``encoding``."""
    height, width, encoding, step, data = encode_image(pixels, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding, msg.step = height, width, encoding, step
    msg.is_bigendian = 0
    # array('B') is taken as is; bytes would be checked element by element by rclpy.
    msg.data = array.array('B', data)
    return msg


def camera_info_to_camera(msg: CameraInfo, rectified: bool = False) -> PinholeCamera:
    """
    Return the PinholeCamera of a sensor_msgs/CameraInfo.

    Rejects zero or NaN intrinsics, unknown distortion models and ROIs outside the image.
    With ``rectified`` the projection matrix P is used (for image_rect topics).
    """
    roi = msg.roi
    return camera_from_calibration(
        msg.width, msg.height, msg.distortion_model, msg.d, msg.k, msg.p, msg.binning_x,
        msg.binning_y, (roi.x_offset, roi.y_offset, roi.height, roi.width), rectified)


def camera_to_camera_info(camera: PinholeCamera, header=None) -> CameraInfo:
    """Return a sensor_msgs/CameraInfo describing ``camera`` (plumb_bob or rational)."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(camera.width), int(camera.height)
    distortion = list(camera.distortion) or [0.0] * 5
    msg.distortion_model = 'rational_polynomial' if len(distortion) >= 8 else 'plumb_bob'
    msg.d = [float(v) for v in distortion]
    msg.k = [float(v) for v in camera.K.reshape(-1)]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(v) for v in np.hstack([camera.K, np.zeros((3, 1))]).reshape(-1)]
    return msg


def check_size(pixels: np.ndarray, camera: PinholeCamera) -> None:
    """Raise CameraInfoError when an image and its calibration disagree on the size."""
    height, width = pixels.shape[:2]
    if (width, height) != (camera.width, camera.height):
        raise CameraInfoError(f'image is {width}x{height} but camera_info describes '
                              f'{camera.width}x{camera.height}')
