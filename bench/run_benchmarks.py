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
Accuracy, map size, mapping time and latency on the real scenes; the compression curve.

Run with ``make bench`` (or ``python bench/run_benchmarks.py --help``). For every scene and
split it builds the feature-matching baseline and the neural map (shipped decoder, codes
only), evaluates both on the query split in the same run on the same machine, prints a table
and writes ``bench/results/results.json`` (each report names its localizer settings).
``--features orb`` runs both methods on ORB keypoints instead (``results_orb.json``).
``--compression`` adds the map-size/recall curve on the 7-Scenes kitchen (landmarks per voxel x
code precision x pruning): ``compression.json`` and a plot. Speed and size targets live here,
not in the tests.
"""

import argparse
from dataclasses import asdict, replace
import json
import os
from pathlib import Path
import platform
import sys
import time

import torch

from neumap_ros.core.data_paths import require_shared_data
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.decoder_weights import load_decoder
from neumap_ros.core.evaluation import evaluate_frames, format_table, json_safe, summarize
from neumap_ros.core.feature_map import build_feature_map, FeatureMap
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.localizer import FeatureMatchingLocalizer, LocalizerOptions, NeuralLocalizer
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.mapping import build_neural_map, MappingConfig
from neumap_ros.core.neural_map import NeuralMap
from neumap_ros.core.observations import collect_observations

# Maps are built from full-resolution keypoints. Kitchen queries are detected on images
# downscaled to 480x360: the Kinect's soft, noisy 640x480 colour images then give fewer
# fine-scale keypoints, localization takes ~30 % less time and recall at 5 cm rose slightly
# on every mapping seed (README). Strecha's sharp 1024x682 images lose precision when
# downscaled, so their queries keep the map's resolution (-1).
KITCHEN_QUERY_SIDE = 480

# (name, dataset folder, map split, query split, voxel size in metres, query image side)
SCENES = (
    ('redkitchen-interleaved', '7scenes-redkitchen', 'interleaved-map', 'interleaved-query',
     0.5, KITCHEN_QUERY_SIDE),
    ('redkitchen-sequential', '7scenes-redkitchen', 'sequential-map', 'sequential-query', 0.5,
     KITCHEN_QUERY_SIDE),
    ('fountain-P11', 'strecha/fountain-P11', 'map', 'query', 2.0, -1),
    ('Herz-Jesus-P25', 'strecha/Herz-Jesus-P25', 'map', 'query', 2.0, -1),
)
# Compression sweep: (label, landmarks per voxel, precision, importance L1, prune threshold);
# 'prune a/b' labels mean L1 weight a, threshold b, then 300 fine-tuning iterations.
COMPRESSION = (
    ('K32 fp16', 32, 'fp16', 0.0, 0.0),
    ('K64 fp16', 64, 'fp16', 0.0, 0.0),
    ('K64 int8', 64, 'int8', 0.0, 0.0),
    ('K128 fp16', 128, 'fp16', 0.0, 0.0),
    ('K128 int8', 128, 'int8', 0.0, 0.0),
    ('K128 int8 prune .05/.5', 128, 'int8', 0.05, 0.5),
    ('K128 int8 prune .05/.2', 128, 'int8', 0.05, 0.2),
    ('K128 int8 prune .02/.3', 128, 'int8', 0.02, 0.3),
    ('K256 int8', 256, 'int8', 0.0, 0.0),
)


def kind_suffix(features: FeatureConfig, separator: str) -> str:
    """Return '' for the default SIFT keypoints, else e.g. '_orb': names of maps and results."""
    return '' if features.kind == 'sift' else f'{separator}{features.kind}'


def _evaluate(localizer, frames, method, map_bytes, mapping_seconds):
    records = evaluate_frames(localizer, frames, progress=False)
    report = summarize(records, method, map_bytes, mapping_seconds)
    report['localizer'] = asdict(localizer.options)
    return report


def run_scene(name, folder, map_split, query_split, voxel_size, features, mapping, decoder,
              maps_dir, log, options=LocalizerOptions()):
    """Baseline and neural map of one scene, both evaluated on the same queries."""
    dataset = open_dataset(require_shared_data(*folder.split('/')))
    map_frames, queries = dataset.split(map_split), dataset.split(query_split)
    started = time.monotonic()
    observations = collect_observations(dataset, map_frames, features, progress=False)
    feature_seconds = time.monotonic() - started
    log(f'{name}: {len(map_frames)} mapping frames, {int(observations.valid.sum())} '
        f'keypoints with 3D points ({feature_seconds:.0f} s of features)')

    started = time.monotonic()
    baseline = build_feature_map(observations, features)
    baseline_seconds = feature_seconds + time.monotonic() - started
    kind = kind_suffix(features, '-')
    baseline_path = maps_dir / f'{name}{kind}-features.safetensors'
    baseline_bytes = baseline.save(baseline_path)

    started = time.monotonic()
    neural = build_neural_map(observations, decoder, features,
                              MappingConfig(**dict(mapping, voxel_size=voxel_size)),
                              progress=False)
    neural_seconds = feature_seconds + time.monotonic() - started
    neural_path = maps_dir / f'{name}{kind}-neural.safetensors'
    neural_bytes = neural.save(neural_path)
    log(f'{name}: maps built (baseline {baseline_bytes / 1e6:.1f} MB, '
        f'neural {neural_bytes / 1e6:.2f} MB in {neural_seconds:.0f} s)')

    # Both are scored as loaded from their files: exactly what a localizer gets (a neural map
    # already holds its codes at the stored precision, e.g. int8, so memory and file agree).
    reports = [
        _evaluate(FeatureMatchingLocalizer(FeatureMap.load(baseline_path), options), queries,
                  'features', baseline_bytes, round(baseline_seconds, 1)),
        _evaluate(NeuralLocalizer(NeuralMap.load(neural_path), decoder, 'cpu', options),
                  queries, 'neural', neural_bytes, round(neural_seconds, 1)),
    ]
    for report in reports:
        report['scene'] = name
        report['map_frames'] = len(map_frames)
        report.pop('per_query')
    reports[1]['voxels'] = len(neural.grid)
    reports[1]['kept_codes'] = neural.kept_codes
    return reports, observations


def run_compression(observations, dataset, query_split, features, mapping, decoder, maps_dir,
                    log, options=LocalizerOptions()):
    """Map bytes versus 5 cm / 5 deg recall over the compression settings."""
    queries = dataset.split(query_split)
    points = []
    for label, slots, precision, l1, threshold in COMPRESSION:
        settings = dict(mapping, landmarks_per_voxel=slots, code_precision=precision,
                        importance_l1=l1, prune_threshold=threshold,
                        finetune_iterations=300 if threshold else 0)
        neural = build_neural_map(observations, decoder, features, MappingConfig(**settings),
                                  progress=False)
        path = maps_dir / 'compression.safetensors'
        size = neural.save(path)
        report = _evaluate(NeuralLocalizer(NeuralMap.load(path), decoder, 'cpu', options),
                           queries, label, size, neural.info['mapping_seconds'])
        points.append({'setting': label, 'map_bytes': size, 'kept_codes': neural.kept_codes,
                       'recall_5cm_5deg': report['recall']['0.05m_5deg'],
                       'recall_10cm_5deg': report['recall']['0.10m_5deg'],
                       'median_translation_m': report['median_translation_m'],
                       'latency_ms': report['latency_ms']['median']})
        log(f'compression {label}: {size / 1e6:.2f} MB, '
            f'{report["recall"]["0.05m_5deg"] * 100:.1f} % at 5 cm / 5 deg')
    return points


def plot_compression(points, baseline, path):
    """Map size against recall, baseline marked."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    figure, axis = pyplot.subplots(figsize=(7, 4.5))
    sizes = [p['map_bytes'] / 1e6 for p in points]
    recalls = [p['recall_5cm_5deg'] * 100 for p in points]
    axis.plot(sizes, recalls, 'o')
    for index, (p, x, y) in enumerate(zip(points, sizes, recalls)):
        # Points on top of an earlier one get their label below it.
        crowded = any(abs(x / x2 - 1) < 0.05 and abs(y - y2) < 1.0
                      for x2, y2 in zip(sizes[:index], recalls[:index]))
        axis.annotate(p['setting'], (x, y), textcoords='offset points',
                      xytext=(4, -12 if crowded else 4), fontsize=8)
    axis.axhline(baseline['recall']['0.05m_5deg'] * 100, color='k', ls='--', lw=0.8,
                 label=f'feature matching ({baseline["map_bytes"] / 1e6:.0f} MB)')
    axis.set_xscale('log')
    axis.set_xlabel('map size (MB, log scale)')
    axis.set_ylabel('recall at 5 cm / 5 deg (%)')
    axis.set_title('7-Scenes redkitchen (interleaved): map size vs accuracy')
    axis.grid(alpha=0.3)
    axis.legend(loc='lower right')
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def main(argv=None) -> int:
    """Run the benchmarks and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--scenes', nargs='*', default=[s[0] for s in SCENES],
                        help='scene names to run (default: all)')
    parser.add_argument('--compression', action='store_true',
                        help='also sweep the compression settings on the kitchen')
    parser.add_argument('--iterations', type=int, default=MappingConfig().iterations)
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results'))
    parser.add_argument('--maps', default=str(Path(__file__).resolve().parents[1] / 'build'
                                              / 'bench_maps'),
                        help='where the built maps go (kept out of the results folder)')
    parser.add_argument('--weights', help='decoder weights (default: the decoder shipped for '
                        'the keypoint kind)')
    parser.add_argument('--features', choices=('sift', 'orb'), default='sift',
                        help='keypoints of both methods; orb writes results_orb.json')
    args = parser.parse_args(argv)
    # Every mistake before hours of work, not after.
    known = [s[0] for s in SCENES]
    unknown = sorted(set(args.scenes) - set(known))
    if unknown or not args.scenes:
        parser.error(f'unknown or no --scenes {unknown}; known: {known}')
    if args.compression and args.features != 'sift':
        parser.error('--compression is defined for the default (SIFT) keypoints')
    if args.compression and 'redkitchen-interleaved' not in args.scenes:
        parser.error('--compression needs the redkitchen-interleaved scene')
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps_dir = Path(args.maps)
    maps_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def log(message):
        print(f'[{time.monotonic() - started:6.0f} s] {message}', flush=True)

    features = FeatureConfig(kind=args.features)
    decoder, decoder_meta = load_decoder(args.weights, feature_kind=features.kind)
    suffix = kind_suffix(features, '_')
    mapping = {'iterations': args.iterations}
    results = {'machine': {'platform': platform.platform(), 'cpus': os.cpu_count(),
                           'torch_threads': torch.get_num_threads(),
                           'python': sys.version.split()[0]},
               'decoder': decoder_meta.get('hash'), 'features': features.to_dict(),
               'mapping': mapping, 'scenes': []}
    kitchen_observations, points = None, []
    kitchen_options = replace(LocalizerOptions(), max_image_side=KITCHEN_QUERY_SIDE)
    for name, folder, map_split, query_split, voxel_size, query_side in SCENES:
        if name not in args.scenes:
            continue
        reports, observations = run_scene(
            name, folder, map_split, query_split, voxel_size, features, mapping, decoder,
            maps_dir, log, replace(LocalizerOptions(), max_image_side=query_side))
        results['scenes'].extend(reports)
        if name == 'redkitchen-interleaved':
            kitchen_observations = observations
        print(format_table(reports), flush=True)

    if args.compression:
        kitchen = open_dataset(require_shared_data('7scenes-redkitchen'))
        points = run_compression(kitchen_observations, kitchen, 'interleaved-query', features,
                                 mapping, decoder, maps_dir, log, kitchen_options)
        baseline = next(r for r in results['scenes']
                        if r['scene'] == 'redkitchen-interleaved' and r['method'] == 'features')
        plot_compression(points, baseline, out_dir / 'compression.png')
        # A file of its own: a later run of the scenes alone leaves the sweep in place.
        atomic_write_bytes(out_dir / 'compression.json', json.dumps(json_safe(
            dict(results, scenes=[baseline], localizer=asdict(kitchen_options),
                 compression=points)), indent=1).encode())

    print()
    print(format_table(results['scenes']))
    for point in points:
        print(f"  {point['setting']:<24} {point['map_bytes'] / 1e6:7.2f} MB  "
              f"{point['recall_5cm_5deg'] * 100:5.1f} % @5cm/5deg  "
              f"{point['recall_10cm_5deg'] * 100:5.1f} % @10cm/5deg")
    # A run of some scenes gets a file of its own: the full results stay as they were.
    partial = '' if sorted(args.scenes) == sorted(known) else '_partial'
    path = out_dir / f'results{suffix}{partial}.json'
    atomic_write_bytes(path, json.dumps(json_safe(results), indent=1).encode())
    log(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
