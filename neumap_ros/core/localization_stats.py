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
Rolling statistics of a running localizer and the health verdict built from them (ROS-free).

The localizer node feeds every input frame, result, dropped frame and rejected message into a
:class:`LocalizationStats`; :meth:`LocalizationStats.assess` turns the recent history into a
diagnostic level (OK / WARN / ERROR, the values of diagnostic_msgs/DiagnosticStatus) with a
sentence that says why, and :meth:`LocalizationStats.snapshot` into key-value pairs.
Times are seconds on any monotonic or ROS clock, passed in by the caller so tests control them.
"""

from collections import deque
from dataclasses import dataclass
import enum
import math
from typing import Deque, Dict, Optional, Tuple

import numpy as np


class Level(enum.IntEnum):
    """Diagnostic levels, numbered as diagnostic_msgs/DiagnosticStatus does."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class HealthThresholds:
    """When the verdict turns from OK to WARN or ERROR."""

    input_timeout_s: float = 5.0      # WARN: no image for this long
    min_success_rate: float = 0.3     # WARN: fewer localized than this over the window...
    min_attempts: int = 3             # ...once at least this many frames were attempted
    lost_after_failures: int = 10     # ERROR: this many failures in a row, no success between
    max_latency_ms: float = 0.0       # WARN: median latency above this (0: no check)


@dataclass
class _Event:
    time: float
    kind: str
    success: bool = False
    status: str = ''
    message: str = ''


class LocalizationStats:
    """Counters over the whole run plus a sliding window of recent events."""

    def __init__(self, window_s: float = 10.0, latency_samples: int = 100, now: float = 0.0):
        """Start empty at time ``now``; rates and rates of success use the last ``window_s``."""
        if not window_s > 0:
            raise ValueError(f'window_s must be positive, got {window_s}')
        self.window_s = float(window_s)
        self._latency: Dict[str, Deque[float]] = {}
        self._latency_samples = int(latency_samples)
        self._events: Deque[_Event] = deque()
        self.reset(now)

    def reset(self, now: float) -> None:
        """Forget everything, e.g. on activation; ``now`` starts the silence timer."""
        self.started = float(now)
        self._events.clear()
        self._latency.clear()
        # (inliers, inlier ratio, reprojection error px) of recent localized frames.
        self._quality: Deque[Tuple[int, float, float]] = deque(maxlen=self._latency_samples)
        self.totals = {'inputs': 0, 'attempts': 0, 'localized': 0, 'dropped': 0,
                       'rejected': 0, 'prior_retries': 0}
        self.consecutive_failures = 0
        self.last_input_time: Optional[float] = None
        self.last_success_time: Optional[float] = None
        self.last_failure: Optional[Tuple[str, str]] = None
        self.last_rejection: Optional[Tuple[float, str, str]] = None

    def _prune(self, now: float) -> None:
        oldest = now - self.window_s
        while self._events and self._events[0].time < oldest:
            self._events.popleft()

    def record_input(self, now: float) -> None:
        """Count a frame that arrived (before any checks)."""
        self.totals['inputs'] += 1
        self.last_input_time = now
        self._events.append(_Event(now, 'input'))
        self._prune(now)

    def record_dropped(self, now: float, count: int = 1) -> None:
        """Count frames skipped on purpose (superseded by a newer one, throttled, stale)."""
        if count > 0:
            self.totals['dropped'] += int(count)
            for _ in range(int(count)):
                self._events.append(_Event(now, 'dropped'))
            self._prune(now)

    def record_rejection(self, now: float, category: str, message: str) -> None:
        """Count an input that could not be used (bad encoding, bad calibration, bad stamp...)."""
        self.totals['rejected'] += 1
        self.last_rejection = (now, category, message)
        self._events.append(_Event(now, 'rejected', status=category, message=message))
        self._prune(now)

    def record_result(self, now: float, success: bool, status: str, timings_ms: dict,
                      message: str = '', prior_ignored: bool = False, inliers: int = 0,
                      inlier_ratio: float = float('nan'),
                      reprojection_px: float = float('nan')) -> None:
        """
        Count one localization attempt, its per-stage latencies and any global retry.

        For a localized frame, ``inliers``, ``inlier_ratio`` and ``reprojection_px`` (the PnP
        inliers' error) are kept: the pose's quality, which an integrator alarms on.
        """
        self.totals['attempts'] += 1
        self.totals['prior_retries'] += int(prior_ignored)
        if success:
            self.totals['localized'] += 1
            self.consecutive_failures = 0
            self.last_success_time = now
            self._quality.append((int(inliers), float(inlier_ratio), float(reprojection_px)))
        else:
            self.consecutive_failures += 1
            self.last_failure = (status, message)
        for stage, value in (timings_ms or {}).items():
            samples = self._latency.setdefault(stage, deque(maxlen=self._latency_samples))
            samples.append(float(value))
        self._events.append(_Event(now, 'result', success, status, message))
        self._prune(now)

    def _count(self, kind: str, success: Optional[bool] = None) -> int:
        return sum(1 for e in self._events
                   if e.kind == kind and (success is None or e.success == success))

    def _span(self, now: float) -> float:
        return max(min(self.window_s, now - self.started), 1e-9)

    def input_rate(self, now: float) -> float:
        """Return frames per second that arrived over the window."""
        self._prune(now)
        return self._count('input') / self._span(now)

    def localized_rate(self, now: float) -> float:
        """Return successful localizations per second over the window."""
        self._prune(now)
        return self._count('result', True) / self._span(now)

    def success_rate(self, now: float) -> float:
        """Return the fraction of attempts in the window that succeeded (NaN: no attempts)."""
        self._prune(now)
        attempts = self._count('result')
        return self._count('result', True) / attempts if attempts else float('nan')

    def latency(self, stage: str = 'total') -> dict:
        """Return median, p90 and max (ms) of a stage over the recent samples (NaN if none)."""
        samples = self._latency.get(stage)
        if not samples:
            return {'median': float('nan'), 'p90': float('nan'), 'max': float('nan')}
        values = np.asarray(samples)
        return {'median': float(np.median(values)), 'p90': float(np.percentile(values, 90)),
                'max': float(values.max())}

    def stages(self) -> list:
        """Return the stage names that have latency samples."""
        return sorted(self._latency)

    def assess(self, now: float,
               thresholds: HealthThresholds = HealthThresholds()) -> Tuple[Level, str]:
        """
        Return the health level and the reasons behind it, worst first.

        ERROR: every frame processed in the window was rejected, or localization is lost (many
        failures in a row). WARN: no input for a while, input for a while that never reaches the
        localizer, a recent rejected input, a low success rate, or high latency. OK otherwise.
        """
        self._prune(now)
        problems = []
        rejected = self._count('rejected')
        attempts = self._count('result')
        if rejected and not attempts:
            _, category, message = self.last_rejection
            problems.append((Level.ERROR, f'no usable input in the last {self.window_s:.0f} s, '
                                          f'{rejected} rejected ({category}: {message})'))
        elif rejected:
            _, category, message = self.last_rejection
            problems.append((Level.WARN, f'{rejected} inputs rejected in the last '
                                         f'{self.window_s:.0f} s, latest: {category}: {message}'))
        if self.consecutive_failures >= thresholds.lost_after_failures:
            status, message = self.last_failure
            problems.append((Level.ERROR, f'lost: {self.consecutive_failures} failed '
                                          f'localizations in a row (last: {status}: {message})'))
        arrivals = [e.time for e in self._events if e.kind == 'input']
        # Frames dropped on purpose (stale, throttled) have a cause of their own.
        if arrivals and not attempts and not rejected and not self._count('dropped') and \
                now - arrivals[0] > thresholds.input_timeout_s:
            # Images keep coming, so the silence check stays quiet, yet none is used.
            problems.append((Level.WARN, f'{len(arrivals)} images in the last '
                                         f'{self.window_s:.0f} s, none localized or rejected: '
                                         f'they pair with no camera_info (check its topic and '
                                         f'stamps, sync_tolerance)'))
        silent_since = self.last_input_time if self.last_input_time is not None else self.started
        if now - silent_since > thresholds.input_timeout_s:
            problems.append((Level.WARN, f'no image received for {now - silent_since:.1f} s '
                                         f'(check the topic names, QoS and camera driver)'))
        rate = self.success_rate(now)
        if attempts >= thresholds.min_attempts and rate < thresholds.min_success_rate and \
                self.consecutive_failures < thresholds.lost_after_failures:
            status, message = self.last_failure or ('', '')
            problems.append((Level.WARN, f'only {rate:.0%} of {attempts} recent frames '
                                         f'localized (last failure: {status}: {message})'))
        median = self.latency('total')['median']
        if thresholds.max_latency_ms > 0 and math.isfinite(median) and \
                median > thresholds.max_latency_ms:
            problems.append((Level.WARN, f'median latency {median:.0f} ms above '
                                         f'{thresholds.max_latency_ms:.0f} ms'))
        if not problems:
            if attempts:
                return Level.OK, (f'localizing: {self.input_rate(now):.1f} Hz in, '
                                  f'{self.localized_rate(now):.1f} Hz localized, '
                                  f'{rate:.0%} success')
            return Level.OK, 'waiting for images'
        problems.sort(key=lambda p: -p[0])
        return problems[0][0], '; '.join(text for _, text in problems)

    def snapshot(self, now: float) -> Dict[str, str]:
        """Return the statistics as strings, for diagnostic_msgs/KeyValue."""
        self._prune(now)
        rate = self.success_rate(now)
        values = {
            'input_rate_hz': f'{self.input_rate(now):.2f}',
            'localized_rate_hz': f'{self.localized_rate(now):.2f}',
            'success_rate': 'n/a' if math.isnan(rate) else f'{rate:.3f}',
            'frames_received': str(self.totals['inputs']),
            'frames_attempted': str(self.totals['attempts']),
            'frames_localized': str(self.totals['localized']),
            'frames_dropped': str(self.totals['dropped']),
            'inputs_rejected': str(self.totals['rejected']),
            'prior_retries': str(self.totals['prior_retries']),
            'consecutive_failures': str(self.consecutive_failures),
        }
        if self.last_success_time is not None:
            values['seconds_since_success'] = f'{now - self.last_success_time:.2f}'
        if self.last_failure is not None:
            values['last_failure'] = ': '.join(p for p in self.last_failure if p)
        if self.last_rejection is not None:
            values['last_rejection'] = f'{self.last_rejection[1]}: {self.last_rejection[2]}'
        if self._quality:
            inliers, ratios, errors = np.asarray(self._quality, dtype=float).T
            values['last_inliers'] = str(int(inliers[-1]))
            values['median_inliers'] = f'{np.median(inliers):.0f}'
            values['median_inlier_ratio'] = f'{np.median(ratios):.3f}'
            values['median_reprojection_px'] = f'{np.median(errors):.2f}'
        for stage in self.stages():
            latency = self.latency(stage)
            values[f'latency_ms_{stage}'] = f'{latency["median"]:.1f} (p90 {latency["p90"]:.1f})'
        return values
