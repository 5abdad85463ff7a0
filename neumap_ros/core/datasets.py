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
Posed image datasets whose layout is detected from the folder.

Three layouts are understood:

* ``sevenscenes``: ``frame-NNNNNN.color.{jpg,png}``, ``frame-NNNNNN.pose.txt`` (camera-to-world),
  optional ``frame-NNNNNN.depth.png`` (uint16 mm), ``rgb-camera-intrinsics.txt`` and
  ``split-<name>-{map,query}.txt`` files. The project's synthetic scenes use it too.
* ``strecha``: ``images/NAME.jpg`` with ``cameras/NAME.jpg.camera`` (K, distortion, camera-to-world
  R, centre C, size) and ``split-{map,query}.txt``.
* ``colmap``: a sparse model (``sparse/0``, ``sparse`` or the root; text or binary) with an
  ``images/`` folder.
"""

from dataclasses import dataclass, field
from pathlib import Path
import re
from typing import Optional

import cv2
import numpy as np

from neumap_ros.core import colmap
from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.features import uint16_to_uint8
from neumap_ros.core.geometry import invert_transform, make_transform, orthonormalize_transform


class DatasetError(ValueError):
    """Raised when a folder is not a dataset this project can read; says what is missing."""


# The 7-Scenes colour camera (used when a 7-Scenes folder has no intrinsics file).
SEVEN_SCENES_DEFAULT_K = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])


@dataclass
class Frame:
    """One posed image of a dataset."""

    name: str
    image_path: Path
    T_world_camera: np.ndarray
    camera: PinholeCamera
    depth_path: Optional[Path] = None

    def load_image(self) -> np.ndarray:
        """
        Return the BGR uint8 image; raises DatasetError if unreadable or not the camera's size.

        Gray and 16-bit files (e.g. from a mono16 camera) come back as BGR uint8 too.
        """
        # Pixels as the sensor wrote them, as calibrated: an EXIF orientation tag must not
        # rotate them away from the camera model.
        image = _imread(self.image_path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if image.dtype == np.uint16:
            # OpenCV's 8-bit read would keep the high byte: near black for a 12-bit camera.
            image = uint16_to_uint8(image)
        elif image.dtype != np.uint8:
            raise DatasetError(f'{self.image_path}: {image.dtype} pixels are not supported '
                               f'(8 or 16 bits)')
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if (image.shape[1], image.shape[0]) != (self.camera.width, self.camera.height):
            raise DatasetError(f'{self.image_path} is {image.shape[1]}x{image.shape[0]} but its '
                               f'camera is {self.camera.width}x{self.camera.height}')
        return image

    def load_depth(self) -> Optional[np.ndarray]:
        """Depth in metres (float32, 0 = invalid), or None when the frame has none."""
        if self.depth_path is None:
            return None
        raw = _imread(self.depth_path, cv2.IMREAD_UNCHANGED, 'depth')
        if raw.dtype != np.uint16 or raw.ndim != 2:
            # An 8-bit or colour PNG read as millimetres puts every point within 0.26 m.
            raise DatasetError(f'{self.depth_path}: depth must be a single-channel 16-bit PNG '
                               f'in millimetres, got {raw.dtype} with shape {raw.shape}')
        depth = raw.astype(np.float32) / 1000.0
        depth[(raw == 0) | (raw == 65535)] = 0.0
        return depth


def _imread(path: Path, flags: int, what: str = 'image') -> np.ndarray:
    """Read an image file or raise DatasetError naming it (unreadable, corrupt or hostile)."""
    try:
        image = cv2.imread(str(path), flags)
    except cv2.error as error:
        # e.g. a header claiming more pixels than OpenCV allows (CV_IO_MAX_IMAGE_PIXELS).
        raise DatasetError(f'cannot read {what} {path}: {str(error).strip()}')
    if image is None:
        raise DatasetError(f'cannot read {what} {path}')
    return image


@dataclass
class Dataset:
    """Frames of a scene plus named splits (lists of frame names)."""

    root: Path
    layout: str
    frames: dict
    splits: dict = field(default_factory=dict)
    has_depth: bool = False
    colmap_model: Optional[colmap.Model] = None

    @property
    def name(self) -> str:
        """Folder name of the scene."""
        return self.root.name

    def split(self, name: Optional[str]) -> list:
        """Frames of a split given by name, by a path to a list file, or all frames for None."""
        if name is None or name == 'all':
            return [self.frames[k] for k in sorted(self.frames)]
        if name in self.splits:
            names = self.splits[name]
        elif Path(name).is_file():
            names = _read_list(Path(name))
        else:
            raise DatasetError(f'unknown split {name!r} for {self.root}; known splits: '
                               f'{sorted(self.splits) or "none"} (or give a list file)')
        # 'images/0001.jpg' in a list names frame '0001' where frames have no folders.
        names = [n if n in self.frames else Path(n).name for n in names]
        missing = [n for n in names if n not in self.frames]
        if missing:
            raise DatasetError(f'split {name!r} names {len(missing)} frames that are not in '
                               f'{self.root}, e.g. {missing[:3]}')
        return [self.frames[n] for n in names]


def _read_list(path: Path) -> list:
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            # An image file name (any case, subfolders kept) names the frame without suffix.
            is_image = line.lower().endswith(('.jpg', '.jpeg', '.png'))
            names.append(Path(line).with_suffix('').as_posix() if is_image else line)
    return names


def _read_matrix(path: Path, shape) -> np.ndarray:
    try:
        values = np.loadtxt(path, dtype=float)
    except ValueError as error:
        raise DatasetError(f'cannot parse {path}: {error}')
    if values.size != int(np.prod(shape)) or not np.all(np.isfinite(values)):
        raise DatasetError(f'{path} must hold {shape[0]}x{shape[1]} finite numbers')
    return values.reshape(shape)


# Rotation blocks whose singular values stray further from 1 are not a rotation with drift
# (7-Scenes' tracked poses stray about 2e-4) but a wrong matrix that projection would hide.
MAX_ROTATION_SKEW = 1e-2


def _rigid_pose(transform: np.ndarray, where: str) -> np.ndarray:
    """Return ``transform`` with its rotation projected onto SO(3), refusing non-rotations."""
    if not np.all(np.isfinite(transform)):
        raise DatasetError(f'{where}: the pose has non-finite values')
    if np.abs(transform[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6:
        raise DatasetError(f'{where}: the last pose row must be 0 0 0 1, got '
                           f'{transform[3].tolist()}')
    singular = np.linalg.svd(transform[:3, :3], compute_uv=False)
    if np.linalg.det(transform[:3, :3]) <= 0 or np.abs(singular - 1.0).max() > MAX_ROTATION_SKEW:
        raise DatasetError(f'{where}: the rotation block is not a rotation (determinant '
                           f'{np.linalg.det(transform[:3, :3]):.6g}, singular values '
                           f'{np.round(singular, 6).tolist()})')
    return orthonormalize_transform(transform)


def detect_layout(root: Path) -> str:
    """Name the layout of ``root`` or raise DatasetError listing what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f'dataset folder {root} does not exist')
    if any(root.glob('frame-*.pose.txt')):
        return 'sevenscenes'
    if (root / 'images').is_dir() and (root / 'cameras').is_dir():
        return 'strecha'
    if colmap.find_model_dir(root) is not None:
        return 'colmap'
    raise DatasetError(
        f'{root} is not a recognised dataset: expected frame-*.pose.txt (+ frame-*.color.jpg) '
        f'files (7-Scenes layout), images/ and cameras/ folders (Strecha layout), or a COLMAP '
        f'model (sparse/0/cameras.txt|bin, images.txt|bin, points3D.txt|bin) with images/')


def open_dataset(root) -> Dataset:
    """Open a dataset folder of any supported layout."""
    root = Path(root).expanduser().resolve()
    layout = detect_layout(root)
    return {'sevenscenes': _open_sevenscenes, 'strecha': _open_strecha,
            'colmap': _open_colmap}[layout](root)


def _splits_in(root: Path, pattern: str) -> dict:
    splits = {}
    for path in sorted(root.glob('split-*.txt')):
        match = re.fullmatch(pattern, path.name)
        if match:
            splits[match.group(1)] = _read_list(path)
    return splits


def _open_sevenscenes(root: Path) -> Dataset:
    intrinsics = root / 'rgb-camera-intrinsics.txt'
    K = _read_matrix(intrinsics, (3, 3)) if intrinsics.exists() else SEVEN_SCENES_DEFAULT_K
    frames = {}
    size = None
    for pose_path in sorted(root.glob('frame-*.pose.txt')):
        name = pose_path.name[: -len('.pose.txt')]
        image_path = next((root / f'{name}.color.{ext}' for ext in ('jpg', 'png')
                           if (root / f'{name}.color.{ext}').exists()), None)
        if image_path is None:
            raise DatasetError(f'{pose_path} has no matching {name}.color.jpg or .png')
        if size is None:
            probe = _imread(image_path, cv2.IMREAD_UNCHANGED)
            size = (probe.shape[1], probe.shape[0])
            if not intrinsics.exists() and size != (640, 480):
                # The default is the Kinect camera of 7-Scenes: wrong for any other size.
                raise DatasetError(f'{root} has no rgb-camera-intrinsics.txt and its images '
                                   f'are {size[0]}x{size[1]}, not the 640x480 of the 7-Scenes '
                                   f'camera assumed without it')
        depth_path = root / f'{name}.depth.png'
        pose = _rigid_pose(_read_matrix(pose_path, (4, 4)), str(pose_path))
        frames[name] = Frame(name, image_path, pose,
                             PinholeCamera.from_matrix(K, size[0], size[1]),
                             depth_path if depth_path.exists() else None)
    has_depth = all(f.depth_path is not None for f in frames.values())
    return Dataset(root, 'sevenscenes', frames, _splits_in(root, r'split-(.+)\.txt'), has_depth)


def _open_strecha(root: Path) -> Dataset:
    frames = {}
    for camera_path in sorted((root / 'cameras').glob('*.camera')):
        image_name = camera_path.name[: -len('.camera')]
        image_path = root / 'images' / image_name
        if not image_path.exists():
            raise DatasetError(f'{camera_path} has no image {image_path}')
        rows = _read_strecha_camera(camera_path)
        K, distortion = np.array(rows[0:3]), rows[3]
        R_world_camera, centre = np.array(rows[4:7]), np.array(rows[7])
        width, height = rows[8]
        if not all(v > 0 and v.is_integer() for v in (width, height)):
            raise DatasetError(f'{camera_path}: the image size must be two positive whole '
                               f'numbers, got {width:g} {height:g}')
        name = Path(image_name).stem
        pose = _rigid_pose(make_transform(R_world_camera, centre), str(camera_path))
        # The file's three radial terms (k1, k2, k3) in OpenCV order; all zero when undistorted.
        opencv_distortion = ((distortion[0], distortion[1], 0.0, 0.0, distortion[2])
                             if any(distortion) else ())
        try:
            camera = PinholeCamera.from_matrix(K, int(width), int(height), opencv_distortion)
        except ValueError as error:
            raise DatasetError(f'{camera_path}: {error}')
        frames[name] = Frame(name, image_path, pose, camera)
    if not frames:
        raise DatasetError(f'{root / "cameras"} holds no *.camera files')
    splits = _splits_in(root, r'split-(.+)\.txt')
    return Dataset(root, 'strecha', frames, splits)


# Rows of a Strecha camera file: what each holds and how many numbers.
STRECHA_ROWS = (('K row 1', 3), ('K row 2', 3), ('K row 3', 3), ('distortion', 3),
                ('R row 1', 3), ('R row 2', 3), ('R row 3', 3), ('centre C', 3), ('size', 2))


def _read_strecha_camera(path: Path) -> list:
    """Rows of numbers of a Strecha camera file, each checked for its length and finiteness."""
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise DatasetError(f'cannot parse Strecha camera file {path}: {error}')
    if len(lines) != len(STRECHA_ROWS):
        raise DatasetError(f'cannot parse Strecha camera file {path}: expected '
                           f'{len(STRECHA_ROWS)} rows (K, distortion, R, C, size), got '
                           f'{len(lines)}')
    rows = []
    for number, (parts, (what, count)) in enumerate(zip(lines, STRECHA_ROWS), 1):
        try:
            values = [float(v) for v in parts]
        except ValueError as error:
            raise DatasetError(f'cannot parse Strecha camera file {path} row {number} '
                               f'({what}): {error}')
        if len(values) != count or not all(np.isfinite(values)):
            raise DatasetError(f'cannot parse Strecha camera file {path} row {number} '
                               f'({what}): expected {count} finite numbers, got '
                               f'{" ".join(parts)!r}')
        rows.append(values)
    return rows


def _open_colmap(root: Path) -> Dataset:
    model_dir = colmap.find_model_dir(root)
    model = colmap.read_model(model_dir)
    image_dir = root / 'images'
    if not image_dir.is_dir():
        raise DatasetError(f'COLMAP dataset {root} needs an images/ folder next to the model')
    missing = sorted(image.name for image in model.images.values()
                     if not (image_dir / image.name).is_file())
    if missing:
        raise DatasetError(f'{len(missing)} images of the model in {model_dir} are not in '
                           f'{image_dir}, e.g. {missing[:3]}')
    frames, sources = {}, {}
    for image in model.images.values():
        if image.camera_id not in model.cameras:
            raise DatasetError(f'image {image.name} of {model_dir} uses camera '
                               f'{image.camera_id}, which its cameras file does not hold')
        camera = colmap.to_pinhole(model.cameras[image.camera_id])
        T_camera_world = make_transform(image.rotation_camera_world, image.translation)
        name = Path(image.name).with_suffix('').as_posix()
        if name in frames:
            # Frames are named without suffix: one would silently replace the other.
            raise DatasetError(f'images {sources[name]} and {image.name} of {model_dir} both '
                               f'make frame {name!r}: rename one')
        sources[name] = image.name
        frames[name] = Frame(name, image_dir / image.name, invert_transform(T_camera_world),
                             camera)
    return Dataset(root, 'colmap', frames, _splits_in(root, r'split-(.+)\.txt'),
                   colmap_model=model)
