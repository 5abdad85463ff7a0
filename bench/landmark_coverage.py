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
Where a neural map's pose error comes from: its decoded points, checked against query depth.

Each query of the kitchen is localized with a built neural map; the world points of its PnP
inliers are compared with what the query's own depth image says lies under those pixels.
Per query this reports how far the decoded points are from the observed surface, how far they
are from the nearest landmark the map remembers (its code slot positions), and how far the
observed point is from that nearest landmark. Queries within 5 cm / 5 deg and the misses are
summarised apart. Prints a table and writes ``bench/results/landmark_coverage[_SPLIT].json``.
About a minute on 2 cores. The map comes from ``bench/run_benchmarks.py`` (or build-map).

    python bench/landmark_coverage.py [--map MAP] [--split sequential] [--max-image-side 480]
"""

import argparse
import json
import os
from pathlib import Path
import sys

import numpy as np
from scipy.spatial import cKDTree
import torch

from neumap_ros.core.data_paths import require_shared_data
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.evaluation import json_safe
from neumap_ros.core.geometry import pose_errors
from neumap_ros.core.localizer import load_localizer, LocalizerOptions, map_method
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.observations import collect_observations

SAME_PIXEL_PX = 0.01   # a decoded match and a depth observation of the same keypoint
GOOD = (0.05, 5.0)     # metres, degrees


def query_points(localizer, landmarks: cKDTree, dataset, frame) -> dict:
    """Localize one query; measure its inliers' points against its depth and the landmarks."""
    result = localizer.localize(frame.load_image(), frame.camera)
    t_err, r_err = (pose_errors(result.T_world_camera, frame.T_world_camera)
                    if result.success else (float('inf'), float('inf')))
    row = {'name': frame.name, 'translation_m': t_err, 'rotation_deg': r_err,
           'inliers': result.num_inliers, 'with_depth': 0}
    if not result.success:
        return row
    observed = collect_observations(dataset, [frame], localizer.feature_config, progress=False)
    keep = observed.valid
    distance, index = cKDTree(observed.keypoints[keep]).query(result.inlier_pixels)
    paired = distance < SAME_PIXEL_PX
    if not paired.any():
        return row
    decoded = result.inlier_points[paired]
    surface = observed.xyz[keep][index[paired]].astype(np.float64)
    row.update(with_depth=int(paired.sum()),
               point_error_m=float(np.median(np.linalg.norm(decoded - surface, axis=1))),
               point_bias_m=float(np.linalg.norm((decoded - surface).mean(axis=0))),
               point_to_landmark_m=float(np.median(landmarks.query(decoded)[0])),
               surface_to_landmark_m=float(np.median(landmarks.query(surface)[0])),
               surface_depth_m=float(np.median(np.linalg.norm(
                   surface - frame.T_world_camera[:3, 3], axis=1))))
    return row


def summary(rows: list) -> dict:
    """Medians over queries of every measured column."""
    keys = ('inliers', 'point_error_m', 'point_bias_m', 'point_to_landmark_m',
            'surface_to_landmark_m', 'surface_depth_m')
    measured = [r for r in rows if r['with_depth']]
    return {'queries': len(rows),
            **{k: float(np.median([r[k] for r in measured])) if measured else None
               for k in keys}}


def measure(path: Path, dataset, split: str, max_image_side: int) -> dict:
    """Measure every query of the split against one map; print its table."""
    localizer = load_localizer(path, 'cpu', LocalizerOptions(max_image_side=max_image_side))
    landmarks = cKDTree(localizer.map_points())
    rows = [query_points(localizer, landmarks, dataset, frame)
            for frame in dataset.split(f'{split}-query')]
    good = [r for r in rows if r['translation_m'] < GOOD[0] and r['rotation_deg'] < GOOD[1]]
    missed = [r for r in rows if r not in good]
    groups = {'within_5cm_5deg': summary(good), 'missed': summary(missed)}

    def cm(value):
        return f'{value * 100:7.1f}' if value is not None else '    n/a'
    print(f'{localizer.method} map {path.name}: {len(localizer.map_points())} stored points')
    print(f'  {"queries":<16} {"n":>4} {"inliers":>8} {"error":>7} {"bias":>7} '
          f'{"pt>lm":>7} {"obs>lm":>7} {"depth":>6}   (cm, depth m; medians over queries)')
    for name, group in groups.items():
        depth = group['surface_depth_m']
        print(f'  {name:<16} {group["queries"]:4d} {group["inliers"] or 0:8.0f} '
              f'{cm(group["point_error_m"])} {cm(group["point_bias_m"])} '
              f'{cm(group["point_to_landmark_m"])} {cm(group["surface_to_landmark_m"])} '
              f'{depth if depth is not None else float("nan"):6.2f}')
    for row in missed:
        print(f'    missed {row["name"]}: {row["translation_m"] * 100:.1f} cm, '
              f'{row["rotation_deg"]:.2f} deg, {row["inliers"]} inliers', flush=True)
    return {'map': path.name, 'method': localizer.method,
            'stored_points': int(len(localizer.map_points())), 'groups': groups,
            'queries': rows}


def main(argv=None) -> int:
    """Measure the neural map (and the baseline if given); print tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    maps = Path(__file__).resolve().parents[1] / 'build' / 'bench_maps'
    parser.add_argument('--map', default=None, help='neural map (default: the benchmark map '
                        'build/bench_maps/redkitchen-SPLIT-neural.safetensors)')
    parser.add_argument('--baseline', default=None, help='feature-matching map measured the '
                        'same way (default: the benchmark map, when it exists)')
    parser.add_argument('--split', choices=('interleaved', 'sequential'), default='interleaved')
    parser.add_argument('--max-image-side', type=int, default=480,
                        help='query keypoints as in the benchmark (480x360)')
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results'))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    neural = Path(args.map or maps / f'redkitchen-{args.split}-neural.safetensors')
    baseline = Path(args.baseline or maps / f'redkitchen-{args.split}-features.safetensors')
    if not neural.exists():
        parser.error(f'{neural} does not exist: run bench/run_benchmarks.py or pass --map')
    if map_method(neural) != 'neural':
        parser.error(f'{neural} is a feature-matching map; pass it as --baseline')
    if args.baseline and map_method(baseline) != 'features':
        parser.error(f'{baseline} is not a feature-matching map')
    dataset = open_dataset(require_shared_data('7scenes-redkitchen'))
    result = {'scene': f'redkitchen-{args.split}', 'max_image_side': args.max_image_side,
              'what': 'inlier world points vs the query depth: error, distance to the nearest '
                      'point the map stores, and that of the observed point',
              'neural': measure(neural, dataset, args.split, args.max_image_side)}
    if baseline.exists():
        result['features'] = measure(baseline, dataset, args.split, args.max_image_side)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = 'landmark_coverage' + ('' if args.split == 'interleaved' else f'_{args.split}')
    atomic_write_bytes(out / f'{name}.json', json.dumps(json_safe(result), indent=1).encode())
    return 0


if __name__ == '__main__':
    sys.exit(main())
