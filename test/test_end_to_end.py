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
The neural method end to end on a real scene the shipped decoder never saw.

A slice of the 7-Scenes kitchen is mapped codes-only with the shipped decoder; frames held
back from mapping (between mapped ones) must localize with an accuracy floor. A pruned int8
version of the map must still localize. The floors sit well below what the full benchmark
measures (bench/run_benchmarks.py), so they fail on a real regression, not on noise.
"""

import numpy as np
import pytest

from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.decoder_weights import load_decoder
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.localizer import NeuralLocalizer
from neumap_ros.core.mapping import build_neural_map, MappingConfig
from neumap_ros.core.neural_map import NeuralMap
from neumap_ros.core.observations import collect_observations

pytestmark = pytest.mark.slow

# Frames 0-299 of the kitchen sequence: every second one maps, every 20th odd one is a query.
MAP_FRAMES = [f'frame-{i:06d}' for i in range(0, 300, 2)]
QUERY_FRAMES = [f'frame-{i:06d}' for i in range(11, 300, 20)]
FEATURES = FeatureConfig()


@pytest.fixture(scope='module')
def kitchen(shared_data_dir):
    """Return the dataset and the observations of its mapping slice."""
    dataset = open_dataset(shared_data_dir / '7scenes-redkitchen')
    frames = [dataset.frames[name] for name in MAP_FRAMES]
    return dataset, collect_observations(dataset, frames, FEATURES, progress=False)


def _errors(localizer, dataset):
    from neumap_ros.core.geometry import pose_errors
    errors = []
    for name in QUERY_FRAMES:
        frame = dataset.frames[name]
        result = localizer.localize(frame.load_image(), frame.camera)
        errors.append(pose_errors(result.T_world_camera, frame.T_world_camera)
                      if result.success else (np.inf, np.inf))
    return np.array(errors)


def test_neural_map_localizes_held_back_kitchen_frames(kitchen, tmp_path):
    """Codes-only mapping with the shipped decoder localizes unseen frames to a few cm."""
    dataset, observations = kitchen
    decoder, _ = load_decoder()
    neural = build_neural_map(observations, decoder, FEATURES,
                              MappingConfig(iterations=400), progress=False)
    size = neural.save(tmp_path / 'kitchen.safetensors')
    assert size < 1.5e6
    localizer = NeuralLocalizer(NeuralMap.load(tmp_path / 'kitchen.safetensors'), decoder,
                                'cpu')
    errors = _errors(localizer, dataset)
    within = (errors[:, 0] < 0.05) & (errors[:, 1] < 5.0)
    assert within.mean() >= 0.8, errors
    assert np.median(errors[:, 0]) < 0.04, errors


def test_pruned_int8_map_still_localizes(kitchen, tmp_path):
    """Pruning plus int8 codes shrink the map and keep it usable."""
    dataset, observations = kitchen
    decoder, _ = load_decoder()
    settings = MappingConfig(iterations=300, importance_l1=0.05, prune_threshold=0.5,
                             finetune_iterations=100, code_precision='int8')
    neural = build_neural_map(observations, decoder, FEATURES, settings, progress=False)
    neural.save(tmp_path / 'small.safetensors')
    loaded = NeuralMap.load(tmp_path / 'small.safetensors')
    assert loaded.code_precision == 'int8'
    assert loaded.kept_codes < neural.info['landmarks'], 'pruning removed no code'
    errors = _errors(NeuralLocalizer(loaded, decoder, 'cpu'), dataset)
    within = (errors[:, 0] < 0.10) & (errors[:, 1] < 5.0)
    assert within.mean() >= 0.7, errors
