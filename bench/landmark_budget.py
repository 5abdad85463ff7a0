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
How many landmarks a voxel must remember: the accuracy a perfect matcher would get from them.

A neural map keeps K landmarks per voxel (the tracks mapping chooses) and the decoder's job is
to match query keypoints to them. This replaces the decoder by an oracle, to separate what the
landmark budget allows from what the decoder achieves: for each query, the landmarks in view
under its true pose are matched to its SIFT descriptors (mutual nearest neighbour, ratio test,
against each landmark's mean descriptor) and the pose is solved with the localizer's PnP.
It is a yardstick for the decoder at that budget, not a localizer (it uses the true pose to
know what is in view). Prints a table and writes ``bench/results/landmark_budget[_SPLIT].json``.
About a minute per budget on 2 cores, after two minutes of keypoints.

    python bench/landmark_budget.py [--budgets 64 128 256 512] [--split sequential]
"""

import argparse
import json
import os
from pathlib import Path
import sys
import time

import numpy as np
import torch

from neumap_ros.core.data_paths import require_shared_data
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.evaluation import json_safe
from neumap_ros.core.features import create_extractor, descriptor_vectors, FeatureConfig
from neumap_ros.core.geometry import invert_transform, pose_errors, transform_points
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.mapping import mapping_grid, MappingConfig
from neumap_ros.core.matching import match_descriptors
from neumap_ros.core.observations import collect_observations
from neumap_ros.core.pnp import PnPOptions, solve_pnp
from neumap_ros.core.tracks import build_tracks
from neumap_ros.core.training import landmark_samples

CORRECT_PX = 4.0   # a match this close to the truth's projection counts as correct
VIEW_MARGIN_PX = 20.0


def map_landmarks(observations, tracks, grid, budget: int) -> tuple:
    """World positions and unit mean descriptors of the landmarks mapping would keep."""
    samples = landmark_samples(observations, grid, budget, tracks)
    valid = samples.landmark_valid.numpy()
    voxels = np.nonzero(valid)[0]
    positions = samples.grid.to_world(samples.landmark_offsets.numpy()[valid], voxels)
    return positions, samples.landmark_vectors.numpy()[valid]


def oracle_query(positions, vectors, query, options: PnPOptions) -> dict:
    """Match one query's keypoints to the landmarks in its true view and solve the pose."""
    pixels, descriptors, kind, frame = query
    truth = frame.T_world_camera
    local = transform_points(invert_transform(truth), positions)
    in_front = local[:, 2] > 0.1
    projected = np.full((len(local), 2), np.inf)
    projected[in_front] = frame.camera.project(local[in_front])
    margin = VIEW_MARGIN_PX
    in_view = np.flatnonzero(in_front &
                             (projected[:, 0] > -margin) &
                             (projected[:, 0] < frame.camera.width + margin) &
                             (projected[:, 1] > -margin) &
                             (projected[:, 1] < frame.camera.height + margin))
    matches = match_descriptors(descriptor_vectors(descriptors, kind), vectors[in_view], 0.8,
                                mutual=True)
    landmarks = in_view[matches[:, 1]]
    points2d = pixels[matches[:, 0]].astype(np.float64)
    off_by = np.linalg.norm(projected[landmarks] - points2d, axis=1)
    result = solve_pnp(points2d, positions[landmarks], frame.camera, options)
    t_err, r_err = (pose_errors(result.T_world_camera, truth) if result.success
                    else (float('inf'), float('inf')))
    return {'in_view': len(in_view), 'matches': len(matches),
            'correct': int(np.sum(off_by < CORRECT_PX)), 't': t_err, 'r': r_err}


def main(argv=None) -> int:
    """Evaluate the oracle at each landmark budget; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--budgets', type=int, nargs='+', default=[64, 128, 256, 512])
    parser.add_argument('--split', choices=('interleaved', 'sequential'), default='interleaved')
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results'))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.monotonic()
    dataset = open_dataset(require_shared_data('7scenes-redkitchen'))
    features, mapping = FeatureConfig(), MappingConfig()
    observations = collect_observations(dataset, dataset.split(f'{args.split}-map'), features,
                                        progress=False)
    grid = mapping_grid(observations, mapping)
    tracks = build_tracks(observations)
    extractor = create_extractor(features)
    queries = []
    for frame in dataset.split(f'{args.split}-query'):
        found = extractor.extract(frame.load_image())
        queries.append((frame.camera.undistort_points(found.keypoints), found.descriptors,
                        found.kind, frame))
    print(f'[{time.monotonic() - started:5.0f} s] keypoints of {len(observations.poses)} '
          f'mapping and {len(queries)} query frames; {int(tracks.max()) + 1} tracks', flush=True)
    rows = []
    print(f'{"K":>5} {"landmarks":>9} {"5cm/5deg":>9} {"10cm/5deg":>9} {"median":>8} '
          f'{"correct matches (median, min)":>30}')
    for budget in args.budgets:
        positions, vectors = map_landmarks(observations, tracks, grid, budget)
        outcomes = [oracle_query(positions, vectors, query, PnPOptions()) for query in queries]
        t = np.array([o['t'] for o in outcomes])
        r = np.array([o['r'] for o in outcomes])
        correct = np.array([o['correct'] for o in outcomes])
        row = {'landmarks_per_voxel': budget, 'landmarks': len(positions),
               'recall': {'0.05m_5deg': float(np.mean((t < 0.05) & (r < 5))),
                          '0.10m_5deg': float(np.mean((t < 0.10) & (r < 5)))},
               'median_translation_m': float(np.median(t)),
               'correct_matches_median': float(np.median(correct)),
               'correct_matches_min': int(correct.min()),
               'misses_5cm': [q[3].name for q, ti, ri in zip(queries, t, r)
                              if not (ti < 0.05 and ri < 5)]}
        rows.append(row)
        print(f'{budget:5d} {len(positions):9d} {row["recall"]["0.05m_5deg"] * 100:8.1f}% '
              f'{row["recall"]["0.10m_5deg"] * 100:8.1f}% {np.median(t) * 100:6.2f}cm '
              f'{np.median(correct):>22.0f}, {correct.min()}', flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {'scene': f'redkitchen-{args.split}', 'what': 'oracle matcher over the landmarks '
              'a map keeps (true pose picks the landmarks in view); a yardstick for the decoder',
              'mapping': mapping.to_dict(), 'features': features.to_dict(),
              'correct_px': CORRECT_PX, 'budgets': rows}
    name = 'landmark_budget' + ('' if args.split == 'interleaved' else f'_{args.split}')
    atomic_write_bytes(out / f'{name}.json', json.dumps(json_safe(result), indent=1).encode())
    return 0


if __name__ == '__main__':
    sys.exit(main())
