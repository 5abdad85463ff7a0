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
Evaluation reports: recalls, honest medians with failures, latency statistics, JSON, tables.

Expected values are worked out by hand from the records each test builds.
"""

import json
import math

import numpy as np
import pytest

from neumap_ros.core.evaluation import format_table, json_safe, QueryRecord, \
    RECALL_THRESHOLDS, record_from_result, summarize
from neumap_ros.core.geometry import make_transform
from neumap_ros.core.localizer import LocalizationResult

INF = float('inf')
RECALL_KEYS = {'0.02m_2deg', '0.05m_5deg', '0.10m_5deg', '0.25m_2deg', '0.5m_5deg', '5m_10deg'}


def record(t_err, r_err, total_ms=10.0, success=None, status=None, stages=None):
    """Return a QueryRecord with the given errors (infinite errors mean a failure)."""
    success = math.isfinite(t_err) if success is None else success
    timings = {'total': total_ms}
    timings.update(stages or {})
    return QueryRecord('q', 0.0, success, status or ('ok' if success else 'too_few_matches'),
                       t_err, r_err, 500, 100, 50 if success else 0, timings)


def test_recall_keys_and_values():
    """The six recall keys are exactly the published ones; each counts both thresholds."""
    assert set(RECALL_THRESHOLDS) == RECALL_KEYS
    records = [record(0.01, 1.0), record(0.04, 4.0), record(0.2, 1.0), record(INF, INF)]
    report = summarize(records, 'features')
    assert set(report['recall']) == RECALL_KEYS
    assert report['recall'] == {
        '0.02m_2deg': 0.25,   # only the first
        '0.05m_5deg': 0.5,    # first two
        '0.10m_5deg': 0.5,
        '0.25m_2deg': 0.5,    # first and third (the second turned 4 deg)
        '0.5m_5deg': 0.75,    # all but the failure
        '5m_10deg': 0.75,
    }
    assert report['queries'] == 4 and report['localized'] == 3
    assert report['method'] == 'features'
    assert report['status_counts'] == {'ok': 3, 'too_few_matches': 1}


def test_thresholds_are_inclusive():
    """An error exactly on a threshold counts as within it."""
    report = summarize([record(0.05, 5.0)], 'neural')
    assert report['recall']['0.05m_5deg'] == 1.0
    assert report['recall']['0.02m_2deg'] == 0.0


def test_failures_count_as_infinitely_wrong_in_medians():
    """Medians include failures as infinite errors: finite while most succeed, inf after."""
    report = summarize([record(0.01, 1.0), record(0.04, 2.0), record(INF, INF)], 'features')
    assert report['median_translation_m'] == pytest.approx(0.04)
    assert report['median_rotation_deg'] == pytest.approx(2.0)
    report = summarize([record(0.01, 1.0), record(0.03, 3.0), record(0.2, 1.0),
                        record(INF, INF)], 'features')
    assert report['median_translation_m'] == pytest.approx(0.115)   # (0.03 + 0.2) / 2
    report = summarize([record(0.01, 1.0), record(0.04, 2.0), record(INF, INF),
                        record(INF, INF)], 'features')
    assert report['median_translation_m'] == INF                  # half failed
    assert report['median_rotation_deg'] == INF
    report = summarize([record(0.01, 1.0), record(INF, INF), record(INF, INF)], 'features')
    assert report['median_translation_m'] == INF
    # The plain table shows it as inf, not as missing.
    assert 'inf' in format_table([report]).splitlines()[1]


def test_latency_statistics_per_stage():
    """Median and p90 (linear interpolation) of the total and of every stage."""
    records = [record(0.01, 1.0, total, stages={'features': total / 2})
               for total in (10.0, 20.0, 30.0, 40.0)]
    records[0].timings_ms['pnp'] = 7.0                  # a stage only one query ran
    latency = summarize(records, 'features')['latency_ms']
    assert latency['median'] == pytest.approx(25.0)
    assert latency['p90'] == pytest.approx(37.0)        # 30 + 0.7 * (40 - 30)
    assert latency['stages']['features'] == {'median': pytest.approx(12.5),
                                             'p90': pytest.approx(18.5)}
    assert latency['stages']['pnp'] == {'median': 7.0, 'p90': 7.0}
    assert set(latency['stages']) == {'total', 'features', 'pnp'}


def test_report_fields_and_extras():
    """Map size, mapping time, per-query records and extra entries are in the report."""
    report = summarize([record(0.01, 1.0)], 'neural', map_bytes=1234, mapping_seconds=5.5,
                       extra={'dataset': 'kitchen'})
    assert report['map_bytes'] == 1234 and report['mapping_seconds'] == 5.5
    assert report['dataset'] == 'kitchen'
    assert report['per_query'][0]['translation_error_m'] == 0.01
    assert report['per_query'][0]['status'] == 'ok'


def test_empty_evaluation():
    """No queries: zero counts, zero recalls and NaN medians, no exception."""
    report = summarize([], 'features')
    assert report['queries'] == 0 and report['localized'] == 0
    assert set(report['recall']) == RECALL_KEYS
    assert all(value == 0.0 for value in report['recall'].values())
    assert math.isnan(report['median_translation_m'])
    assert math.isnan(report['latency_ms']['median'])
    json.dumps(json_safe(report), allow_nan=False)


def test_record_from_result_scores_success_and_failure():
    """A successful result is scored against the truth; a failure gets infinite errors."""
    truth = make_transform(np.eye(3), [1.0, 2.0, 3.0])
    estimate = make_transform(np.eye(3), [1.0, 2.0, 3.3])
    covariance = np.diag([0.01, 0.04, 0.04, 1e-4, 1e-4, 1e-4])
    ok = LocalizationResult(True, 'ok', T_world_camera=estimate, covariance=covariance,
                            num_keypoints=900, num_matches=300, num_inliers=200,
                            timings_ms={'total': 12.0})
    scored = record_from_result('frame-1', 3.0, ok, truth)
    assert scored.success and scored.status == 'ok'
    assert scored.translation_error_m == pytest.approx(0.3)
    assert scored.rotation_error_deg == pytest.approx(0.0, abs=1e-6)
    assert scored.position_std_m == pytest.approx(0.3)          # sqrt(0.01 + 0.04 + 0.04)
    assert scored.T_world_camera == estimate.tolist()
    assert (scored.num_keypoints, scored.num_matches, scored.num_inliers) == (900, 300, 200)
    failed = LocalizationResult(False, 'too_few_keypoints', num_keypoints=3)
    scored = record_from_result('frame-2', 4.0, failed, truth)
    assert not scored.success and scored.status == 'too_few_keypoints'
    assert scored.translation_error_m == INF and scored.rotation_error_deg == INF
    assert scored.T_world_camera is None and math.isnan(scored.position_std_m)
    assert scored.T_world_camera_truth == truth.tolist()


def test_an_unscorable_success_counts_as_a_miss():
    """
    A 'successful' result whose error cannot be computed is a miss, not NaN in the report.

    A NaN error would also turn an interpolated median into NaN ("undefined") where the
    failures make it infinite.
    """
    truth = make_transform(np.eye(3), [0.0, 0.0, 0.0])
    nan_truth = truth.copy()
    nan_truth[0, 3] = float('nan')
    ok = LocalizationResult(True, 'ok', T_world_camera=truth, covariance=np.eye(6) * 1e-4,
                            timings_ms={'total': 1.0})
    scored = record_from_result('frame-3', 0.0, ok, nan_truth)
    assert scored.translation_error_m == INF and scored.rotation_error_deg == INF
    records = [record(0.01, 1.0), record(float('nan'), float('nan'), success=True)]
    report = summarize(records, 'neural')
    assert report['median_translation_m'] == INF and report['median_rotation_deg'] == INF
    assert report['recall']['0.05m_5deg'] == pytest.approx(0.5)


def test_json_safe_makes_strict_json():
    """inf/NaN (also numpy scalars) become null; numpy numbers become plain numbers."""
    value = {'a': INF, 'b': [float('nan'), 1.5, (np.float32(np.inf), np.float64(2.5))],
             'c': {'d': np.int64(7), 'e': np.bool_(True), 'f': 'text', 'g': None},
             'h': np.float64(np.nan)}
    safe = json_safe(value)
    assert safe == {'a': None, 'b': [None, 1.5, [None, 2.5]],
                    'c': {'d': 7, 'e': True, 'f': 'text', 'g': None}, 'h': None}
    assert type(safe['c']['d']) is int
    text = json.dumps(safe, allow_nan=False)
    assert json.loads(text) == safe


def test_format_table_lines_up_reports():
    """One header and one row per report, columns aligned, recalls as percentages."""
    good = summarize([record(0.01, 1.0, 20.0), record(0.04, 4.0, 40.0)], 'features',
                     map_bytes=2_500_000)
    bad = summarize([record(INF, INF, 5.0)], 'neural', map_bytes=100_000)
    lines = format_table([good, bad]).splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:3] == ['method', 'queries', 'localized']
    assert lines[1].split() == ['features', '2', '2', '0.025', '2.50', '100.0%', '100.0%',
                                '2.50', '30/38']
    assert lines[2].split() == ['neural', '1', '0', 'inf', 'inf', '0.0%', '0.0%', '0.10',
                                '5/5']
    # Columns start at the same offsets on every line.
    starts = [lines[0].index('queries'), lines[0].index('localized')]
    assert lines[1][starts[0]:].startswith('2') and lines[2][starts[0]:].startswith('1')
    assert lines[1][starts[1]:].startswith('2') and lines[2][starts[1]:].startswith('0')
    empty = summarize([], 'features')
    assert 'n/a' in format_table([empty]).splitlines()[1]


def test_plot_of_a_report_read_back_from_json(tmp_path):
    """
    A report whose poses held NaN (null in JSON) still plots, as evaluate --plot and the demo do.

    The CDF range widens for metre-level (outdoor) errors instead of clipping them.
    """
    from neumap_ros.core.plots import _axis_limit, plot_reports
    truth = make_transform(np.eye(3), [1.0, 2.0, 0.5])
    broken = truth.copy()
    broken[1, 3] = float('nan')
    records = [record_from_result(f'q{i}', float(i), LocalizationResult(
        True, 'ok', T_world_camera=make_transform(np.eye(3), [1.0 + 0.01 * i, 2.0, 0.5]),
        covariance=np.eye(6) * 1e-4, timings_ms={'total': 5.0}), truth) for i in range(4)]
    records.append(record_from_result('q4', 4.0, LocalizationResult(False, 'pnp_failed'),
                                      broken))
    report = json.loads(json.dumps(json_safe(summarize(records, 'neural')), allow_nan=False))
    assert report['per_query'][4]['T_world_camera_truth'][1][3] is None
    path = tmp_path / 'plot.png'
    plot_reports([report], path, 'read back')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert _axis_limit([report], 'translation_error_m') == 0.5
    outdoor = summarize([record(t, 1.0) for t in (0.8, 1.5, 2.5, 3.0)], 'features')
    assert _axis_limit([report, outdoor], 'translation_error_m') == 5.0
    assert _axis_limit([summarize([record(INF, INF)], 'neural')], 'rotation_error_deg') == 10.0
