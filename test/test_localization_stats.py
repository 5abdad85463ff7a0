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

"""Rolling localization statistics and the OK/WARN/ERROR verdict of the diagnostics."""

import math

import pytest

from neumap_ros.core.localization_stats import HealthThresholds, Level, LocalizationStats


def run(stats, start, seconds, rate, success=True, status='ok'):
    """Feed ``rate`` frames per second for ``seconds``, each attempted; return the end time."""
    n = int(seconds * rate)
    for i in range(n):
        now = start + i / rate
        stats.record_input(now)
        stats.record_result(now, success, status, {'features': 10.0 + i, 'total': 100.0 + i},
                            '' if success else 'only 3 inliers')
    return start + n / rate


def test_rates_and_latency():
    """Input and success rates over the window; latency median and p90 per stage."""
    stats = LocalizationStats(window_s=10.0, now=0.0)
    end = run(stats, 0.0, 10.0, 2.0)
    assert stats.input_rate(end) == pytest.approx(2.0, rel=0.06)
    assert stats.localized_rate(end) == pytest.approx(2.0, rel=0.06)
    assert stats.success_rate(end) == 1.0
    latency = stats.latency('total')
    assert latency['median'] == pytest.approx(109.5)
    assert latency['p90'] > latency['median'] and latency['max'] == 119.0
    assert stats.stages() == ['features', 'total']
    # After a silent window nothing is left but the totals.
    assert stats.input_rate(end + 20.0) == 0.0
    assert math.isnan(stats.success_rate(end + 20.0))
    assert stats.totals['inputs'] == 20


def test_ok_verdict_says_what_it_does():
    """A healthy stream is OK with rates and success in the message."""
    stats = LocalizationStats(now=0.0)
    end = run(stats, 0.0, 5.0, 2.0)
    level, message = stats.assess(end)
    assert level == Level.OK and '100% success' in message


def test_silence_warns():
    """No images for longer than input_timeout is a warning naming the likely causes."""
    stats = LocalizationStats(now=0.0)
    assert stats.assess(1.0)[0] == Level.OK
    level, message = stats.assess(6.0, HealthThresholds(input_timeout_s=5.0))
    assert level == Level.WARN and 'no image received for 6.0 s' in message


def test_images_that_never_reach_the_localizer_warn():
    """Images arriving for a while with no attempt (no camera_info pairs) are not 'OK'."""
    stats = LocalizationStats(now=0.0)
    for i in range(80):                         # 10 Hz for 8 s, none paired
        stats.record_input(i / 10.0)
    assert stats.assess(3.0)[0] == Level.OK     # not yet: the first frames may be in flight
    level, message = stats.assess(8.0, HealthThresholds(input_timeout_s=5.0))
    assert level == Level.WARN and 'pair with no camera_info' in message
    stats.record_result(8.0, True, 'ok', {'total': 90.0})
    assert stats.assess(8.0)[0] == Level.OK
    # Frames dropped on purpose (stale, throttled) are not blamed on camera_info.
    stale = LocalizationStats(now=0.0)
    for i in range(80):
        stale.record_input(i / 10.0)
        stale.record_dropped(i / 10.0)
    assert 'camera_info' not in stale.assess(8.0, HealthThresholds(input_timeout_s=5.0))[1]


def test_low_success_rate_warns_and_a_long_streak_is_lost():
    """A low success rate warns; many failures in a row are an error (lost)."""
    stats = LocalizationStats(now=0.0)
    end = run(stats, 0.0, 1.0, 2.0, success=True)
    end = run(stats, end, 3.0, 2.0, success=False, status='too_few_inliers')
    level, message = stats.assess(end, HealthThresholds(lost_after_failures=10))
    assert level == Level.WARN and 'only 25% of 8 recent frames' in message
    assert 'too_few_inliers' in message
    end = run(stats, end, 3.0, 2.0, success=False, status='too_few_inliers')
    level, message = stats.assess(end, HealthThresholds(lost_after_failures=10))
    assert level == Level.ERROR and 'lost: 12 failed localizations in a row' in message


def test_rejected_inputs():
    """Only rejected inputs is an error; a rejection among good frames a warning."""
    stats = LocalizationStats(now=0.0)
    stats.record_input(1.0)
    stats.record_rejection(1.0, 'image', 'unsupported image encoding "yuv422"')
    level, message = stats.assess(1.5)
    assert level == Level.ERROR and 'yuv422' in message
    end = run(stats, 2.0, 2.0, 2.0)
    level, message = stats.assess(end)
    assert level == Level.WARN and '1 inputs rejected' in message
    assert stats.snapshot(end)['last_rejection'].startswith('image: unsupported')
    # Once the rejection leaves the window the verdict recovers.
    end = run(stats, end, 12.0, 2.0)
    assert stats.assess(end)[0] == Level.OK


def test_latency_threshold_and_snapshot():
    """A median latency above max_latency_ms warns; the snapshot holds counters as strings."""
    stats = LocalizationStats(now=0.0)
    end = run(stats, 0.0, 2.0, 2.0)
    stats.record_dropped(end, 3)
    level, message = stats.assess(end, HealthThresholds(max_latency_ms=50.0))
    assert level == Level.WARN and 'median latency 102 ms' in message
    snapshot = stats.snapshot(end)
    assert snapshot['frames_dropped'] == '3' and snapshot['frames_localized'] == '4'
    assert snapshot['latency_ms_total'].startswith('101.5')
    assert all(isinstance(v, str) for v in snapshot.values())


def test_global_retries_after_a_failing_prior_are_counted():
    """A frame whose prior led nowhere and that was searched again globally is counted."""
    stats = LocalizationStats(now=0.0)
    stats.record_result(1.0, True, 'ok', {'total': 90.0})
    stats.record_result(2.0, True, 'ok', {'total': 150.0}, prior_ignored=True)
    stats.record_result(3.0, False, 'too_few_matches', {'total': 160.0}, 'none',
                        prior_ignored=True)
    values = stats.snapshot(3.0)
    assert values['prior_retries'] == '2' and values['frames_attempted'] == '3'
    assert values['frames_localized'] == '2'


def test_pose_quality_of_localized_frames_is_reported():
    """Inliers, inlier ratio and reprojection error come from localized frames only."""
    stats = LocalizationStats(now=0.0)
    assert 'median_inliers' not in stats.snapshot(0.0)
    stats.record_result(1.0, True, 'ok', {}, inliers=40, inlier_ratio=0.5, reprojection_px=1.0)
    stats.record_result(2.0, True, 'ok', {}, inliers=80, inlier_ratio=0.7, reprojection_px=2.0)
    stats.record_result(3.0, True, 'ok', {}, inliers=60, inlier_ratio=0.9, reprojection_px=1.5)
    stats.record_result(4.0, False, 'too_few_inliers', {}, inliers=5, inlier_ratio=0.1)
    values = stats.snapshot(4.0)
    assert values['last_inliers'] == '60' and values['median_inliers'] == '60'
    assert values['median_inlier_ratio'] == '0.700'
    assert values['median_reprojection_px'] == '1.50'
    stats.reset(5.0)
    assert 'last_inliers' not in stats.snapshot(5.0)
