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

"""Whole synthetic datasets: a 7-Scenes folder on disk, or frames streamed for pretraining."""

from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import numpy as np

from neumap_ros.core.synthetic.layout import generate_scene, Scene, SceneConfig
from neumap_ros.core.synthetic.renderer import Photometric, render
from neumap_ros.core.synthetic.trajectory import (default_camera, sample_revisits,
                                                  sample_trajectory, TrajectoryConfig)
from neumap_ros.core.synthetic.writer import write_sevenscenes_layout

FORMAT_VERSION = 1

# 7-Scenes "interleaved" convention: in every block of 50 frames, 0-37 map and 40-47 query.
_BLOCK, _MAP_END, _QUERY_START, _QUERY_END = 50, 38, 40, 48


class SyntheticFrame(NamedTuple):
    """One rendered training frame; unpacks as ``color, depth, K, T_world_camera``."""

    color: np.ndarray          # (H, W, 3) uint8 BGR
    depth: np.ndarray          # (H, W) float32 metres, 0 = no surface
    K: np.ndarray              # 3x3 intrinsics
    T_world_camera: np.ndarray  # 4x4 camera-to-world (OpenCV optical frame)


def scene_kind_for_seed(seed: int, indoor_share: float = 0.65) -> str:
    """Deterministic indoor / outdoor choice for a seed (for mixed pretraining sets)."""
    return 'indoor' if np.random.default_rng([int(seed), 9]).random() < indoor_share else 'outdoor'


def interleaved_split(n_frames: int) -> tuple:
    """Map and query indices of the 7-Scenes interleaved convention over ``n_frames``."""
    index = np.arange(n_frames)
    within = index % _BLOCK
    return (index[within < _MAP_END].tolist(),
            index[(within >= _QUERY_START) & (within < _QUERY_END)].tolist())


def _render_all(scene: Scene, camera, poses: list, seed: int, photometric: bool):
    for i, T in enumerate(poses):
        rng = np.random.default_rng([int(seed), 404, i])
        effects = Photometric.sample(rng) if photometric else Photometric()
        result = render(scene, camera, T, effects, rng)
        yield result.color, result.depth, T


def generate_dataset(out_dir, seed: int, n_map: int = 200, n_query: int = 40,
                     kind: Optional[str] = None, width: int = 640, height: int = 480,
                     config: Optional[SceneConfig] = None,
                     trajectory: Optional[TrajectoryConfig] = None, photometric: bool = True,
                     image_format: str = 'jpg') -> Path:
    """
    Generate a scene and write it in the 7-Scenes layout; returns the folder.

    Frames ``0 .. n_map-1`` are one continuous handheld sequence, frames ``n_map ..`` are
    revisit queries (new viewpoints of mapped surfaces). Splits: ``revisit`` (map = the whole
    sequence, query = the revisits) and, when ``n_map`` > 40, ``interleaved`` (the 7-Scenes
    convention applied to the sequence). ``kind`` (default 'indoor') overrides ``config.kind``.
    """
    kind = kind or (config.kind if config else 'indoor')
    scene = generate_scene(seed, config, kind=kind)
    camera = default_camera(width, height)
    map_poses = sample_trajectory(scene, n_map, seed, camera, trajectory)
    query_poses = sample_revisits(scene, map_poses, n_query, seed, camera, trajectory)
    poses = map_poses + query_poses
    splits = {'revisit': (list(range(n_map)), list(range(n_map, n_map + n_query)))}
    if interleaved_split(n_map)[1]:
        splits['interleaved'] = interleaved_split(n_map)
    metadata = {
        'generator': 'neumap_ros.core.synthetic',
        'format_version': FORMAT_VERSION,
        'seed': int(seed),
        'kind': scene.kind,
        'scene_config': scene.config.to_dict(),
        'trajectory_config': _jsonable(trajectory or TrajectoryConfig.for_kind(scene.kind)),
        'camera': camera.to_dict(),
        'n_map': int(n_map),
        'n_query': int(n_query),
        'photometric': bool(photometric),
        'splits': sorted(splits),
        'conventions': {
            'pose': 'camera-to-world 4x4, OpenCV optical frame (x right, y down, z forward)',
            'world': 'metres, z up, floor at z = 0',
            'depth': 'uint16 millimetres along the optical axis, 0 = invalid; registered',
        },
    }
    write_sevenscenes_layout(out_dir, _render_all(scene, camera, poses, seed, photometric),
                             camera, splits, metadata, image_format)
    return Path(out_dir)


def _jsonable(config: TrajectoryConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def iter_scene_frames(seed: int, n_frames: int, width: int = 320, height: int = 240,
                      kind: Optional[str] = None, config: Optional[SceneConfig] = None,
                      trajectory: Optional[TrajectoryConfig] = None,
                      revisit_share: float = 0.25,
                      photometric: bool = True) -> Iterator[SyntheticFrame]:
    """
    Stream ``n_frames`` rendered frames of the scene of ``seed`` without touching the disk.

    A continuous sequence followed by revisits of it (``revisit_share`` of the frames), as the
    pretraining of the scene-agnostic decoder needs: many posed RGB-D views of one scene with
    overlapping content. ``kind`` None picks indoor / outdoor from the seed. Without a
    ``trajectory`` the frames are spaced three times wider than in a handheld capture, so that a
    few dozen frames cover much of the scene.
    """
    kind = kind or (config.kind if config else scene_kind_for_seed(seed))
    scene = generate_scene(seed, config, kind=kind)
    camera = default_camera(width, height)
    if trajectory is None:
        trajectory = TrajectoryConfig.for_kind(kind)
        trajectory = replace(trajectory, step=3.0 * trajectory.step)
    n_revisit = int(round(n_frames * revisit_share)) if n_frames > 1 else 0
    poses = sample_trajectory(scene, n_frames - n_revisit, seed, camera, trajectory)
    if n_revisit:
        poses += sample_revisits(scene, poses, n_revisit, seed, camera, trajectory)
    K = camera.K
    for color, depth, T in _render_all(scene, camera, poses, seed, photometric):
        yield SyntheticFrame(color, depth, K.copy(), T)
