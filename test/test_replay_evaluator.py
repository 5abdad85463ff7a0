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

"""The replay evaluator's scoring, fed messages directly (its node runs, no bag plays)."""

import time

from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo

from neumap_ros.core.geometry import make_transform
from neumap_ros.ros.msg_conversions import matrix_to_pose, ns_to_stamp
from neumap_ros.ros.replay_evaluator import ReplayEvaluator

START = 1_760_000_000 * 10 ** 9
MS = 1_000_000


def pose_at(seconds: float) -> np.ndarray:
    """Return a camera moving 1 m/s along x while turning 10 deg/s."""
    return make_transform(Rotation.from_euler('z', 10 * seconds, degrees=True).as_matrix(),
                          [seconds, 0.0, 1.0])


def stamped(kind, stamp_ns, pose=None, frame='map'):
    """Return a message of ``kind`` stamped ``stamp_ns`` in ``frame``."""
    msg = kind()
    msg.header.stamp, msg.header.frame_id = ns_to_stamp(stamp_ns), frame
    if pose is not None:
        target = msg.pose.pose if kind is PoseWithCovarianceStamped else msg.pose
        matrix_to_pose(pose, target)
        if kind is PoseWithCovarianceStamped:
            msg.pose.covariance = list(np.eye(6).ravel() * 1e-4)
    return msg


@pytest.fixture
def evaluator(ros_domain, tmp_path):
    """Yield a ReplayEvaluator scoring camera poses (no mount) into tmp_path."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = ReplayEvaluator(context=context, parameter_overrides=[
        Parameter('estimate_frame', value=''),
        Parameter('json_path', value=str(tmp_path / 'report.json')),
        Parameter('plot_path', value=str(tmp_path / 'report.png'))])
    yield node
    node.destroy_node()
    context.try_shutdown()


def test_frames_are_the_queries_and_ground_truth_is_interpolated(evaluator):
    """
    100 Hz ground truth 3 ms off the camera's stamps still scores every frame.

    Frames are the queries (a frame never answered is not localized), ground truth is
    interpolated at their stamps, and frames beyond the ground truth are counted apart.
    """
    truth = [START + 3 * MS + i * 10 * MS for i in range(200)]          # 100 Hz to 1.993 s
    for stamp in truth:
        evaluator._on_truth(stamped(PoseStamped, stamp, pose_at((stamp - START) / 1e9)))
    frames = [START + i * 100 * MS for i in range(1, 22)]               # 10 Hz, last at 2.1 s
    for stamp in frames:
        evaluator._on_frame(stamped(CameraInfo, stamp))
    for stamp in frames[:15]:                                            # exact answers
        evaluator._on_estimate(stamped(PoseWithCovarianceStamped, stamp,
                                       pose_at((stamp - START) / 1e9)))
    report = evaluator.report()
    assert report['queries'] == 19 and report['frames_without_ground_truth'] == 2
    assert report['localized'] == 15
    assert report['median_translation_m'] < 1e-6 and report['median_rotation_deg'] < 1e-4
    assert report['status_counts'] == {'ok': 15, 'no_pose': 4}


def test_bad_duplicate_and_foreign_estimates(evaluator, tmp_path):
    """Count NaN poses, score the first of two answers, refuse another world frame."""
    stamp = START + 100 * MS
    evaluator._on_truth(stamped(PoseStamped, stamp, pose_at(0.1)))
    evaluator._on_frame(stamped(CameraInfo, stamp))
    nan_pose = stamped(PoseWithCovarianceStamped, stamp, pose_at(0.1))
    nan_pose.pose.pose.position.x = float('nan')
    evaluator._on_estimate(nan_pose)
    time.sleep(0.05)
    evaluator._on_estimate(stamped(PoseWithCovarianceStamped, stamp, pose_at(0.1)))
    evaluator._on_estimate(stamped(PoseWithCovarianceStamped, stamp, pose_at(5.0)))
    report = evaluator.report()
    assert report['invalid_estimates'] == 1 and report['duplicate_estimates'] == 1
    assert report['localized'] == 1 and report['median_translation_m'] < 1e-6
    # Latency is wall time since the frame's CameraInfo arrived (here about 50 ms).
    assert 40 <= report['latency_ms']['median'] < 1000
    evaluator._on_estimate(stamped(PoseWithCovarianceStamped, stamp + MS, pose_at(0.1),
                                   frame='odom'))
    report = evaluator.report()
    assert 'must share one world frame' in report['frame_problem']
    assert report['localized'] == 0


def test_no_ground_truth_is_a_failure_and_leaves_no_old_plot(evaluator, tmp_path):
    """An evaluation that scored nothing says so and removes an earlier run's plot."""
    (tmp_path / 'report.png').write_bytes(b'old plot')
    evaluator._on_frame(stamped(CameraInfo, START))
    report = evaluator.write()
    assert report['queries'] == 0 and report['frames_without_ground_truth'] == 1
    assert not (tmp_path / 'report.png').exists()
    assert (tmp_path / 'report.json').is_file()


def test_best_effort_ground_truth_is_heard(evaluator):
    """A ground-truth publisher offering only best effort (as recorded) still gets through."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    publisher_node = rclpy.create_node('recorded_ground_truth', context=evaluator.context)
    publisher = publisher_node.create_publisher(
        PoseStamped, '/ground_truth/camera_pose',
        QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    executor = SingleThreadedExecutor(context=evaluator.context)
    executor.add_node(evaluator)
    deadline = time.monotonic() + 20.0
    try:
        while len(evaluator.truth) == 0 and time.monotonic() < deadline:
            if publisher.get_subscription_count():
                publisher.publish(stamped(PoseStamped, START, pose_at(0.0)))
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        publisher_node.destroy_node()
    assert len(evaluator.truth) == 1
    assert '/ground_truth/camera_pose' in evaluator._best_effort


def test_a_bag_still_playing_is_not_idle(ros_domain, tmp_path):
    """
    Through a camera dropout longer than idle_timeout, the player's moving clock keeps it on.

    Only frames, poses and ground truth counted before: the evaluator wrote a partial report
    in the middle of the bag and the replay launch shut everything down.
    """
    from rclpy.time import Time
    context = rclpy.Context()
    rclpy.init(context=context)
    node = ReplayEvaluator(context=context, parameter_overrides=[
        Parameter('idle_timeout', value=0.3), Parameter('use_sim_time', value=True),
        Parameter('json_path', value=str(tmp_path / 'report.json'))])
    try:
        node._on_frame(stamped(CameraInfo, START))
        time.sleep(0.4)
        node.get_clock().set_ros_time_override(Time(nanoseconds=START + 10 ** 9))
        assert not node.idle()        # the player's /clock moved on
        time.sleep(0.4)
        assert node.idle()            # the clock stopped: the bag ended
    finally:
        node.destroy_node()
        context.try_shutdown()
