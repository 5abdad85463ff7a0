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

"""Evaluation figures: error CDFs and a top view of the trajectory (matplotlib, no display)."""

import io

import matplotlib
import numpy as np

from neumap_ros.core.map_io import atomic_write_bytes

matplotlib.use('Agg')
from matplotlib import pyplot  # noqa: E402,I100 - the backend must be chosen first


def _errors(report, key):
    values = np.array([r[key] if r[key] is not None else np.inf
                       for r in report['per_query']], dtype=float)
    return np.sort(values)


def plot_reports(reports: list, path, title: str = '') -> None:
    """Translation/rotation error CDFs of every report and the first report's trajectory."""
    figure, axes = pyplot.subplots(1, 3, figsize=(16, 4.8))
    for report in reports:
        label = report['method']
        for axis, key, limit, unit in ((axes[0], 'translation_error_m', 0.5, 'm'),
                                       (axes[1], 'rotation_error_deg', 10.0, 'deg')):
            errors = _errors(report, key)
            if len(errors) == 0:
                continue
            fraction = np.arange(1, len(errors) + 1) / len(errors)
            axis.step(np.minimum(errors, limit * 1.01), fraction, where='post', label=label)
            axis.set_xlim(0, limit)
            axis.set_xlabel(f'{key.split("_")[0]} error ({unit})')
            axis.set_ylabel('fraction of queries')
            axis.set_ylim(0, 1)
            axis.grid(alpha=0.3)
    axes[0].legend(loc='lower right')
    axes[0].set_title('translation error CDF')
    axes[1].set_title('rotation error CDF')

    trajectory = axes[2]
    truth = np.array([np.array(r['T_world_camera_truth'])[:3, 3]
                      for r in reports[0]['per_query']]) if reports and \
        reports[0]['per_query'] else np.zeros((0, 3))
    if len(truth):
        # Top view over the two axes with the largest spread.
        spread = np.argsort(-np.ptp(truth, axis=0))[:2]
        trajectory.plot(truth[:, spread[0]], truth[:, spread[1]], 'k.-', lw=0.8, ms=3,
                        label='ground truth')
        for report in reports:
            estimates = np.array([np.array(r['T_world_camera'])[:3, 3]
                                  for r in report['per_query'] if r['T_world_camera']])
            if len(estimates):
                trajectory.plot(estimates[:, spread[0]], estimates[:, spread[1]], '.', ms=5,
                                label=f'{report["method"]} estimates')
        trajectory.set_xlabel(f'{"xyz"[spread[0]]} (m)')
        trajectory.set_ylabel(f'{"xyz"[spread[1]]} (m)')
        trajectory.axis('equal')
        trajectory.legend(loc='best', fontsize=8)
    trajectory.set_title('camera positions (top view)')
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=110)
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
