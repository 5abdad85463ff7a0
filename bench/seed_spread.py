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
How much the neural map's accuracy depends on the mapping seed.

Maps one kitchen split once per seed (same keypoints, same decoder, default settings unless
told) and evaluates each map on that split's queries. The misses of a neural map are marginal
(5-6 cm against a 5 cm threshold), so one run's recall is one draw; this prints the spread and
writes ``bench/results/seed_spread[_SPLIT][_refined][_PRESET].json`` (no suffix: interleaved,
defaults). About 3 minutes per seed on 2 cores with the defaults.

    python bench/seed_spread.py [--seeds 0 1 2] [--split sequential] [--refine-track-points]
                                [--config config/mapping_precise.yaml]
"""

import argparse
from dataclasses import asdict, replace
import json
import os
from pathlib import Path
import sys
import tempfile
import time

import numpy as np
# This folder's benchmark script: the kitchen's query settings live there.
from run_benchmarks import KITCHEN_QUERY_SIDE
import torch

from neumap_ros.core.data_paths import require_shared_data
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.decoder_weights import load_decoder
from neumap_ros.core.evaluation import evaluate_frames, json_safe, summarize
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.localizer import LocalizerOptions, NeuralLocalizer
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.mapping import build_neural_map, MappingConfig
from neumap_ros.core.neural_map import NeuralMap
from neumap_ros.core.observations import collect_observations
from neumap_ros.core.settings import load_settings_file, with_overrides


def through_file(neural) -> tuple:
    """Return the map as a localizer loads it (codes at their stored precision) and its size."""
    with tempfile.TemporaryDirectory() as folder:
        size = neural.save(Path(folder) / 'map.safetensors')
        return NeuralMap.load(Path(folder) / 'map.safetensors'), size


def main(argv=None) -> int:
    """Map and evaluate once per seed; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--split', choices=('interleaved', 'sequential'), default='interleaved')
    parser.add_argument('--refine-track-points', action='store_true',
                        help='map with landmarks fitted to their rays and depths')
    parser.add_argument('--config', help='mapping preset (its "mapping:" section), e.g. '
                        'config/mapping_precise.yaml')
    parser.add_argument('--query-side', type=int, default=KITCHEN_QUERY_SIDE,
                        help='detect query keypoints at this image side (-1: as the map)')
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results'))
    args = parser.parse_args(argv)
    # The preset goes through the same checked settings layer as `neumap build-map --config`.
    mapping = with_overrides(MappingConfig(),
                             load_settings_file(args.config).get('mapping', {}),
                             args.config or 'defaults')
    if args.refine_track_points:
        mapping = replace(mapping, refine_track_points=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.monotonic()
    dataset = open_dataset(require_shared_data('7scenes-redkitchen'))
    features = FeatureConfig()
    options = replace(LocalizerOptions(), max_image_side=args.query_side)
    decoder, decoder_meta = load_decoder()
    observations = collect_observations(dataset, dataset.split(f'{args.split}-map'), features,
                                        progress=False)
    queries = dataset.split(f'{args.split}-query')
    rows = []
    for seed in args.seeds:
        mapping_started = time.monotonic()
        neural = build_neural_map(observations, decoder, features, replace(mapping, seed=seed),
                                  progress=False)
        mapping_seconds = time.monotonic() - mapping_started
        loaded, size = through_file(neural)
        report = summarize(evaluate_frames(NeuralLocalizer(loaded, decoder, 'cpu', options),
                                           queries, progress=False), 'neural')
        rows.append({'seed': seed, 'recall': report['recall'],
                     'median_translation_m': report['median_translation_m'],
                     'median_rotation_deg': report['median_rotation_deg'],
                     'localized': report['localized'], 'queries': report['queries'],
                     'map_bytes': size,
                     'codes_mapping_seconds': mapping_seconds,
                     'latency_ms_median': report['latency_ms']['median']})
        print(f'[{time.monotonic() - started:5.0f} s] seed {seed}: '
              f'{report["recall"]["0.05m_5deg"] * 100:5.1f} % @5cm/5deg, '
              f'{report["recall"]["0.10m_5deg"] * 100:5.1f} % @10cm/5deg, '
              f'median {report["median_translation_m"] * 100:.1f} cm, '
              f'codes mapped in {mapping_seconds:.0f} s, '
              f'{report["latency_ms"]["median"]:.0f} ms per image', flush=True)
    at_5cm = np.array([row['recall']['0.05m_5deg'] for row in rows]) * 100
    print(f'5cm/5deg recall over seeds {args.seeds}: mean {at_5cm.mean():.1f} %, '
          f'min {at_5cm.min():.1f} %, max {at_5cm.max():.1f} %')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {'scene': f'redkitchen-{args.split}', 'decoder': decoder_meta.get('hash'),
              # Each row's seed replaces the one here.
              'mapping': {k: v for k, v in mapping.to_dict().items() if k != 'seed'},
              'features': features.to_dict(), 'localizer': asdict(options),
              'seeds': rows}
    name = 'seed_spread' + ('' if args.split == 'interleaved' else f'_{args.split}') + \
        ('_refined' if args.refine_track_points else '') + \
        (f'_{Path(args.config).stem}' if args.config else '')
    atomic_write_bytes(out / f'{name}.json', json.dumps(json_safe(result), indent=1).encode())
    return 0


if __name__ == '__main__':
    sys.exit(main())
