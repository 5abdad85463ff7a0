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
Keypoints of the mapping images with their 3D scene points: what every map is built from.

The 3D point of a keypoint comes from the frame's depth image (RGB-D), from multi-view
triangulation with the known poses (posed images without depth), or from a COLMAP model.
"""

from dataclasses import dataclass
import io
import logging
from typing import Callable, Optional

import numpy as np
from scipy.spatial import cKDTree

from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.colmap import PIXEL_CENTRE
from neumap_ros.core.datasets import Dataset, DatasetError
from neumap_ros.core.features import create_extractor, descriptor_vectors, FeatureConfig
from neumap_ros.core.geometry import transform_points
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.progress import progress_bar
from neumap_ros.core.triangulation import triangulate_frames, TriangulationOptions

LOG = logging.getLogger(__name__)


@dataclass
class Observations:
    """Keypoints of all mapping frames, concatenated; ``xyz`` is NaN where no 3D is known."""

    feature_kind: str
    frame_names: list
    frame_index: np.ndarray   # (M,) int32
    keypoints: np.ndarray     # (M, 2) float32, undistorted pixels
    descriptors: np.ndarray   # (M, D) uint8
    xyz: np.ndarray           # (M, 3) float32 world coordinates
    poses: np.ndarray         # (F, 4, 4) camera-to-world
    cameras: list             # F PinholeCamera (undistorted)

    @property
    def valid(self) -> np.ndarray:
        """Mask of keypoints with a 3D point."""
        return np.all(np.isfinite(self.xyz), axis=1)

    def vectors(self) -> np.ndarray:
        """Return unit descriptor vectors: RootSIFT or signed bits."""
        return descriptor_vectors(self.descriptors, self.feature_kind)

    def subset(self, mask: np.ndarray) -> 'Observations':
        """Observations selected by a mask over keypoints (frames are kept)."""
        return Observations(self.feature_kind, self.frame_names, self.frame_index[mask],
                            self.keypoints[mask], self.descriptors[mask], self.xyz[mask],
                            self.poses, self.cameras)


def depth_at(depth: np.ndarray, pixels: np.ndarray, max_relative_step: float = 0.05):
    """
    Depth at pixels (nearest), rejecting holes and depth discontinuities (3x3 spread).

    Pixels outside the image get NaN: clipping them would hand them the border's depth.
    """
    height, width = depth.shape
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    u = np.rint(np.nan_to_num(pixels[:, 0], nan=-1.0, posinf=-1.0, neginf=-1.0))
    v = np.rint(np.nan_to_num(pixels[:, 1], nan=-1.0, posinf=-1.0, neginf=-1.0))
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u = np.where(inside, u, 0).astype(int)
    v = np.where(inside, v, 0).astype(int)
    # Neighbours beyond the border repeat the edge pixel.
    patches = np.stack([depth[np.clip(v + dv, 0, height - 1), np.clip(u + du, 0, width - 1)]
                        for dv in (-1, 0, 1) for du in (-1, 0, 1)], 1)
    centre = depth[v, u]
    valid_patch = np.all(patches > 0, axis=1)
    spread = patches.max(axis=1) - patches.min(axis=1)
    ok = inside & valid_patch & (spread < max_relative_step * centre + 0.01)
    return np.where(ok, centre, np.nan)


def check_registered_depth(depth: np.ndarray, image: np.ndarray) -> None:
    """Raise ValueError unless ``depth`` has ``image``'s size (pixels are looked up 1:1)."""
    if depth.shape[:2] != image.shape[:2]:
        raise ValueError(f'depth is {depth.shape[1]}x{depth.shape[0]} but the image is '
                         f'{image.shape[1]}x{image.shape[0]}: use depth registered to the '
                         f'colour camera')


def observe_frame(extractor, image: np.ndarray, camera, T_world_camera: np.ndarray,
                  depth: np.ndarray = None, max_depth: float = 20.0) -> tuple:
    """
    Keypoints of one image: undistorted pixels, descriptors and world points.

    World points come from ``depth`` (metres, 0 = invalid) when given, else stay NaN. The
    depth must be registered to the image (same size): pixels are looked up one to one, at
    the keypoints' raw (distorted) positions, then lifted along their undistorted rays.
    """
    if depth is not None:
        check_registered_depth(depth, image)
    features = extractor.extract(image)
    pixels = camera.undistort_points(features.keypoints).astype(np.float32)
    points = np.full((len(pixels), 3), np.nan, np.float32)
    if depth is not None and len(pixels):
        # Registered depth shares the raw image's pixel grid, not the undistorted one.
        z = depth_at(depth, features.keypoints)
        z[z > max_depth] = np.nan
        good = np.isfinite(z)
        local = camera.backproject(pixels[good].astype(float), z[good])
        points[good] = transform_points(T_world_camera, local)
    return pixels, features.descriptors, points


def assemble_observations(kind: str, names: list, per_frame: list, poses: list,
                          cameras: list) -> Observations:
    """Concatenate per-frame ``(pixels, descriptors, points)`` into :class:`Observations`."""
    counts = [len(p[0]) for p in per_frame]
    return Observations(
        kind, list(names), np.repeat(np.arange(len(per_frame), dtype=np.int32), counts),
        _concat([p[0] for p in per_frame], (0, 2), np.float32),
        _concat([p[1] for p in per_frame], (0, 0), np.uint8),
        _concat([p[2] for p in per_frame], (0, 3), np.float32),
        np.array(poses, dtype=np.float64).reshape(-1, 4, 4), list(cameras))


def collect_observations(dataset: Dataset, frames: list, config: FeatureConfig,
                         progress: bool = True, max_depth: float = 20.0,
                         on_frame: Optional[Callable[[int, int], None]] = None) -> Observations:
    """
    Extract features of ``frames`` and attach a 3D point to each keypoint that has one.

    ``on_frame(done, total)`` is called after each frame (progress for callers with no
    terminal, such as the map builder node).
    """
    # Depth is decided per split, not per folder: one stray frame without depth elsewhere
    # must not silently turn an RGB-D map into a slower, less accurate triangulated one.
    without_depth = [f.name for f in frames if f.depth_path is None]
    use_depth = not without_depth
    if without_depth and len(without_depth) < len(frames):
        raise DatasetError(f'{len(without_depth)} of {len(frames)} frames have no depth image '
                           f'(e.g. {without_depth[:3]}): add their depth or leave them out '
                           f'of the split')
    extractor = create_extractor(config)
    per_frame = []
    for index, frame in enumerate(progress_bar(frames, progress, desc='features', unit='img')):
        depth = frame.load_depth() if use_depth else None
        per_frame.append(observe_frame(extractor, frame.load_image(), frame.camera,
                                       frame.T_world_camera, depth, max_depth))
        if on_frame is not None:
            on_frame(index + 1, len(frames))
    if not use_depth:
        keypoints = [p[0] for p in per_frame]
        xyz = [p[2] for p in per_frame]
        if dataset.colmap_model is not None:
            xyz = _colmap_points(dataset, frames, keypoints, xyz)
        if sum(np.isfinite(p[:, 0]).sum() for p in xyz) == 0:
            LOG.info('triangulating keypoints of %d posed images', len(frames))
            vectors = [descriptor_vectors(p[1], config.kind) for p in per_frame]
            xyz = triangulate_frames([f.camera.undistorted() for f in frames],
                                     [f.T_world_camera for f in frames], keypoints, vectors,
                                     TriangulationOptions())
        per_frame = [(p[0], p[1], x.astype(np.float32)) for p, x in zip(per_frame, xyz)]
    return assemble_observations(config.kind, [f.name for f in frames], per_frame,
                                 [f.T_world_camera for f in frames],
                                 [f.camera.undistorted() for f in frames])


def save_observations(path, observations: Observations, extra: dict = None) -> None:
    """Cache observations as a plain .npz (no pickle) for repeated experiments/pretraining."""
    cameras = np.array([[c.width, c.height, c.fx, c.fy, c.cx, c.cy]
                        for c in observations.cameras], dtype=np.float64)
    arrays = {'frame_index': observations.frame_index, 'keypoints': observations.keypoints,
              'descriptors': observations.descriptors, 'xyz': observations.xyz,
              'poses': observations.poses, 'cameras': cameras,
              'frame_names': np.array(observations.frame_names, dtype=str),
              'feature_kind': np.array(observations.feature_kind)}
    arrays.update(extra or {})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_observations(path) -> tuple:
    """Inverse of :func:`save_observations`; returns ``(observations, extra arrays)``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    cameras = [PinholeCamera(int(c[0]), int(c[1]), *map(float, c[2:]))
               for c in arrays.pop('cameras')]
    observations = Observations(
        str(arrays.pop('feature_kind')), [str(n) for n in arrays.pop('frame_names')],
        arrays.pop('frame_index'), arrays.pop('keypoints'), arrays.pop('descriptors'),
        arrays.pop('xyz'), arrays.pop('poses'), cameras)
    return observations, arrays


def _concat(arrays, empty_shape, dtype):
    arrays = [a for a in arrays if len(a)]
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(empty_shape, dtype)


def _colmap_points(dataset, frames, keypoints, xyz, max_distance_px: float = 2.0):
    """Give keypoints the 3D point of a COLMAP observation within ``max_distance_px``."""
    model = dataset.colmap_model
    by_name = {image.name: image for image in model.images.values()}
    image_dir = dataset.root / 'images'
    result = []
    for frame, pixels, points in zip(frames, keypoints, xyz):
        # The model names images by their path under images/, subfolders included.
        image = by_name.get(frame.image_path.relative_to(image_dir).as_posix())
        points = points.copy()
        if image is not None and len(pixels):
            has_point = image.point3d_ids >= 0
            observed = frame.camera.undistort_points(image.points2d[has_point] - PIXEL_CENTRE)
            ids = image.point3d_ids[has_point]
            if len(observed):
                distance, nearest = cKDTree(observed).query(pixels, k=1)
                for k in np.flatnonzero(distance < max_distance_px):
                    point = model.points3d.get(int(ids[nearest[k]]))
                    if point is not None:
                        points[k] = point
        result.append(points)
    return result
