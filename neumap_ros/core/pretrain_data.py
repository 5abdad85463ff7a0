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
Training scenes for decoder pretraining, generated here: nothing is downloaded.

Procedural scenes (:mod:`synthetic`) are rendered with exact depth and poses, described with
the same keypoints as real images, and turned into per-voxel training samples. Real posed
datasets can be added by path. Each scene's observations and tracks are cached as ``.npz``.
"""

from dataclasses import asdict, dataclass, field
import hashlib
import json
import logging
import math
from pathlib import Path

from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.features import create_extractor, FeatureConfig
from neumap_ros.core.observations import assemble_observations, collect_observations, \
    load_observations, observe_frame, save_observations
from neumap_ros.core.progress import progress_bar
from neumap_ros.core.settings import check_settings
from neumap_ros.core.synthetic.dataset import iter_scene_frames, scene_kind_for_seed
from neumap_ros.core.synthetic.trajectory import default_camera
from neumap_ros.core.tracks import build_tracks
from neumap_ros.core.training import landmark_samples
from neumap_ros.core.voxels import build_voxel_grid

LOG = logging.getLogger(__name__)

_REAL_KEYS = ('dataset', 'split', 'voxel_size')


def _check_real_entry(number: int, entry) -> None:
    """Refuse a real-data entry now: a typo or a missing split must not cost an hour."""
    where = f'data.real[{number}]'
    if not isinstance(entry, dict):
        raise ValueError(f'{where} must be a mapping {{dataset: path, split: name, '
                         f'voxel_size: metres}}, got {entry!r}')
    unknown = sorted(str(key) for key in set(entry) - set(_REAL_KEYS))
    if unknown:
        raise ValueError(f'{where}: unknown keys {unknown}; known: {list(_REAL_KEYS)}')
    dataset = entry.get('dataset')
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f'{where} needs dataset: the path of a dataset folder')
    if not Path(dataset).expanduser().is_dir():
        raise ValueError(f'{where}: dataset folder {dataset} does not exist')
    # No default: all frames would include the queries an evaluation later localizes.
    split = entry.get('split')
    if not isinstance(split, str) or not split:
        raise ValueError(f'{where} ({dataset}) needs split: name the training split, or '
                         "'all' to train on every frame")
    if 'voxel_size' in entry:
        size = entry['voxel_size']
        if isinstance(size, bool) or not isinstance(size, (int, float)) \
                or not math.isfinite(size) or size <= 0:
            raise ValueError(f'{where} ({dataset}): voxel_size must be a finite number > 0, '
                             f'got {size!r}')


@dataclass
class TrainingData:
    """Which scenes pretraining learns from."""

    synthetic_scenes: int = 48
    first_seed: int = 1000
    frames_per_scene: int = 160
    width: int = 640
    height: int = 480
    indoor_share: float = 0.65
    voxel_size_indoor: float = 1.0
    voxel_size_outdoor: float = 4.0
    # Real posed datasets: list of {'dataset': path, 'split': name, 'voxel_size': metres};
    # the split is required ('all' for every frame), the voxel size defaults to the indoor one.
    real: list = field(default_factory=list)
    min_points_per_voxel: int = 100

    def __post_init__(self):
        """Refuse wrong types and ranges (from the config file) before any rendering."""
        check_settings(self, at_least={'synthetic_scenes': 0, 'frames_per_scene': 2,
                                       'width': 16, 'height': 16, 'indoor_share': 0.0,
                                       'min_points_per_voxel': 1},
                       above={'voxel_size_indoor': 0.0, 'voxel_size_outdoor': 0.0})
        if not isinstance(self.real, list):
            raise ValueError('data.real must be a list of {dataset: path, split: name, '
                             'voxel_size: metres}')
        for number, entry in enumerate(self.real):
            _check_real_entry(number, entry)

    def to_dict(self) -> dict:
        """JSON-friendly form (goes into the model card)."""
        return asdict(self)


def synthetic_observations(seed: int, kind: str, data: TrainingData,
                           features: FeatureConfig):
    """Render one procedural scene and describe its frames like real images."""
    extractor = create_extractor(features)
    camera = default_camera(data.width, data.height)
    per_frame, poses, names = [], [], []
    for index, frame in enumerate(iter_scene_frames(seed, data.frames_per_scene, data.width,
                                                    data.height, kind=kind)):
        per_frame.append(observe_frame(extractor, frame.color, camera, frame.T_world_camera,
                                       frame.depth))
        poses.append(frame.T_world_camera)
        names.append(f'frame-{index:06d}')
    return assemble_observations(features.kind, names, per_frame, poses,
                                 [camera] * len(per_frame))


# Bumped when rendering or texturing changes what a synthetic scene's keypoints are.
RENDERER_VERSION = 1


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def load_scene(cache_dir: Path, key: str, make):
    """Observations and tracks from the cache, made (and cached) on first use."""
    path = Path(cache_dir) / f'{key}.npz'
    if path.exists():
        observations, extra = load_observations(path)
        return observations, extra['tracks']
    observations = make()
    tracks = build_tracks(observations)
    save_observations(path, observations, {'tracks': tracks})
    return observations, tracks


def training_scenes(data: TrainingData, features: FeatureConfig, landmarks_per_voxel: int,
                    cache_dir, progress: bool = True) -> list:
    """Per-voxel samples of every configured scene, generating missing ones."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Every keypoint setting and the renderer's version are in the key: a cached scene made
    # with other settings must never be reused silently.
    settings = _digest(dict(features.to_dict(), renderer=RENDERER_VERSION))
    jobs = []
    for offset in range(data.synthetic_scenes):
        seed = data.first_seed + offset
        kind = scene_kind_for_seed(seed, data.indoor_share)
        voxel = data.voxel_size_indoor if kind == 'indoor' else data.voxel_size_outdoor
        key = (f'synthetic-{kind}-{seed}-{data.frames_per_scene}-{data.width}x{data.height}-'
               f'{features.kind}{features.max_keypoints}-{settings}')
        jobs.append((key, voxel,
                     lambda s=seed, k=kind: synthetic_observations(s, k, data, features)))
    for entry in data.real:
        dataset = open_dataset(entry['dataset'])
        split = entry['split']
        frames = dataset.split(split)   # an unknown split fails now, not after the rendering
        key = (f'real-{dataset.name}-{split}-{features.kind}{features.max_keypoints}-'
               f'{_digest([str(dataset.root.resolve()), settings])}')
        jobs.append((key, float(entry.get('voxel_size', data.voxel_size_indoor)),
                     lambda d=dataset, f=frames: collect_observations(d, f, features,
                                                                      progress=False)))
    scenes = []
    for key, voxel_size, make in progress_bar(jobs, progress, desc='scenes', unit='scene'):
        observations, tracks = load_scene(cache_dir, key, make)
        valid = observations.valid
        if valid.sum() < data.min_points_per_voxel:
            LOG.warning('skipping scene %s: too few 3D points', key)
            continue
        grid = build_voxel_grid(observations.xyz[valid], observations.frame_index[valid],
                                voxel_size, data.min_points_per_voxel)
        if len(grid) == 0:
            LOG.warning('skipping scene %s: no voxel with enough support', key)
            continue
        scenes.append(landmark_samples(observations, grid, landmarks_per_voxel, tracks))
    return scenes


def describe_scenes(scenes: list) -> dict:
    """Count scenes, voxels, keypoints and landmarks for the model card."""
    return {'scenes': len(scenes), 'voxels': int(sum(len(s.grid) for s in scenes)),
            'keypoints_with_3d': int(sum(s.num_points for s in scenes)),
            'landmarks': int(sum(int(s.landmark_valid.sum()) for s in scenes))}
