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


# Axis ranges of the error CDFs: the first that holds 90 % of the localized queries' errors,
# so centimetre-level indoor results and metre-level outdoor ones are both readable.
_RANGES = {'translation_error_m': (0.5, 5.0, 50.0), 'rotation_error_deg': (10.0, 45.0, 180.0)}


def _errors(report, key):
    values = np.array([r[key] if r[key] is not None else np.inf
                       for r in report['per_query']], dtype=float)
    return np.sort(np.where(np.isnan(values), np.inf, values))


def _axis_limit(reports, key) -> float:
    errors = np.concatenate([_errors(report, key) for report in reports] + [np.zeros(0)])
    finite = errors[np.isfinite(errors)]
    spread = float(np.percentile(finite, 90)) if len(finite) else 0.0
    return next((limit for limit in _RANGES[key] if spread <= limit), _RANGES[key][-1])


def _positions(queries, key) -> np.ndarray:
    """Return (N, 3) camera positions of ``queries[i][key]``, NaN where a pose is missing."""
    rows = []
    for query in queries:
        matrix = query.get(key)
        try:   # a report read back from JSON holds null for a NaN entry
            rows.append(np.array(matrix, dtype=float)[:3, 3] if matrix else [np.nan] * 3)
        except (TypeError, ValueError, IndexError):
            rows.append([np.nan] * 3)
    return np.array(rows, dtype=float).reshape(-1, 3)


def plot_reports(reports: list, path, title: str = '') -> None:
    """Translation/rotation error CDFs of every report and the first report's trajectory."""
    figure, axes = pyplot.subplots(1, 3, figsize=(16, 4.8))
    limits = {key: _axis_limit(reports, key) for key in _RANGES}
    for report in reports:
        label = report['method']
        for axis, key, unit in ((axes[0], 'translation_error_m', 'm'),
                                (axes[1], 'rotation_error_deg', 'deg')):
            limit = limits[key]
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
    truth = _positions(reports[0]['per_query'], 'T_world_camera_truth') if reports \
        else np.zeros((0, 3))
    truth = truth[np.all(np.isfinite(truth), axis=1)]
    if len(truth):
        # Top view over the two axes with the largest spread.
        spread = np.argsort(-np.ptp(truth, axis=0))[:2]
        trajectory.plot(truth[:, spread[0]], truth[:, spread[1]], 'k.-', lw=0.8, ms=3,
                        label='ground truth')
        for report in reports:
            estimates = _positions(report['per_query'], 'T_world_camera')
            estimates = estimates[np.all(np.isfinite(estimates), axis=1)]
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
