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

"""From posed frames to a map file: the one entry point the CLI and the map-builder node use."""

from dataclasses import dataclass, field
import logging
import os
from pathlib import Path
import time
from typing import Callable, Optional

from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.decoder import decoder_hash
from neumap_ros.core.decoder_weights import load_decoder
from neumap_ros.core.feature_map import build_feature_map
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.map_io import OutputPathError, require_writable
from neumap_ros.core.mapping import build_neural_map, checkpoint_identity, MappingConfig, \
    read_checkpoint, require_decoder_fits
from neumap_ros.core.observations import collect_observations

LOG = logging.getLogger(__name__)

METHODS = ('neural', 'features')


@dataclass
class BuildRequest:
    """What to map and how."""

    dataset: Path
    split: Optional[str]
    output: Path
    method: str = 'neural'
    features: FeatureConfig = field(default_factory=FeatureConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    weights: Optional[Path] = None
    progress: bool = True
    checkpoint: Optional[Path] = None
    # on_progress(stage, fraction of the whole build): 'features', 'codes', 'finetune',
    # 'saving'; fractions never decrease and end at 1.0 once the map is written.
    on_progress: Optional[Callable[[str, float], None]] = None


@dataclass
class BuildSummary:
    """What was written."""

    output: Path
    method: str
    map_bytes: int
    frames: int
    points: int
    seconds: float
    details: dict


def build_map(request: BuildRequest) -> BuildSummary:
    """
    Extract features, attach 3D points and write the map atomically.

    Nothing is written unless every step succeeded, so an existing good map is never replaced
    by a failed build.
    """
    if request.method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {request.method!r}')
    started = time.monotonic()
    require_writable(request.output, request.checkpoint)   # not after minutes of work
    require_distinct(request.output, request.checkpoint)
    dataset = open_dataset(request.dataset)
    frames = dataset.split(request.split)
    if not frames:
        raise ValueError(f'split {request.split!r} of {dataset.root} has no frames')
    report = request.on_progress or (lambda stage, fraction: None)
    if request.method == 'neural':
        # Before minutes of feature extraction: the decoder must read these keypoints.
        decoder, decoder_meta = load_decoder(request.weights,
                                             feature_kind=request.features.kind)
        require_decoder_fits(decoder, request.features.kind)
        # Before feature extraction too: a corrupt checkpoint, or one of another decoder,
        # settings or frames, ends the run now (its keypoints are checked after extraction).
        read_checkpoint(request.checkpoint, checkpoint_identity(
            decoder_hash(decoder), request.features, request.mapping,
            [f.name for f in frames], [f.T_world_camera for f in frames]))
    # Share of the build spent extracting features (measured on the kitchen: about 0.4 of a
    # neural build, nearly all of a feature-matching one); the rest is optimisation (neural)
    # and writing the file.
    share = 0.4 if request.method == 'neural' else 0.9
    observations = collect_observations(
        dataset, frames, request.features, request.progress,
        on_frame=lambda done, total: report('features', share * done / total))
    valid = int(observations.valid.sum())
    LOG.info('%d keypoints, %d with 3D points, from %d frames', len(observations.keypoints),
             valid, len(frames))
    info = {'dataset': dataset.name, 'layout': dataset.layout, 'split': request.split,
            'mapping_camera': frames[0].camera.to_dict()}
    if request.method == 'features':
        built = build_feature_map(observations, request.features, info=info)
    else:
        info['decoder_info'] = decoder_meta.get('info', {})
        built = build_neural_map(
            observations, decoder, request.features, request.mapping, request.progress,
            request.checkpoint, info,
            on_progress=lambda stage, fraction: report(stage, share + (0.95 - share) * fraction))
    seconds = time.monotonic() - started
    # The whole build, feature extraction included, is what "mapping time" means to a user.
    built.info['mapping_seconds'] = round(seconds, 2)
    report('saving', max(share, 0.95))
    size = built.save(request.output)
    # Only now: the map it leads to is on disk (a feature map never used it: left alone).
    if request.method == 'neural' and request.checkpoint is not None and \
            Path(request.checkpoint).exists():
        Path(request.checkpoint).unlink()
    report('saved', 1.0)
    return BuildSummary(Path(request.output), request.method, size, len(frames), valid, seconds,
                        dict(built.info))


def require_distinct(output, checkpoint) -> None:
    """
    Refuse a checkpoint path that names the map file itself (OutputPathError).

    The checkpoint is deleted once the map is written: the same file would lose the map.
    """
    if checkpoint is None:
        return
    output, checkpoint = Path(output), Path(checkpoint)
    same = output.resolve() == checkpoint.resolve()
    if not same and output.exists() and checkpoint.exists():
        same = os.path.samefile(output, checkpoint)   # hard links
    if same:
        raise OutputPathError(f'checkpoint {checkpoint} and output map {output} are the same '
                              'file (the checkpoint is deleted once the map is written): '
                              'choose another checkpoint path')
