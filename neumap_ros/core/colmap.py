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
from pathlib import Path
import struct
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
    if camera.model in ('OPENCV', 'FULL_OPENCV'):
        distortion = tuple(p[4:8]) if camera.model == 'OPENCV' else tuple(p[4:8] + [p[8]] +
                                                                          p[9:12])
        return PinholeCamera(camera.width, camera.height, p[0], p[1], p[2], p[3], distortion)
    raise ColmapError(f'camera model {camera.model} is not supported (use a perspective model)')


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
    except (OSError, ValueError, IndexError, KeyError, struct.error) as error:
        raise ColmapError(f'cannot read COLMAP model in {model_dir}: {error}')


def _pose(qvec, tvec):
    w, x, y, z = qvec
    return Rotation.from_quat([x, y, z, w]).as_matrix(), np.asarray(tvec, dtype=float)


def _data_lines(path: Path):
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            yield line


def _read_cameras_txt(path):
    cameras = {}
    for line in _data_lines(path):
        parts = line.split()
        camera_id = int(parts[0])
        cameras[camera_id] = Camera(camera_id, parts[1], int(parts[2]), int(parts[3]),
                                    np.array(parts[4:], dtype=float))
    return cameras


def _read_images_txt(path):
    images = {}
    # Two lines per image; the second (its 2D points) is empty for an image without any, as in
    # models of known poses made for point triangulation, so empty lines cannot be skipped.
    lines = iter([line.strip() for line in path.read_text().splitlines()
                  if not line.lstrip().startswith('#')])
    for header in lines:
        if not header:
            continue
        points = next(lines, '')
        parts = header.split()
        rotation, translation = _pose([float(v) for v in parts[1:5]],
                                      [float(v) for v in parts[5:8]])
        values = np.array(points.split(), dtype=float).reshape(-1, 3)
        image_id = int(parts[0])
        images[image_id] = Image(image_id, int(parts[8]), ' '.join(parts[9:]), rotation,
                                 translation, values[:, :2], values[:, 2].astype(np.int64))
    return images


def _read_points_txt(path):
    return {int(parts[0]): np.array(parts[1:4], dtype=float)
            for parts in (line.split() for line in _data_lines(path))}


def _unpack(handle, fmt):
    size = struct.calcsize('<' + fmt)  # packed: COLMAP writes fields without padding
    data = handle.read(size)
    if len(data) != size:
        raise ColmapError(f'truncated file {handle.name}')
    return struct.unpack('<' + fmt, data)


def _read_cameras_bin(path):
    cameras = {}
    with open(path, 'rb') as handle:
        for _ in range(_unpack(handle, 'Q')[0]):
            camera_id, model_id, width, height = _unpack(handle, 'iiQQ')
            name, count = CAMERA_MODELS[model_id]
            cameras[camera_id] = Camera(camera_id, name, width, height,
                                        np.array(_unpack(handle, 'd' * count)))
    return cameras


def _read_images_bin(path):
    images = {}
    with open(path, 'rb') as handle:
        for _ in range(_unpack(handle, 'Q')[0]):
            values = _unpack(handle, 'idddddddi')
            name = b''
            while True:
                char = handle.read(1)
                if char in (b'\x00', b''):
                    break
                name += char
            count = _unpack(handle, 'Q')[0]
            data = np.array(_unpack(handle, 'ddq' * count)).reshape(-1, 3)
            rotation, translation = _pose(values[1:5], values[5:8])
            images[values[0]] = Image(values[0], values[8], name.decode(), rotation,
                                      translation, data[:, :2], data[:, 2].astype(np.int64))
    return images


def _read_points_bin(path):
    points = {}
    with open(path, 'rb') as handle:
        for _ in range(_unpack(handle, 'Q')[0]):
            values = _unpack(handle, 'QdddBBBd')
            track_length = _unpack(handle, 'Q')[0]
            handle.read(8 * track_length)
            points[values[0]] = np.array(values[1:4])
    return points
