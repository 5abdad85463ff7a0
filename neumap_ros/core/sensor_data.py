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
Pixels and calibration as sensor_msgs carries them, decoded without ROS (no cv_bridge).

The functions take the fields of sensor_msgs/Image, CompressedImage and CameraInfo as plain
values, so the nodes (rclpy messages) and the bag tools (rosbags messages) share one
implementation. Colour images come back in OpenCV's BGR order, mono images as 2D arrays
(uint8, or uint16 for 16-bit encodings). Anything that cannot be decoded raises an error that
says which field is wrong; nothing here ever returns a silently garbled image.
"""

from typing import Sequence, Tuple

import cv2
import numpy as np

from neumap_ros.core.camera import CameraError, PinholeCamera
from neumap_ros.core.features import ImageError


class ImageConversionError(ImageError):
    """An image message whose pixels cannot be decoded (encoding, step or size wrong)."""


class CameraInfoError(CameraError):
    """A CameraInfo that does not describe a usable calibrated pinhole camera."""


# encoding -> (dtype, channels, cv2 conversion to BGR or None)
ENCODINGS = {
    'mono8': (np.uint8, 1, None),
    '8UC1': (np.uint8, 1, None),
    'bgr8': (np.uint8, 3, None),
    '8UC3': (np.uint8, 3, None),
    'rgb8': (np.uint8, 3, cv2.COLOR_RGB2BGR),
    'bgra8': (np.uint8, 4, cv2.COLOR_BGRA2BGR),
    'rgba8': (np.uint8, 4, cv2.COLOR_RGBA2BGR),
    'mono16': (np.uint16, 1, None),
    '16UC1': (np.uint16, 1, None),
}

_HINTS = {
    'bayer': 'debayer it first (image_proc)',
    '32FC1': 'this looks like a depth image, not a camera image',
    'yuv': 'convert it to bgr8 or mono8 first',
}


def _hint(encoding: str) -> str:
    hint = next((h for key, h in _HINTS.items() if key.lower() in encoding.lower()), None)
    return f': {hint}' if hint else ''


def _byte_buffer(data) -> np.ndarray:
    # rclpy gives array('B'), rosbags a uint8 ndarray, tests may pass bytes or lists.
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def decode_image(height: int, width: int, encoding: str, step: int, data,
                 is_bigendian: int = 0) -> np.ndarray:
    """
    Return the pixels of a sensor_msgs/Image as a numpy array (a copy).

    Colour encodings become BGR (alpha dropped); mono8/8UC1 a 2D uint8 array; mono16/16UC1 a
    2D uint16 array in native byte order. Raises ImageConversionError for unsupported
    encodings or when height, width, step and the data length disagree.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(
            f'unsupported image encoding "{encoding}" (supported: {", ".join(ENCODINGS)})'
            + _hint(encoding))
    dtype, channels, conversion = ENCODINGS[encoding]
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'empty image ({width}x{height})')
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f'step {step} is smaller than width {width} x {channels} channels x {itemsize} '
            f'bytes = {row_bytes} for encoding {encoding}')
    buffer = _byte_buffer(data)
    if buffer.size != step * height:
        raise ImageConversionError(
            f'image data holds {buffer.size} bytes but step x height = {step} x {height} = '
            f'{step * height}')
    rows = buffer.reshape(height, step)[:, :row_bytes]
    if itemsize > 1:
        order = '>' if is_bigendian else '<'
        pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
        pixels = pixels.astype(dtype)
    else:
        pixels = rows
    pixels = pixels.reshape(height, width, channels) if channels > 1 else \
        pixels.reshape(height, width)
    if conversion is not None:
        return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)
    return np.array(pixels, copy=True, order='C')


def decode_depth(height: int, width: int, encoding: str, step: int, data,
                 is_bigendian: int = 0) -> np.ndarray:
    """
    Return a depth image in metres (float32, 0 where unknown).

    16UC1/mono16 hold millimetres (REP-118), 32FC1 metres with NaN for unknown.
    """
    if encoding == '32FC1':
        height, width, step = int(height), int(width), int(step)
        buffer = _byte_buffer(data)
        if step < 4 * width or buffer.size != step * height:
            raise ImageConversionError(f'32FC1 depth: step {step} and {buffer.size} bytes do '
                                       f'not fit {width}x{height}')
        rows = np.ascontiguousarray(buffer.reshape(height, step)[:, :4 * width])
        depth = rows.view('>f4' if is_bigendian else '<f4').astype(np.float32)
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
        return depth
    if encoding not in ('16UC1', 'mono16'):
        raise ImageConversionError(f'depth encoding "{encoding}" is not 16UC1, mono16 or 32FC1')
    millimetres = decode_image(height, width, encoding, step, data, is_bigendian)
    depth = millimetres.astype(np.float32) / 1000.0
    depth[millimetres == np.iinfo(np.uint16).max] = 0.0   # "no reading", as in 7-Scenes
    return depth


def decode_compressed(image_format: str, data) -> np.ndarray:
    """
    Decode a sensor_msgs/CompressedImage (JPEG or PNG) to BGR or mono pixels.

    Raises ImageConversionError for compressed depth and for data OpenCV cannot decode.
    """
    if 'compresseddepth' in (image_format or '').lower():
        raise ImageConversionError(f'compressed depth ("{image_format}") is not a camera image')
    # image_transport writes "<source encoding>; <codec> compressed <...>". The codec hides
    # the source, so a Bayer mosaic or a 16-bit colour image would decode as something else:
    # hold the source to the same rules as a raw image.
    source = (image_format or '').split(';')[0].strip() if ';' in (image_format or '') else ''
    if source and source not in ENCODINGS:
        raise ImageConversionError(
            f'compressed image of source encoding "{source}" is not supported '
            f'(supported: {", ".join(ENCODINGS)})' + _hint(source))
    buffer = _byte_buffer(data)
    if buffer.size == 0:
        raise ImageConversionError('compressed image holds no data')
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:   # e.g. a damaged header claiming billions of pixels
        raise ImageConversionError(f'cannot decode compressed image (format "{image_format}", '
                                   f'{buffer.size} bytes): {error.err}') from None
    if pixels is None:
        raise ImageConversionError(
            f'cannot decode compressed image (format "{image_format}", {buffer.size} bytes)')
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    return pixels


def encode_image(pixels: np.ndarray, encoding: str) -> Tuple[int, int, str, int, bytes]:
    """
    Return (height, width, encoding, step, data) for a sensor_msgs/Image of ``pixels``.

    ``pixels`` are BGR (colour encodings) or 2D (mono); ``encoding`` is one of ENCODINGS
    except the alpha ones.
    """
    if encoding not in ENCODINGS or ENCODINGS[encoding][1] == 4:
        raise ImageConversionError(f'cannot encode images as "{encoding}"')
    dtype, channels, _ = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    if channels == 3:
        if pixels.ndim == 2:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        if encoding == 'rgb8':
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    pixels = np.ascontiguousarray(pixels.astype(dtype, copy=False))
    height, width = pixels.shape[:2]
    return height, width, encoding, width * channels * pixels.itemsize, pixels.tobytes()


def camera_from_calibration(width: int, height: int, distortion_model: str, d: Sequence[float],
                            k: Sequence[float], p: Sequence[float] = (), binning_x: int = 0,
                            binning_y: int = 0, roi: Sequence[int] = (0, 0, 0, 0),
                            rectified: bool = False) -> PinholeCamera:
    """
    Return the PinholeCamera of the image a sensor_msgs/CameraInfo describes.

    ``roi`` is (x_offset, y_offset, height, width) as in sensor_msgs/RegionOfInterest; binning
    and ROI shrink the image and shift the principal point as image_geometry does. With
    ``rectified`` the image is taken to be rectified (image_rect): the projection matrix P is
    used and distortion is ignored. Supported distortion models: plumb_bob (4 or 5 terms) and
    rational_polynomial (8 terms); equidistant (fisheye) is rejected. Raises CameraInfoError.
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise CameraInfoError(f'camera_info has no image size ({width}x{height}): is the '
                              f'camera calibrated?')
    values = np.asarray(p if rectified else k, dtype=float).reshape(-1)
    if values.size != (12 if rectified else 9):
        raise CameraInfoError(f'camera_info {"P" if rectified else "K"} has {values.size} '
                              f'values')
    if not np.all(np.isfinite(values)):
        raise CameraInfoError(f'camera_info {"P" if rectified else "K"} has NaN or infinite '
                              f'values')
    if rectified:
        fx, fy, cx, cy = values[0], values[5], values[2], values[6]
        # Entries a pinhole projection has as 0 (skew, last row) or 1; P[3] and P[7] (stereo
        # baseline terms) may be anything.
        fixed = {1: 0.0, 4: 0.0, 8: 0.0, 9: 0.0, 10: 1.0, 11: 0.0}
    else:
        fx, fy, cx, cy = values[0], values[4], values[2], values[5]
        fixed = {1: 0.0, 3: 0.0, 6: 0.0, 7: 0.0, 8: 1.0}
    if rectified and not np.any(values):
        raise CameraInfoError('camera_info P is all zero: rectified_input needs the projection '
                              'matrix of a calibrated camera')
    if fx <= 0 or fy <= 0:
        raise CameraInfoError(f'camera_info focal lengths are not positive (fx={fx}, fy={fy}): '
                              f'the camera is uncalibrated')
    wrong = {i: values[i] for i, expected in fixed.items()
             if not np.isclose(values[i], expected, rtol=0.0, atol=1e-6)}
    if wrong:
        raise CameraInfoError(
            f'camera_info {"P" if rectified else "K"} is not a pinhole matrix without skew '
            f'(entries {", ".join(f"[{i}]={v:g}" for i, v in wrong.items())}; expected '
            f'{", ".join(f"[{i}]={fixed[i]:g}" for i in wrong)})')
    distortion = tuple(float(v) for v in np.asarray(d, dtype=float).reshape(-1))
    # Rectified images ignore D, so whatever it holds does not matter.
    if not rectified and not all(np.isfinite(distortion)):
        raise CameraInfoError('camera_info distortion coefficients have NaN or infinite values')
    model = (distortion_model or '').strip()
    if rectified:
        distortion = ()
    elif model == 'equidistant':
        # Even with zero coefficients a fisheye maps r = f * theta, not a pinhole.
        raise CameraInfoError('equidistant (fisheye) distortion is not supported: rectify the '
                              'images first and set rectified_input')
    elif model not in ('', 'plumb_bob', 'rational_polynomial'):
        raise CameraInfoError(f'unsupported distortion model "{model}" (plumb_bob, '
                              f'rational_polynomial)')
    elif not any(distortion):
        distortion = ()
    elif model == 'plumb_bob':
        if len(distortion) not in (4, 5):
            raise CameraInfoError(f'plumb_bob distortion needs 5 coefficients, got '
                                  f'{len(distortion)}')
    elif model == 'rational_polynomial':
        if len(distortion) not in (8, 12, 14):
            raise CameraInfoError(f'rational_polynomial distortion needs 8 coefficients, got '
                                  f'{len(distortion)}')
    else:
        raise CameraInfoError(f'distortion coefficients {list(distortion)} come without a '
                              f'distortion model (plumb_bob, rational_polynomial)')
    x_offset, y_offset, roi_height, roi_width = (int(v) for v in roi)
    if roi_width > 0 and roi_height > 0:
        if x_offset + roi_width > width or y_offset + roi_height > height:
            raise CameraInfoError(f'camera_info ROI {roi_width}x{roi_height}+{x_offset}+'
                                  f'{y_offset} exceeds the {width}x{height} image')
        width, height = roi_width, roi_height
        cx, cy = cx - x_offset, cy - y_offset
    bx, by = max(int(binning_x), 1), max(int(binning_y), 1)
    if bx > 1 or by > 1:
        width, height = width // bx, height // by
        fx, cx, fy, cy = fx / bx, cx / bx, fy / by, cy / by
    try:
        return PinholeCamera(width, height, float(fx), float(fy), float(cx), float(cy),
                             distortion)
    except CameraError as error:
        raise CameraInfoError(f'invalid camera_info: {error}')
