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
Is the published pose covariance honest? Position errors against the predicted std.

Each scene's queries are localized with the maps ``bench/run_benchmarks.py`` built (in
``build/bench_maps``); for every localized query the covariance is recomputed from its inliers
for several 3D point errors (``point_std_m``, 0 = pixel noise only) and the ratio of the true
position error to the predicted position std sqrt(trace) is summarised. For a correct
Gaussian covariance the median ratio is 0.89 and the 90th percentile 1.44 (chi with 3 degrees
of freedom over sqrt(3)). The row ``default`` is what the localizer publishes. Prints a table
and writes ``bench/results/covariance_calibration.json``. About 2 minutes on 2 cores.

    python bench/covariance_calibration.py [--maps build/bench_maps]
"""

import argparse
import json
import os
from pathlib import Path
import sys

import numpy as np
from run_benchmarks import SCENES
import torch

from neumap_ros.core.data_paths import require_shared_data
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.evaluation import json_safe
from neumap_ros.core.localizer import load_localizer, LocalizerOptions
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.pnp import pose_covariance

POINT_STDS = (0.0, 0.01, 0.02, 0.035, 0.05)
# The chi distribution with 3 degrees of freedom over sqrt(3): a calibrated covariance.
GAUSSIAN = {'median': 0.888, 'p90': 1.443}


def ratios_of(localizer, frames, point_stds) -> dict:
    """Return {label: [error / predicted std]} over the localized queries."""
    ratios = {label: [] for label in ['default', *map(str, point_stds)]}
    for frame in frames:
        result = localizer.localize(frame.load_image(), frame.camera)
        if not result.success:
            continue
        error = np.linalg.norm(result.T_world_camera[:3, 3] - frame.T_world_camera[:3, 3])
        ratios['default'].append(error / np.sqrt(np.trace(result.covariance[:3, :3])))
        for std in point_stds:
            covariance = pose_covariance(result.T_world_camera,
                                         result.inlier_pixels.astype(np.float64),
                                         result.inlier_points, frame.camera.undistorted(), std)
            if covariance is not None:
                ratios[str(std)].append(error / np.sqrt(np.trace(covariance[:3, :3])))
    return ratios


def main(argv=None) -> int:
    """Measure every scene whose maps exist; print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--maps', default=str(Path(__file__).resolve().parents[1] / 'build'
                                              / 'bench_maps'))
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results'))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    results, rows = {}, []
    for name, folder, _, query_split, _, query_side in SCENES:
        for method in ('neural', 'features'):
            path = Path(args.maps) / f'{name}-{method}.safetensors'
            if not path.is_file():
                continue
            dataset = open_dataset(require_shared_data(*folder.split('/')))
            localizer = load_localizer(path, 'cpu', LocalizerOptions(max_image_side=query_side))
            ratios = ratios_of(localizer, dataset.split(query_split), POINT_STDS)
            summary = {label: {'median': float(np.median(v)) if v else None,
                               'p90': float(np.percentile(v, 90)) if v else None,
                               'queries': len(v)} for label, v in ratios.items()}
            summary['default_point_std_m'] = localizer.map_point_std()
            results[f'{name}/{method}'] = summary
            for label, values in summary.items():
                if isinstance(values, dict) and values['queries']:
                    rows.append((f'{name}/{method}', label, values['median'], values['p90'],
                                 values['queries']))
    if not rows:
        print(f'no maps in {args.maps}: run bench/run_benchmarks.py first', file=sys.stderr)
        return 1
    print(f'{"scene/method":36} {"point_std_m":>12} {"median":>7} {"p90":>7} {"n":>5}'
          f'   (calibrated: median {GAUSSIAN["median"]}, p90 {GAUSSIAN["p90"]})')
    for scene, label, median, p90, count in rows:
        print(f'{scene:36} {label:>12} {median:7.2f} {p90:7.2f} {count:5d}')
    out = Path(args.out) / 'covariance_calibration.json'
    atomic_write_bytes(out, json.dumps(json_safe({'gaussian': GAUSSIAN, 'scenes': results}),
                                       indent=1, allow_nan=False).encode())
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
