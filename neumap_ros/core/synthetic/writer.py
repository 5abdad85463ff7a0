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
Write posed RGB-D frames in the Microsoft 7-Scenes folder layout.

Per frame: ``frame-NNNNNN.color.jpg`` (or ``.png``), ``frame-NNNNNN.depth.png`` (uint16
millimetres, 0 = invalid) and ``frame-NNNNNN.pose.txt`` (4x4 camera-to-world, metres, the
``%.18e`` text of the real files). Per folder: ``rgb-camera-intrinsics.txt`` (3x3 K as in the real
file), ``depth-camera-intrinsics.txt`` (the same camera: synthetic colour and depth are
registered), ``split-<name>-map.txt`` / ``split-<name>-query.txt`` (one frame name per line)
and an optional ``scene.json``.
"""

import json
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from neumap_ros.core.camera import PinholeCamera

# 16-bit PNG depth: largest storable depth; farther surfaces are written as invalid (0).
MAX_DEPTH_MM = 65534


def frame_name(index: int) -> str:
    """7-Scenes frame name, e.g. ``frame-000042``."""
    return f'frame-{index:06d}'


def depth_to_millimetres(depth: np.ndarray) -> np.ndarray:
    """Float metres (0 / non-finite = invalid) -> uint16 millimetres (0 = invalid)."""
    depth = np.asarray(depth, np.float64)
    mm = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * 1000.0), 0.0)
    mm[mm > MAX_DEPTH_MM] = 0.0
    return mm.astype(np.uint16)


def _format_number(value: float) -> str:
    return f'{float(value):.10g}'


def write_intrinsics(path, camera: PinholeCamera) -> None:
    """3x3 K as whitespace-separated rows, like the real ``rgb-camera-intrinsics.txt``."""
    rows = [' '.join(_format_number(v) for v in row) for row in camera.K]
    Path(path).write_text('\n'.join(rows) + '\n')


def write_pose(path, T_world_camera: np.ndarray) -> None:
    """4x4 camera-to-world pose in the ``%.18e`` format of the real 7-Scenes files."""
    np.savetxt(str(path), np.asarray(T_world_camera, float).reshape(4, 4), fmt='%.18e')


def write_split(path, names: Iterable) -> None:
    """One frame name per line."""
    Path(path).write_text(''.join(f'{name}\n' for name in names))


def write_sevenscenes_layout(out_dir, frames: Iterable, camera: PinholeCamera,
                             splits: Optional[dict] = None, metadata: Optional[dict] = None,
                             image_format: str = 'jpg', jpeg_quality: int = 95) -> list:
    """
    Write frames and return their names.

    ``frames`` yields ``(color, depth, T_world_camera)``: uint8 BGR (H, W, 3), float metres
    (H, W) with 0 = invalid, 4x4 camera-to-world; it may be a generator, frames are written as
    they come. ``splits`` maps a split name to ``(map_indices, query_indices)``; ``metadata`` is
    written to ``scene.json``.
    """
    if image_format not in ('jpg', 'png'):
        raise ValueError(f'image_format must be jpg or png, got {image_format!r}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for index, (color, depth, pose) in enumerate(frames):
        if color.shape[:2] != (camera.height, camera.width) or depth.shape != color.shape[:2]:
            raise ValueError(f'frame {index}: image size {color.shape[:2]} / {depth.shape} does '
                             f'not match the {camera.width}x{camera.height} camera')
        name = frame_name(index)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == 'jpg' else []
        if not cv2.imwrite(str(out / f'{name}.color.{image_format}'), color, params):
            raise OSError(f'cannot write {out / name}.color.{image_format}')
        cv2.imwrite(str(out / f'{name}.depth.png'), depth_to_millimetres(depth))
        write_pose(out / f'{name}.pose.txt', pose)
        names.append(name)
    write_intrinsics(out / 'rgb-camera-intrinsics.txt', camera)
    write_intrinsics(out / 'depth-camera-intrinsics.txt', camera)
    for split, (map_indices, query_indices) in (splits or {}).items():
        write_split(out / f'split-{split}-map.txt', (names[i] for i in map_indices))
        write_split(out / f'split-{split}-query.txt', (names[i] for i in query_indices))
    if metadata is not None:
        (out / 'scene.json').write_text(json.dumps(metadata, indent=2, sort_keys=True) + '\n')
    return names
