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

"""Accuracy and latency of a localizer on posed query images, as a JSON-ready report."""

from dataclasses import asdict, dataclass
import logging
from typing import Optional

import numpy as np

from neumap_ros.core.camera import CameraError
from neumap_ros.core.datasets import DatasetError
from neumap_ros.core.features import ImageError
from neumap_ros.core.geometry import pose_errors
from neumap_ros.core.localizer import LocalizationResult
from neumap_ros.core.progress import progress_bar

LOG = logging.getLogger(__name__)

# Report key -> (metres, degrees) of the recalls in every report.
RECALL_THRESHOLDS = {'0.02m_2deg': (0.02, 2.0), '0.05m_5deg': (0.05, 5.0),
                     '0.10m_5deg': (0.10, 5.0), '0.25m_2deg': (0.25, 2.0),
                     '0.5m_5deg': (0.5, 5.0), '5m_10deg': (5.0, 10.0)}


@dataclass
class QueryRecord:
    """Outcome of one query."""

    name: str
    stamp: float
    success: bool
    status: str
    translation_error_m: float
    rotation_error_deg: float
    num_keypoints: int
    num_matches: int
    num_inliers: int
    timings_ms: dict
    T_world_camera: Optional[list] = None
    T_world_camera_truth: Optional[list] = None
    position_std_m: float = float('nan')


def record_from_result(name: str, stamp: float, result, T_world_truth: np.ndarray) -> QueryRecord:
    """
    Score a :class:`LocalizationResult` against ground truth.

    A failed query, or one whose error cannot be computed (a non-finite pose or ground
    truth), counts as infinitely wrong: a miss at every threshold and in every median.
    """
    if result.success:
        t_err, r_err = pose_errors(result.T_world_camera, T_world_truth)
        if not (np.isfinite(t_err) and np.isfinite(r_err)):
            t_err = r_err = float('inf')
        std = float(np.sqrt(np.trace(result.covariance[:3, :3])))
        pose = result.T_world_camera.tolist()
    else:
        t_err, r_err, std, pose = float('inf'), float('inf'), float('nan'), None
    return QueryRecord(name, stamp, bool(result.success), result.status, t_err, r_err,
                       result.num_keypoints, result.num_matches, result.num_inliers,
                       dict(result.timings_ms), pose, np.asarray(T_world_truth).tolist(), std)


def evaluate_frames(localizer, frames: list, progress: bool = True) -> list:
    """Localize each dataset frame (its own camera) and score it."""
    records = []
    for index, frame in enumerate(progress_bar(frames, progress, desc='localize',
                                               unit='img')):
        try:
            result = localizer.localize(frame.load_image(), frame.camera)
        except (CameraError, DatasetError, ImageError) as error:
            # One unreadable or mis-sized query is a failed query, not a lost evaluation.
            LOG.warning('query %s: %s', frame.name, error)
            result = LocalizationResult(False, 'bad_input', str(error))
        records.append(record_from_result(frame.name, float(index), result,
                                          frame.T_world_camera))
    return records


def _percentile(values, q):
    # Linear interpolation as np.percentile, but an infinite neighbour (a failed query) gives
    # inf: numpy returns NaN there (inf - inf), even for a median that is a finite sample.
    values = np.asarray(values, dtype=float)
    values = np.sort(np.where(np.isnan(values), np.inf, values))   # NaN: as a failure
    if len(values) == 0:
        return float('nan')
    position = q / 100.0 * (len(values) - 1)
    lower, upper = int(np.floor(position)), int(np.ceil(position))
    fraction = position - lower
    if fraction == 0.0 or values[lower] == values[upper]:
        return float(values[lower])
    return float(values[lower] + (values[upper] - values[lower]) * fraction)


def summarize(records: list, method: str, map_bytes: int = 0,
              mapping_seconds: Optional[float] = None, extra: dict = None) -> dict:
    """Build the report of ``neumap evaluate``: recalls, median errors, latency per stage."""
    t_err = np.array([r.translation_error_m for r in records], dtype=float)
    r_err = np.array([r.rotation_error_deg for r in records], dtype=float)
    localized = int(sum(r.success for r in records))
    recall = {key: float(np.mean((t_err <= m) & (r_err <= d))) if len(records) else 0.0
              for key, (m, d) in RECALL_THRESHOLDS.items()}
    stages = sorted({stage for r in records for stage in r.timings_ms})
    latency = {}
    for stage in stages:
        values = [r.timings_ms[stage] for r in records if stage in r.timings_ms]
        latency[stage] = {'median': _percentile(values, 50), 'p90': _percentile(values, 90)}
    statuses = {}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    report = {
        'method': method,
        'queries': len(records),
        'localized': localized,
        # Failed queries count as infinitely wrong, so medians are honest about failures.
        'median_translation_m': _percentile(t_err, 50) if len(records) else float('nan'),
        'median_rotation_deg': _percentile(r_err, 50) if len(records) else float('nan'),
        'recall': recall,
        'map_bytes': int(map_bytes),
        'mapping_seconds': mapping_seconds,
        'latency_ms': {'median': latency.get('total', {}).get('median', float('nan')),
                       'p90': latency.get('total', {}).get('p90', float('nan')),
                       'stages': latency},
        'status_counts': statuses,
        'per_query': [asdict(r) for r in records],
    }
    if extra:
        report.update(extra)
    return report


def json_safe(value):
    """Replace inf/NaN (invalid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def format_table(reports: list) -> str:
    """Plain-text comparison table of several reports."""
    header = ['method', 'queries', 'localized', 'med. t (m)', 'med. R (deg)', '5cm/5deg',
              '10cm/5deg', 'map MB', 'latency ms (med/p90)']
    rows = [header]
    for report in reports:
        label = str(report['method'])
        if report.get('scene'):
            label = f"{report['scene']} / {label}"
        rows.append([
            label, str(report['queries']), str(report['localized']),
            _fmt(report['median_translation_m'], 3), _fmt(report['median_rotation_deg'], 2),
            _fmt(report['recall']['0.05m_5deg'] * 100, 1) + '%',
            _fmt(report['recall']['0.10m_5deg'] * 100, 1) + '%',
            _fmt(report['map_bytes'] / 1e6, 2),
            f"{_fmt(report['latency_ms']['median'], 0)}/{_fmt(report['latency_ms']['p90'], 0)}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def _fmt(value, digits):
    if value is None or not np.isfinite(value):
        return 'inf' if value is not None and np.isinf(value) else 'n/a'
    return f'{value:.{digits}f}'
