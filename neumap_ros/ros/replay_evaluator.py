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
Score the live localizer against a bag's ground truth while the bag plays (``replay_evaluator``).

Subscribes to the localizer's PoseWithCovarianceStamped, the bag's ground-truth PoseStamped and
the camera's CameraInfo, and on exit (SIGINT from launch, or ``idle_timeout`` seconds after the
last message of any of them) writes the report of ``neumap evaluate`` and TUM trajectories of
the camera for ``evo``. Every camera frame (a CameraInfo stamp) is a query: a frame the
localizer did not answer (dropped as stale, or failed) counts as not localized, so the report
reflects the throughput of the running system. Its ground truth is the sample at its stamp or
interpolated between samples (a motion-capture topic at another rate); frames outside the
ground truth are counted apart. The estimate, usually the base_link pose, is turned into the
ground truth's frame with the transform between them from TF, and both must be given in the
same world frame. Latency is wall time from the frame's CameraInfo arriving here to its pose
arriving, so it does not depend on the playback rate. Ground truth and CameraInfo are
subscribed to reliably, and best effort too when a publisher offers only that, so
best-effort recordings are heard.
"""

import json
import os
import sys
import time
from types import SimpleNamespace

from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
import numpy as np
import rclpy
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from tf2_msgs.msg import TFMessage

from neumap_ros.core.pose_timeline import PoseTimeline
from neumap_ros.core.transform_buffer import TransformBuffer, TransformError
from neumap_ros.ros.msg_conversions import covariance_from_msg, NS_PER_S, pose_to_matrix, \
    stamp_to_ns, transform_to_matrix
from neumap_ros.ros.parameters import declare_parameters, read_parameters

PARAMETERS = {
    'pose_topic': ('/localizer_node/pose', 'PoseWithCovarianceStamped of the localizer'),
    'gt_topic': ('/ground_truth/camera_pose', 'PoseStamped ground truth of the camera'),
    'camera_info_topic': ('/camera/color/camera_info', 'CameraInfo of the localized camera: '
                          'its stamps are the queries (empty: the ground-truth stamps)'),
    'estimate_frame': ('base_link', 'frame whose pose the localizer publishes (empty: the '
                       'frame of the ground truth, for a localizer publishing camera poses)'),
    'gt_frame': ('camera_color_optical_frame',
                 'frame whose pose the ground truth gives (empty: the same as estimate_frame)'),
    'sync_tolerance': (0.0, 'seconds between a frame and the nearest ground truth when it '
                            'cannot be interpolated'),
    'json_path': ('', 'report file (JSON)'),
    'tum_path': ('', 'estimated camera trajectory (TUM)'),
    'gt_tum_path': ('', 'ground-truth camera trajectory (TUM)'),
    'plot_path': ('', 'error CDF and trajectory plot (PNG)'),
    'idle_timeout': (0.0, 'exit this many seconds after the last message (0: never)'),
    'method': ('', 'method name written in the report (empty: the map method plus '
                   '"(ROS replay)")'),
    'map_path': ('', 'map the localizer uses: its size and mapping time go in the report'),
}


def map_facts(path: str) -> tuple:
    """Return (bytes, mapping seconds or None) of a map file; (0, None) without one."""
    if not path:
        return 0, None
    from neumap_ros.core.localizer import map_header
    path = os.path.abspath(os.path.expanduser(path))   # as the localizer reads it
    info = map_header(path).get('info')
    seconds = info.get('mapping_seconds') if isinstance(info, dict) else None
    return os.path.getsize(path), seconds


class ReplayEvaluator(Node):
    """Collects estimates, ground truth and frame stamps; :meth:`write` produces the report."""

    def __init__(self, **kwargs):
        """Declare parameters and subscribe (``kwargs`` go to rclpy's Node)."""
        super().__init__('replay_evaluator', **kwargs)
        declare_parameters(self, PARAMETERS)
        self.param = read_parameters(self, PARAMETERS)
        self.map_facts = map_facts(self.param['map_path'])   # read now: a bad path fails now
        self.method = self.param['method'] or self._map_method()
        self.truth = PoseTimeline(int(round(self.param['sync_tolerance'] * NS_PER_S)))
        self.frames = {}      # stamp_ns -> wall time its CameraInfo arrived
        self.estimates = {}   # stamp_ns -> [T_world_estimate, T_world_gtframe or None,
        #                                    covariance, latency_ms]
        self.counts = {'duplicate_estimates': 0, 'invalid_estimates': 0, 'invalid_truth': 0}
        self.world_frames = {'estimate': set(), 'ground_truth': set()}
        # A minute of /tf: estimates are converted when they arrive (see _on_estimate).
        self.tf = TransformBuffer(cache_time=60.0)
        self.last_message_time = None
        # On sim time, a clock that moves means the bag still plays (e.g. through a camera
        # dropout longer than idle_timeout): not idle.
        self._sim_time = bool(self.get_parameter('use_sim_time').value)
        self._last_sim_ns = self.get_clock().now().nanoseconds
        self.create_subscription(PoseWithCovarianceStamped, self.param['pose_topic'],
                                 self._on_estimate, 100)
        self.create_subscription(TFMessage, '/tf', self._on_tf, QoSProfile(depth=100))
        self.create_subscription(
            TFMessage, '/tf_static', self._on_tf_static,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        # Reliable from the start (what a player or driver usually offers), plus best effort
        # for a publisher that offers only that (see _subscribe_as_offered).
        self.inputs = {self.param['gt_topic']: (PoseStamped, self._on_truth)}
        if self.param['camera_info_topic']:
            self.inputs[self.param['camera_info_topic']] = (CameraInfo, self._on_frame)
        for topic, (kind, callback) in self.inputs.items():
            # A best-effort publisher is expected: no warning about the QoS mismatch.
            self.create_subscription(
                kind, topic, callback, QoSProfile(depth=100,
                                                  reliability=ReliabilityPolicy.RELIABLE),
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda _: None))
        self._best_effort = set()
        self.create_timer(0.5, self._subscribe_as_offered)

    def _map_method(self) -> str:
        if not self.param['map_path']:
            return 'localizer_node'
        from neumap_ros.core.localizer import map_method
        return f'{map_method(os.path.expanduser(self.param["map_path"]))} (ROS replay)'

    def _subscribe_as_offered(self) -> None:
        # A reliable subscription never hears a best-effort publisher (a camera recorded as
        # offered); a best-effort one would lose samples of a reliable publisher. So both,
        # once such a publisher shows up: a sample heard twice counts once.
        for topic, (kind, callback) in self.inputs.items():
            if topic in self._best_effort:
                continue
            if any(o.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                   for o in self.get_publishers_info_by_topic(topic)):
                self.create_subscription(kind, topic, callback, QoSProfile(
                    depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
                self._best_effort.add(topic)
                self.get_logger().info(f'{topic} is offered best effort: subscribed so too')

    def _touch(self) -> None:
        self.last_message_time = time.monotonic()

    def _add_transforms(self, msg: TFMessage, static: bool) -> None:
        for transform in msg.transforms:
            try:
                self.tf.set_matrix(transform.header.frame_id, transform.child_frame_id,
                                   stamp_to_ns(transform.header.stamp) / NS_PER_S,
                                   transform_to_matrix(transform.transform), static=static)
            except ValueError:
                continue

    def _on_tf(self, msg: TFMessage) -> None:
        # The camera mount may come on /tf (a robot_state_publisher with moving joints).
        self._add_transforms(msg, False)

    def _on_tf_static(self, msg: TFMessage) -> None:
        self._add_transforms(msg, True)

    def _on_frame(self, msg: CameraInfo) -> None:
        self.frames.setdefault(stamp_to_ns(msg.header.stamp), time.monotonic())   # first
        self._touch()

    def _on_truth(self, msg: PoseStamped) -> None:
        self._touch()
        try:
            pose = pose_to_matrix(msg.pose)
        except ValueError:
            self.counts['invalid_truth'] += 1
            return
        self.world_frames['ground_truth'].add(msg.header.frame_id.strip('/'))
        self.truth.add(stamp_to_ns(msg.header.stamp), pose)   # a repeat is ignored

    def _on_estimate(self, msg: PoseWithCovarianceStamped) -> None:
        self._touch()
        arrived = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp in self.estimates:
            self.counts['duplicate_estimates'] += 1   # the first answer is the one scored
            return
        try:
            pose = pose_to_matrix(msg.pose.pose)
            covariance = covariance_from_msg(msg.pose.covariance)
        except ValueError:
            self.counts['invalid_estimates'] += 1
            return
        self.world_frames['estimate'].add(msg.header.frame_id.strip('/'))
        if stamp in self.frames:
            latency_ms = (arrived - self.frames[stamp]) * 1e3
        else:   # no CameraInfo seen for it: fall back to the ROS clock
            latency_ms = (self.get_clock().now().nanoseconds - stamp) / 1e6
        # Converted now, while TF for the stamp is fresh; retried at the end if TF came late.
        self.estimates[stamp] = [pose, self._in_gt_frame(stamp, pose), covariance, latency_ms]

    def idle(self) -> bool:
        """
        Tell whether nothing arrived for longer than ``idle_timeout`` after the first message.

        On sim time an advancing clock counts as an arrival: the player still plays the bag.
        (Not TF: the localizer keeps republishing map -> odom after the bag ended.)
        """
        if self._sim_time and self.last_message_time is not None:
            now = self.get_clock().now().nanoseconds
            if now != self._last_sim_ns:
                self._last_sim_ns = now
                self._touch()
        timeout = self.param['idle_timeout']
        return bool(timeout > 0 and self.last_message_time is not None
                    and time.monotonic() - self.last_message_time > timeout)

    def frame_problem(self) -> str:
        """Say why estimates and ground truth cannot be compared ('' when they can)."""
        estimate, truth = self.world_frames['estimate'], self.world_frames['ground_truth']
        if len(estimate) > 1 or len(truth) > 1 or estimate and truth and estimate != truth:
            return (f'estimates are in frame(s) {sorted(estimate)} and ground truth in '
                    f'{sorted(truth)}: they must share one world frame')
        return ''

    def _in_gt_frame(self, stamp: int, T_world_estimate: np.ndarray):
        """Return the estimate as a pose of the ground truth's frame, or None without TF."""
        source, target = self.param['estimate_frame'], self.param['gt_frame']
        if not source or not target or target == source:
            return T_world_estimate
        try:
            return T_world_estimate @ self.tf.lookup(source, target, stamp / NS_PER_S)
        except TransformError:
            return None

    def queries(self) -> list:
        """Return the stamps scored: the camera's frames, or the ground truth's samples."""
        if self.param['camera_info_topic']:
            return sorted(self.frames)
        return [int(s) for s in self.truth.stamps()]

    def report(self) -> dict:
        """Return the ``neumap evaluate`` report of everything received so far."""
        from neumap_ros.core.evaluation import record_from_result, summarize
        records, unconverted, without_truth = [], 0, 0
        problem = self.frame_problem()
        for stamp in self.queries():
            truth = self.truth.pose_at(stamp)
            if truth is None:
                without_truth += 1
                continue
            estimate = self.estimates.get(stamp)
            result = SimpleNamespace(success=False, status='no_pose', T_world_camera=None,
                                     covariance=None, num_keypoints=0, num_matches=0,
                                     num_inliers=0, timings_ms={})
            if estimate is not None and not problem:
                T = estimate[1] if estimate[1] is not None else \
                    self._in_gt_frame(stamp, estimate[0])
                if T is None:
                    unconverted += 1
                    result.status = 'no_mount_transform'
                else:
                    result = SimpleNamespace(success=True, status='ok', T_world_camera=T,
                                             covariance=estimate[2], num_keypoints=0,
                                             num_matches=0, num_inliers=0,
                                             timings_ms={'total': estimate[3]})
            records.append(record_from_result(str(stamp), stamp / NS_PER_S, result, truth))
        answered = set(self.estimates)
        return summarize(records, self.method, *self.map_facts, extra=dict(self.counts, **{
            'pose_topic': self.param['pose_topic'], 'gt_topic': self.param['gt_topic'],
            'camera_info_topic': self.param['camera_info_topic'],
            'map': self.param['map_path'],
            'frames_received': len(self.frames), 'ground_truth_received': len(self.truth),
            'estimates_received': len(self.estimates),
            'estimates_without_frame': len(answered - set(self.frames))
            if self.param['camera_info_topic'] else 0,
            'frames_without_ground_truth': without_truth,
            'estimates_without_transform': unconverted,
            'frame_problem': problem,
            'latency_note': 'total = arrival of the pose - arrival of the CameraInfo of its '
                            'frame (wall time)'}))

    def write(self) -> dict:
        """Write the report, trajectories and plot to the configured paths."""
        from neumap_ros.core.bags import tum_line
        from neumap_ros.core.evaluation import json_safe
        from neumap_ros.core.map_io import atomic_write_bytes
        report = self.report()
        header = '# timestamp tx ty tz qx qy qz qw\n'
        if self.param['json_path']:
            atomic_write_bytes(self.param['json_path'],
                               json.dumps(json_safe(report), indent=1,
                                          allow_nan=False).encode())
        if self.param['tum_path']:
            # The query's name is its stamp in nanoseconds: written exactly.
            lines = [tum_line(int(q['name']), np.array(q['T_world_camera']))
                     for q in report['per_query'] if q['T_world_camera']]
            atomic_write_bytes(self.param['tum_path'], (header + ''.join(lines)).encode())
        if self.param['gt_tum_path']:
            lines = [tum_line(int(s), self.truth.poses[int(s)]) for s in self.truth.stamps()]
            atomic_write_bytes(self.param['gt_tum_path'], (header + ''.join(lines)).encode())
        plot = self.param['plot_path']
        if plot and report['queries']:
            from neumap_ros.core.plots import plot_reports
            plot_reports([report], plot, 'replay evaluation')
        elif plot and os.path.exists(plot):
            os.remove(plot)   # an old run's plot must not sit beside this report
        # Printed, not logged: on SIGINT the context (and with it /rosout) is already gone.
        median_t, median_r = report['median_translation_m'], report['median_rotation_deg']
        print(f'replay_evaluator: {report["localized"]}/{report["queries"]} frames localized, '
              f'median error {median_t:.3f} m / {median_r:.2f} deg', flush=True)
        if report['frame_problem']:
            print(f'replay_evaluator: error: {report["frame_problem"]}', file=sys.stderr,
                  flush=True)
        elif not report['queries']:
            print('replay_evaluator: error: no frame with ground truth was received (check '
                  'gt_topic and camera_info_topic)', file=sys.stderr, flush=True)
        return report


def main(args=None) -> int:
    """Collect until interrupted (or idle), then write the report."""
    report = None
    try:
        with rclpy.init(args=args):
            try:
                node = ReplayEvaluator()
            except ValueError as error:
                print(f'replay_evaluator: error: {error}', file=sys.stderr)
                return 2
            try:
                while rclpy.ok() and not node.idle():
                    rclpy.spin_once(node, timeout_sec=0.1)
            finally:
                report = node.write()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    # Nothing scored, or nothing comparable, is a failed evaluation, not an empty success.
    return 1 if report is None or report['frame_problem'] or not report['queries'] else 0


if __name__ == '__main__':
    sys.exit(main())
