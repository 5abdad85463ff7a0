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
Feature tracks: the same physical keypoint observed in several mapping frames.

Keypoints of nearby frames are matched (mutual nearest neighbour + ratio test) and a match is
kept only when both 3D points agree, so a track is one scene point with a consistent
appearance. Long tracks are the landmarks worth remembering in a compact map.
"""

import numpy as np

from neumap_ros.core.matching import match_descriptors
from neumap_ros.core.observations import Observations


def neighbouring_frames(poses: np.ndarray, count: int, max_angle_deg: float = 60.0) -> list:
    """For each frame, up to ``count`` other frames with the closest centres and similar view."""
    centres = poses[:, :3, 3]
    axes = poses[:, :3, 2]
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    cos_limit = np.cos(np.radians(max_angle_deg))
    distances[axes @ axes.T < cos_limit] = np.inf
    np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1)[:, :count]
    return [[int(j) for j in row if np.isfinite(distances[i, j])] for i, row in enumerate(order)]


def build_tracks(observations: Observations, neighbours: int = 4, ratio: float = 0.85,
                 max_distance: float = 0.03) -> np.ndarray:
    """
    Track id of every keypoint (-1 for keypoints without 3D point or never matched).

    ``max_distance`` (metres) is how far apart the two 3D points of a match may be.
    """
    count = len(observations.keypoints)
    parent = np.arange(count)

    def find(item):
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:
            parent[item], item = root, parent[item]
        return root

    frames = observations.frame_index
    valid = observations.valid
    vectors = observations.vectors()
    order = np.argsort(frames, kind='stable')
    starts = np.searchsorted(frames[order], np.arange(len(observations.poses) + 1))
    members = [order[starts[f]:starts[f + 1]] for f in range(len(observations.poses))]
    members = [m[valid[m]] for m in members]
    pairs = {(min(i, j), max(i, j))
             for i, others in enumerate(neighbouring_frames(observations.poses, neighbours))
             for j in others}
    for frame, other in sorted(pairs):
        a, b = members[frame], members[other]
        if len(a) == 0 or len(b) < 2:
            continue
        matches = match_descriptors(vectors[a], vectors[b], ratio, mutual=True)
        if len(matches) == 0:
            continue
        ia, ib = a[matches[:, 0]], b[matches[:, 1]]
        close = np.linalg.norm(observations.xyz[ia] - observations.xyz[ib],
                               axis=1) < max_distance
        for x, y in zip(ia[close], ib[close]):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
    roots = np.array([find(i) for i in range(count)], dtype=np.int64)   # int when empty
    sizes = np.bincount(roots, minlength=count)
    track = np.where((sizes[roots] > 1) & valid, roots, -1)
    _, compact = np.unique(track, return_inverse=True)
    compact = compact.reshape(-1) - (1 if (track == -1).any() else 0)
    return np.where(track >= 0, compact, -1)
