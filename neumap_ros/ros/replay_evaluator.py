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

Subscribes to the localizer's PoseWithCovarianceStamped and the bag's ground-truth PoseStamped,
pairs them by stamp, and on exit (SIGINT from launch when the bag ends, or ``idle_timeout``
seconds after the last ground truth) writes the report of ``neumap evaluate`` and TUM
trajectories of the camera for ``evo``. Every ground-truth frame is a query: a frame the
localizer did not answer (dropped as stale, or failed) counts as not localized, so the report
reflects the throughput of the running system. The estimate, usually the base_link pose, is
turned into the ground truth's frame with the static transform between them from /tf_static.
"""

import json
import os
import sys
import time
from types import SimpleNamespace

from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from neumap_ros.core.transform_buffer import TransformBuffer, TransformError
from neumap_ros.ros.msg_conversions import covariance_from_msg, NS_PER_S, pose_to_matrix, \
    stamp_to_ns, transform_to_matrix
from neumap_ros.ros.parameters import declare_parameters, read_parameters

PARAMETERS = {
    'pose_topic': ('/localizer_node/pose', 'PoseWithCovarianceStamped of the localizer'),
    'gt_topic': ('/ground_truth/camera_pose', 'PoseStamped ground truth of the camera'),
    'estimate_frame': ('base_link', 'frame whose pose the localizer publishes'),
    'gt_frame': ('camera_color_optical_frame',
                 'frame whose pose the ground truth gives (empty: the same as estimate_frame)'),
    'json_path': ('', 'report file (JSON)'),
    'tum_path': ('', 'estimated camera trajectory (TUM)'),
    'gt_tum_path': ('', 'ground-truth camera trajectory (TUM)'),
    'plot_path': ('', 'error CDF and trajectory plot (PNG)'),
    'idle_timeout': (0.0, 'exit this many seconds after the last ground truth (0: never)'),
    'method': ('localizer_node', 'method name written in the report'),
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
    """Collects estimates and ground truth; :meth:`write` produces the report."""

    def __init__(self):
        """Declare parameters and subscribe."""
        super().__init__('replay_evaluator')
        declare_parameters(self, PARAMETERS)
        self.param = read_parameters(self, PARAMETERS)
        self.map_facts = map_facts(self.param['map_path'])   # read now: a bad path fails now
        self.truth = {}       # stamp_ns -> T_map_gtframe
        self.estimates = {}   # stamp_ns -> (T_map_estimateframe, covariance, latency_ms)
        self.tf = TransformBuffer(cache_time=3600.0)
        self.last_truth_time = None
        self.create_subscription(PoseWithCovarianceStamped, self.param['pose_topic'],
                                 self._on_estimate, 100)
        self.create_subscription(PoseStamped, self.param['gt_topic'], self._on_truth, 100)
        self.create_subscription(
            TFMessage, '/tf_static', self._on_tf_static,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def _on_tf_static(self, msg: TFMessage) -> None:
        for transform in msg.transforms:
            try:
                self.tf.set_matrix(transform.header.frame_id, transform.child_frame_id, 0.0,
                                   transform_to_matrix(transform.transform), static=True)
            except ValueError:
                continue

    def _on_truth(self, msg: PoseStamped) -> None:
        try:
            self.truth[stamp_to_ns(msg.header.stamp)] = pose_to_matrix(msg.pose)
        except ValueError:
            return
        self.last_truth_time = time.monotonic()

    def _on_estimate(self, msg: PoseWithCovarianceStamped) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        latency_ms = (self.get_clock().now().nanoseconds - stamp) / 1e6
        self.estimates[stamp] = (pose_to_matrix(msg.pose.pose),
                                 covariance_from_msg(msg.pose.covariance), latency_ms)

    def idle(self) -> bool:
        """Tell whether the ground truth stopped for longer than ``idle_timeout``."""
        timeout = self.param['idle_timeout']
        return bool(timeout > 0 and self.last_truth_time is not None
                    and time.monotonic() - self.last_truth_time > timeout)

    def _estimate_in_gt_frame(self, T_map_estimate: np.ndarray) -> np.ndarray:
        source, target = self.param['estimate_frame'], self.param['gt_frame']
        if not target or target == source:
            return T_map_estimate
        return T_map_estimate @ self.tf.lookup(source, target)

    def report(self) -> dict:
        """Return the ``neumap evaluate`` report of everything received so far."""
        from neumap_ros.core.evaluation import record_from_result, summarize
        records, unconverted = [], 0
        for stamp in sorted(self.truth):
            estimate = self.estimates.get(stamp)
            result = SimpleNamespace(success=False, status='no_pose', T_world_camera=None,
                                     covariance=None, num_keypoints=0, num_matches=0,
                                     num_inliers=0, timings_ms={})
            if estimate is not None:
                try:
                    T = self._estimate_in_gt_frame(estimate[0])
                except TransformError:
                    unconverted += 1
                else:
                    result = SimpleNamespace(success=True, status='ok', T_world_camera=T,
                                             covariance=estimate[1], num_keypoints=0,
                                             num_matches=0, num_inliers=0,
                                             timings_ms={'total': estimate[2]})
            records.append(record_from_result(str(stamp), stamp / NS_PER_S, result,
                                              self.truth[stamp]))
        return summarize(records, self.param['method'], *self.map_facts, extra={
            'pose_topic': self.param['pose_topic'], 'gt_topic': self.param['gt_topic'],
            'estimates_received': len(self.estimates),
            'estimates_without_transform': unconverted,
            'latency_note': 'total = receive time - image stamp (ROS clock)'})

    def write(self) -> dict:
        """Write the report, trajectories and plot to the configured paths."""
        from neumap_ros.core.bags import tum_line
        from neumap_ros.core.evaluation import json_safe
        from neumap_ros.core.map_io import atomic_write_bytes
        report = self.report()
        header = '# timestamp tx ty tz qx qy qz qw\n'
        if self.param['json_path']:
            atomic_write_bytes(self.param['json_path'],
                               json.dumps(json_safe(report), indent=1).encode())
        if self.param['tum_path']:
            # The query's name is its stamp in nanoseconds: written exactly.
            lines = [tum_line(int(q['name']), np.array(q['T_world_camera']))
                     for q in report['per_query'] if q['T_world_camera']]
            atomic_write_bytes(self.param['tum_path'], (header + ''.join(lines)).encode())
        if self.param['gt_tum_path']:
            lines = [tum_line(s, self.truth[s]) for s in sorted(self.truth)]
            atomic_write_bytes(self.param['gt_tum_path'], (header + ''.join(lines)).encode())
        if self.param['plot_path'] and report['queries']:
            from neumap_ros.core.plots import plot_reports
            plot_reports([report], self.param['plot_path'], 'replay evaluation')
        # Printed, not logged: on SIGINT the context (and with it /rosout) is already gone.
        median_t, median_r = report['median_translation_m'], report['median_rotation_deg']
        print(f'replay_evaluator: {report["localized"]}/{report["queries"]} frames localized, '
              f'median error {median_t:.3f} m / {median_r:.2f} deg', flush=True)
        return report


def main(args=None) -> int:
    """Collect until interrupted (or idle), then write the report."""
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
                node.write()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
