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

"""Reader for COLMAP sparse models (text and binary), following COLMAP's documented format."""

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

from neumap_ros.core.camera import PinholeCamera

# model id -> (name, number of parameters), from COLMAP's camera model list.
CAMERA_MODELS = {0: ('SIMPLE_PINHOLE', 3), 1: ('PINHOLE', 4), 2: ('SIMPLE_RADIAL', 4),
                 3: ('RADIAL', 5), 4: ('OPENCV', 8), 5: ('OPENCV_FISHEYE', 8),
                 6: ('FULL_OPENCV', 12), 7: ('FOV', 5), 8: ('SIMPLE_RADIAL_FISHEYE', 4),
                 9: ('RADIAL_FISHEYE', 5), 10: ('THIN_PRISM_FISHEYE', 12)}
MODEL_IDS = {name: (model_id, count) for model_id, (name, count) in CAMERA_MODELS.items()}
# The models to_pinhole converts (OpenCV's pinhole with plumb-bob / rational distortion).
PERSPECTIVE_MODELS = ('SIMPLE_PINHOLE', 'PINHOLE', 'SIMPLE_RADIAL', 'RADIAL', 'OPENCV',
                      'FULL_OPENCV')


class ColmapError(ValueError):
    """Raised for unreadable or unsupported COLMAP models."""


@dataclass
class Camera:
    """A COLMAP camera."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class Image:
    """A registered COLMAP image: world-to-camera pose and its 2D observations."""

    image_id: int
    camera_id: int
    name: str
    rotation_camera_world: np.ndarray
    translation: np.ndarray
    points2d: np.ndarray     # (N, 2) pixels, COLMAP's convention (see PIXEL_CENTRE)
    point3d_ids: np.ndarray  # (N,) int, -1 for unmatched


@dataclass
class Model:
    """Cameras, images and 3D points of a sparse model."""

    cameras: dict
    images: dict
    points3d: dict  # id -> xyz


def find_model_dir(root: Path) -> Optional[Path]:
    """First folder among sparse/0, sparse and root that holds a complete model."""
    for candidate in (root / 'sparse' / '0', root / 'sparse', root):
        for ext in ('.txt', '.bin'):
            if all((candidate / f'{part}{ext}').exists()
                   for part in ('cameras', 'images', 'points3D')):
                return candidate
    return None


# COLMAP puts the centre of the top-left pixel at (0.5, 0.5); OpenCV, and the keypoints here,
# at (0, 0). Principal points and 2D observations move by this much between the two.
PIXEL_CENTRE = 0.5


def to_pinhole(camera: Camera) -> PinholeCamera:
    """
    Convert the perspective COLMAP models to :class:`PinholeCamera` with OpenCV distortion.

    The principal point moves to OpenCV's pixel convention (see ``PIXEL_CENTRE``).
    """
    if camera.model not in PERSPECTIVE_MODELS:
        raise ColmapError(f'camera model {camera.model} of camera {camera.camera_id} is not '
                          f'supported (use one of {", ".join(PERSPECTIVE_MODELS)})')
    _check_params(camera)
    p = [float(v) for v in camera.params]
    centre = 1 if camera.model in ('SIMPLE_PINHOLE', 'SIMPLE_RADIAL', 'RADIAL') else 2
    p[centre] -= PIXEL_CENTRE
    p[centre + 1] -= PIXEL_CENTRE
    if camera.model == 'SIMPLE_PINHOLE':
        return PinholeCamera(camera.width, camera.height, p[0], p[0], p[1], p[2])
    if camera.model == 'PINHOLE':
        return PinholeCamera(camera.width, camera.height, p[0], p[1], p[2], p[3])
    if camera.model == 'SIMPLE_RADIAL':
        return PinholeCamera(camera.width, camera.height, p[0], p[0], p[1], p[2],
                             (p[3], 0.0, 0.0, 0.0))
    if camera.model == 'RADIAL':
        return PinholeCamera(camera.width, camera.height, p[0], p[0], p[1], p[2],
                             (p[3], p[4], 0.0, 0.0))
    # OPENCV or FULL_OPENCV
    distortion = tuple(p[4:8]) if camera.model == 'OPENCV' else tuple(p[4:8] + [p[8]] + p[9:12])
    return PinholeCamera(camera.width, camera.height, p[0], p[1], p[2], p[3], distortion)


def _check_params(camera: Camera) -> None:
    """Raise ColmapError unless a known model has its number of finite parameters."""
    if camera.model not in MODEL_IDS:
        return   # unknown models are refused only if an image uses them (see to_pinhole)
    expected = MODEL_IDS[camera.model][1]
    if len(camera.params) != expected:
        raise ColmapError(f'camera {camera.camera_id}: model {camera.model} expects {expected} '
                          f'parameters, got {len(camera.params)}')
    if not np.all(np.isfinite(camera.params)):
        raise ColmapError(f'camera {camera.camera_id} has non-finite parameters '
                          f'{np.asarray(camera.params).tolist()}')


def read_model(model_dir: Path) -> Model:
    """Read a text or binary model from ``model_dir``."""
    model_dir = Path(model_dir)
    try:
        if (model_dir / 'cameras.bin').exists():
            return Model(_read_cameras_bin(model_dir / 'cameras.bin'),
                         _read_images_bin(model_dir / 'images.bin'),
                         _read_points_bin(model_dir / 'points3D.bin'))
        return Model(_read_cameras_txt(model_dir / 'cameras.txt'),
                     _read_images_txt(model_dir / 'images.txt'),
                     _read_points_txt(model_dir / 'points3D.txt'))
    except (OSError, ValueError, IndexError, KeyError, OverflowError) as error:
        raise ColmapError(f'cannot read COLMAP model in {model_dir}: {error}')


def _pose(qvec, tvec, where: str):
    qvec, tvec = np.asarray(qvec, dtype=float), np.asarray(tvec, dtype=float)
    if not np.all(np.isfinite(qvec)) or not np.all(np.isfinite(tvec)):
        raise ColmapError(f'{where} has a non-finite pose: qvec {qvec.tolist()}, '
                          f'tvec {tvec.tolist()}')
    w, x, y, z = qvec
    return Rotation.from_quat([x, y, z, w]).as_matrix(), tvec.copy()


def _check_finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ColmapError(f'{what} has non-finite values')
    return values


def _data_lines(path: Path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith('#'):
            yield number, line


def _fields(path, number: int, line: str, minimum: int, layout: str) -> list:
    """Return a data line's fields; ColmapError naming the line when it has too few."""
    parts = line.split()
    if len(parts) < minimum:
        raise ColmapError(f'{path} line {number}: expected {layout}, got {line!r}')
    return parts


def _read_cameras_txt(path):
    cameras = {}
    for number, line in _data_lines(path):
        parts = _fields(path, number, line, 4, 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]')
        camera_id = int(parts[0])
        camera = Camera(camera_id, parts[1], int(parts[2]), int(parts[3]),
                        np.array(parts[4:], dtype=float))
        _check_params(camera)
        cameras[camera_id] = camera
    return cameras


def _read_images_txt(path):
    images = {}
    # Two lines per image; the second (its 2D points) is empty for an image without any, as in
    # models of known poses made for point triangulation, so empty lines cannot be skipped.
    lines = iter([(number, line.strip())
                  for number, line in enumerate(path.read_text().splitlines(), 1)
                  if not line.lstrip().startswith('#')])
    for number, header in lines:
        if not header:
            continue
        points = next(lines, (number + 1, ''))[1]
        parts = header.split()
        where = f'{path} line {number}'
        if len(parts) < 10:
            raise ColmapError(f'{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, '
                              f'got {header!r}')
        rotation, translation = _pose([float(v) for v in parts[1:5]],
                                      [float(v) for v in parts[5:8]], where)
        values = np.array(points.split(), dtype=float)
        if len(values) % 3:
            raise ColmapError(f'{where}: the next line must hold X Y POINT3D_ID triplets, got '
                              f'{len(values)} numbers')
        values = _check_finite(values.reshape(-1, 3), f'{where}: the 2D points')
        image_id = int(parts[0])
        images[image_id] = Image(image_id, int(parts[8]), ' '.join(parts[9:]), rotation,
                                 translation, values[:, :2], values[:, 2].astype(np.int64))
    return images


def _read_points_txt(path):
    points = {}
    for number, line in _data_lines(path):
        parts = _fields(path, number, line, 4, 'POINT3D_ID X Y Z ...')
        xyz = np.array(parts[1:4], dtype=float)
        points[int(parts[0])] = _check_finite(xyz, f'{path} line {number}: the point')
    return points


def _remaining(handle) -> int:
    return os.fstat(handle.fileno()).st_size - handle.tell()


def _read_array(handle, dtype, count: int, what: str) -> np.ndarray:
    """
    Read ``count`` records of ``dtype``, refusing counts the rest of the file cannot hold.

    A hostile or corrupt count must not size an allocation before the file is checked.
    """
    dtype = np.dtype(dtype)
    remaining = _remaining(handle)
    if count > remaining // max(dtype.itemsize, 1):
        raise ColmapError(f'truncated file {handle.name}: {what} claims {count} entries of '
                          f'{dtype.itemsize} bytes but {remaining} bytes remain')
    size = count * dtype.itemsize
    data = handle.read(size)
    if len(data) != size:
        raise ColmapError(f'truncated file {handle.name}: {what} ends early')
    return np.frombuffer(data, dtype)


def _read_count(handle, record_size: int, what: str) -> int:
    """Read a uint64 count of records of at least ``record_size`` bytes each."""
    count = int(_read_array(handle, '<u8', 1, what)[0])
    remaining = _remaining(handle)
    if count > remaining // record_size:
        raise ColmapError(f'truncated file {handle.name}: it claims {count} {what} of at least '
                          f'{record_size} bytes but {remaining} bytes remain')
    return count


# Fixed-size parts of the records, packed: COLMAP writes fields without padding.
CAMERA_DTYPE = np.dtype([('camera_id', '<i4'), ('model_id', '<i4'), ('width', '<u8'),
                         ('height', '<u8')])
IMAGE_DTYPE = np.dtype([('image_id', '<i4'), ('qvec', '<f8', 4), ('tvec', '<f8', 3),
                        ('camera_id', '<i4')])
POINT2D_DTYPE = np.dtype([('xy', '<f8', 2), ('point3d_id', '<i8')])
POINT3D_DTYPE = np.dtype([('point3d_id', '<u8'), ('xyz', '<f8', 3), ('rgb', 'u1', 3),
                          ('error', '<f8')])
TRACK_DTYPE = np.dtype([('image_id', '<i4'), ('point2d_index', '<i4')])


def _read_cameras_bin(path):
    cameras = {}
    with open(path, 'rb') as handle:
        for _ in range(_read_count(handle, CAMERA_DTYPE.itemsize, 'cameras')):
            record = _read_array(handle, CAMERA_DTYPE, 1, 'a camera')[0]
            camera_id, model_id = int(record['camera_id']), int(record['model_id'])
            if model_id not in CAMERA_MODELS:
                raise ColmapError(f'{path}: camera {camera_id} has unknown model id {model_id}')
            name, count = CAMERA_MODELS[model_id]
            params = _read_array(handle, '<f8', count, f'camera {camera_id} parameters')
            camera = Camera(camera_id, name, int(record['width']), int(record['height']),
                            params.copy())
            _check_params(camera)
            cameras[camera_id] = camera
    return cameras


def _read_name(handle) -> bytes:
    name = b''
    while True:
        char = handle.read(1)
        if char == b'\x00':
            return name
        if char == b'':
            raise ColmapError(f'truncated file {handle.name}: an image name has no end')
        name += char


def _read_images_bin(path):
    images = {}
    with open(path, 'rb') as handle:
        # An image record: its fixed part, at least a name terminator, its point count.
        minimum = IMAGE_DTYPE.itemsize + 1 + 8
        for _ in range(_read_count(handle, minimum, 'images')):
            record = _read_array(handle, IMAGE_DTYPE, 1, 'an image')[0]
            image_id = int(record['image_id'])
            name = _read_name(handle).decode()
            where = f'{path}: image {image_id} ({name})'
            count = int(_read_array(handle, '<u8', 1, f'{where} point count')[0])
            data = _read_array(handle, POINT2D_DTYPE, count, f'{where} 2D points')
            rotation, translation = _pose(record['qvec'], record['tvec'], where)
            xy = _check_finite(data['xy'].astype(np.float64), f'{where} 2D points')
            images[image_id] = Image(image_id, int(record['camera_id']), name, rotation,
                                     translation, xy, data['point3d_id'].astype(np.int64))
    return images


def _read_points_bin(path):
    points = {}
    with open(path, 'rb') as handle:
        minimum = POINT3D_DTYPE.itemsize + 8   # the fixed part and the track length
        for _ in range(_read_count(handle, minimum, 'points')):
            record = _read_array(handle, POINT3D_DTYPE, 1, 'a point')[0]
            point_id = int(record['point3d_id'])
            track_length = int(_read_array(handle, '<u8', 1, f'point {point_id} track')[0])
            _read_array(handle, TRACK_DTYPE, track_length, f'point {point_id} track')
            points[point_id] = _check_finite(record['xyz'].astype(np.float64),
                                             f'{path}: point {point_id}')
    return points
