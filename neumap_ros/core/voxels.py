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
Axis-aligned voxel grid over the scene's 3D points.

Voxels are non-overlapping cubes of side ``voxel_size``; only voxels with enough support (points
and observing frames) are kept. Each voxel's anchor is the median of its points: the decoder
regresses offsets from it in voxel-size units.
"""

from dataclasses import dataclass
import logging

import numpy as np

LOG = logging.getLogger(__name__)


@dataclass
class VoxelGrid:
    """Occupied voxels of a map."""

    origin: np.ndarray    # (3,) world position of the corner of voxel (0, 0, 0)
    voxel_size: float
    indices: np.ndarray   # (V, 3) int32 integer voxel coordinates
    anchors: np.ndarray   # (V, 3) float32 regression origin of each voxel

    def __len__(self) -> int:
        """Return the number of voxels."""
        return len(self.indices)

    def cell_of(self, points: np.ndarray) -> np.ndarray:
        """Integer voxel coordinates of points (N, 3)."""
        return np.floor((points - self.origin) / self.voxel_size).astype(np.int64)

    def lookup(self, points: np.ndarray) -> np.ndarray:
        """Voxel id of each point, -1 outside the kept voxels, beyond the grid or for NaN."""
        ids = np.full(len(points), -1, np.int64)
        cells = np.floor((points - self.origin) / self.voxel_size)
        # Checked as floats: a far point's cell may not even fit an int64.
        inside = _in_range(cells)
        if not inside.any() or len(self) == 0:
            return ids
        keys = _pack(cells[inside].astype(np.int64))
        table = _pack(self.indices.astype(np.int64))
        table[~_in_range(self.indices)] = -1   # no point is looked up there: never a hit
        order = np.argsort(table)
        position = np.searchsorted(table[order], keys)
        position = np.clip(position, 0, len(table) - 1)
        hit = table[order][position] == keys
        found = np.full(len(keys), -1, np.int64)
        found[hit] = order[position[hit]]
        ids[inside] = found
        return ids

    def distance_outside(self, points: np.ndarray, voxel: int) -> np.ndarray:
        """Euclidean distance from points to the box of ``voxel`` (0 inside)."""
        low = self.origin + self.indices[voxel] * self.voxel_size
        high = low + self.voxel_size
        gap = np.maximum(np.maximum(low - points, points - high), 0.0)
        return np.linalg.norm(gap, axis=1)

    def normalized_offsets(self, points: np.ndarray, voxel_ids: np.ndarray) -> np.ndarray:
        """Offsets of points from their voxels' anchors, in voxel-size units."""
        return ((points - self.anchors[voxel_ids]) / self.voxel_size).astype(np.float32)

    def to_world(self, offsets: np.ndarray, voxel_ids: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalized_offsets`."""
        return self.anchors[voxel_ids] + offsets * self.voxel_size


_CELL_LIMIT = 1 << 20   # cells must stay within +-2^20 - 1 of the origin on every axis


def _in_range(cells: np.ndarray) -> np.ndarray:
    """Return which (float) cells ``_pack`` can hold: finite and below the limit."""
    with np.errstate(invalid='ignore'):   # NaN compares False: not in range
        return np.all(np.abs(cells) < _CELL_LIMIT, axis=1)


def _pack(cells: np.ndarray) -> np.ndarray:
    # 21 bits per axis: +-1M voxels each way is far beyond any map. Callers keep cells in
    # range (_in_range): one beyond would overflow into the next axis.
    shifted = cells + _CELL_LIMIT
    return (shifted[:, 0] << 42) | (shifted[:, 1] << 21) | shifted[:, 2]


def build_voxel_grid(points: np.ndarray, frame_index: np.ndarray, voxel_size: float,
                     min_points: int = 50, min_frames: int = 3,
                     min_points_per_frame: int = 5) -> VoxelGrid:
    """
    Keep voxels with ``min_points`` points seen by ``min_frames`` frames.

    A frame counts for a voxel when at least ``min_points_per_frame`` of its keypoints land in
    it (NeuMap's image-to-voxel rule). The origin snaps to a robust lower corner of the points.
    Points 2^20 voxels or more from the origin on an axis are outside any grid: dropped.
    """
    if voxel_size <= 0 or not np.isfinite(voxel_size):
        raise ValueError(f'voxel size must be positive, got {voxel_size}')
    finite = np.all(np.isfinite(points), axis=1)
    points, frame_index = points[finite], frame_index[finite]
    if len(points) == 0:
        raise ValueError('no 3D points to build a voxel grid from')
    origin = np.floor(np.percentile(points, 0.5, axis=0) / voxel_size) * voxel_size
    cells = np.floor((points - origin) / voxel_size)
    inside = _in_range(cells)
    if not inside.all():
        LOG.warning('%d of %d 3D points lie %d voxels or more from the others: ignored',
                    int((~inside).sum()), len(points), _CELL_LIMIT)
        points, frame_index, cells = points[inside], frame_index[inside], cells[inside]
    if len(points) == 0:
        raise ValueError('no 3D points within reach of a voxel grid')
    cells = cells.astype(np.int64)
    unique_cells, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    point_counts = np.bincount(inverse)
    pairs = np.unique(inverse * (int(frame_index.max()) + 1) + frame_index, return_counts=True)
    voxel_of_pair = pairs[0] // (int(frame_index.max()) + 1)
    frame_counts = np.bincount(voxel_of_pair[pairs[1] >= min_points_per_frame],
                               minlength=len(unique_cells))
    keep = (point_counts >= min_points) & (frame_counts >= min_frames)
    kept = np.flatnonzero(keep)
    order = np.argsort(inverse, kind='stable')
    groups = np.split(order, np.cumsum(point_counts)[:-1])
    anchors = np.array([np.median(points[groups[v]], axis=0) for v in kept],
                       dtype=np.float32).reshape(-1, 3)
    return VoxelGrid(origin.astype(np.float64), float(voxel_size),
                     unique_cells[kept].astype(np.int32), anchors)


def voxels_in_view(anchors: np.ndarray, voxel_size: float, T_world_camera: np.ndarray,
                   width: int, height: int, focal: float, radius: float,
                   angle_margin_deg: float) -> np.ndarray:
    """
    Return the indices of voxels a camera near ``T_world_camera`` may see.

    A camera looks at surfaces metres away, so a pose prior must select voxels in its view
    cone, not voxels near its centre. The cone is the image's half-diagonal field of view,
    widened by ``angle_margin_deg`` (the prior's rotation error) and by the angle the position
    error ``radius`` and the voxel's own extent subtend; voxels within ``radius`` of the camera
    are always kept (the camera may stand inside one).
    """
    offsets = np.asarray(anchors, dtype=np.float64) - T_world_camera[:3, 3]
    distance = np.linalg.norm(offsets, axis=1)
    slack = radius + voxel_size * np.sqrt(3.0)
    near = distance <= slack
    depth = offsets @ T_world_camera[:3, 2]          # along the optical axis
    off_axis = np.arccos(np.clip(depth / np.maximum(distance, 1e-9), -1.0, 1.0))
    half_fov = np.arctan(np.hypot(width / 2.0, height / 2.0) / focal)
    allowance = half_fov + np.radians(angle_margin_deg) + np.arctan(slack / np.maximum(
        distance, 1e-9))
    return np.flatnonzero(near | (off_axis <= allowance))
