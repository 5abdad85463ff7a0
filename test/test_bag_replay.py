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
Bag replay: a real recording played with /clock into the localizer running on sim time.

A sqlite3 rosbag2 of kitchen frames (images, calibration, TF with drifting odometry, ground
truth) is played by bag_player; the localizer is brought up through its lifecycle services as
the launch file's events would, and replay_evaluator scores it as replay_eval.launch.py does.
This process checks the poses, the map -> odom transform and the diagnostics independently.
"""

import pathlib

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from lifecycle_msgs.msg import Transition
from neumap_testing import cached_map, change_state, get_state, pose_error, \
    QUERY_FRAMES, read_report, SCENE, start_localizer, write_split
import numpy as np
import pytest
from rclpy.qos import QoSProfile
import ros_graph
from tf2_msgs.msg import TFMessage

from neumap_ros.core.bags import dataset_to_bag, default_T_base_camera, odom_drift, read_tum
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.geometry import invert_transform
from neumap_ros.ros import launch_params
from neumap_ros.ros.msg_conversions import covariance_from_msg, pose_to_matrix, \
    stamp_to_ns, transform_to_matrix

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODE = 'localizer_node'
FPS = 2.0
FRAMES = QUERY_FRAMES[:16]


@pytest.mark.parametrize('method', ['features', 'neural'])
def test_replay_bag_into_localizer(ros_context, ros_process, tmp_path, tmp_path_factory,
                                   shared_data_dir, method):
    """Poses, map -> odom and diagnostics from a replayed bag match the ground truth."""
    ros = ros_context
    kitchen = open_dataset(shared_data_dir / SCENE)
    feature_map = cached_map(tmp_path_factory, shared_data_dir, method=method)
    bag = dataset_to_bag(shared_data_dir / SCENE, str(write_split(tmp_path / 's.txt', FRAMES)),
                         tmp_path / 'bag', 'sqlite3', fps=FPS)
    truth = {stamp: kitchen.frames[name].T_world_camera
             for stamp, name in zip(bag.stamps_ns, FRAMES)}

    # As replay_eval.launch.py: reliable images, bag_player with /clock.
    localizer = start_localizer(ros_process, feature_map,
                                {'image_qos': launch_params.REPLAY_IMAGE_QOS}, use_sim_time=True)
    out = tmp_path / 'replay'
    evaluator = ros_process(
        'neumap_ros.ros.replay_evaluator', ros_args=launch_params.ros_arguments(
            overrides=launch_params.replay_evaluator_parameters(str(out), str(feature_map))))
    poses, odom_tf, diagnostics = [], [], []
    ros.node.create_subscription(PoseWithCovarianceStamped, f'/{NODE}/pose', poses.append, 50)
    ros.node.create_subscription(
        TFMessage, '/tf',
        lambda m: odom_tf.extend(t for t in m.transforms if t.child_frame_id == 'odom'),
        QoSProfile(depth=100))
    ros.node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: diagnostics.extend(s for s in m.status if s.name.startswith(f'/{NODE}:')), 50)

    # What localize.launch.py's lifecycle events do: configure, then activate.
    assert get_state(ros, NODE, 30.0)[1] == 'unconfigured'
    assert change_state(ros, NODE, Transition.TRANSITION_CONFIGURE)
    assert change_state(ros, NODE, Transition.TRANSITION_ACTIVATE)
    image_topic = launch_params.DEFAULT_IMAGE_TOPIC
    ros_graph.wait_for_subscribers(ros.node, image_topic, watch=[localizer])
    ros_graph.wait_for_subscribers(ros.node, launch_params.DEFAULT_GT_TOPIC, watch=[evaluator])
    # Both the evaluator and this test must hear every pose for their counts to agree; the
    # evaluator waits idle_timeout after the last ground truth for the last frame's pose.
    ros_graph.wait_for_subscribers(ros.node, f'/{NODE}/pose', n=2, watch=[localizer, evaluator])
    player = ros_process('neumap_ros.ros.bag_player', ros_args=launch_params.ros_arguments(
        overrides=launch_params.bag_player_parameters(
            str(bag.path), 1.0, image_topic, launch_params.DEFAULT_GT_TOPIC)))
    ros.spin_until(lambda: player.popen.poll() is not None, timeout=60.0,
                   watch=[localizer, evaluator], what='the bag to finish playing')
    assert player.popen.returncode == 0, player.log()
    ros.spin_until(lambda: evaluator.popen.poll() is not None, timeout=45.0,
                   watch=[localizer], what='the evaluator to write its report')
    assert evaluator.popen.returncode == 0, evaluator.log()

    # Poses: stamped with image stamps, in map, base_link pose with a propagated covariance.
    T_camera_base = invert_transform(default_T_base_camera())
    assert len(poses) >= 0.75 * len(FRAMES), localizer.log()
    errors = []
    for pose in poses:
        stamp = stamp_to_ns(pose.header.stamp)
        assert stamp in truth and pose.header.frame_id == 'map'
        errors.append(pose_error(pose_to_matrix(pose.pose.pose), truth[stamp] @ T_camera_base))
        covariance = covariance_from_msg(pose.pose.covariance)
        assert np.all(np.diag(covariance) > 0) and np.all(np.isfinite(covariance))
    errors = np.array(errors)
    assert np.median(errors[:, 0]) < 0.05 and np.median(errors[:, 1]) < 2.0, errors
    assert np.mean(errors[:, 0] < 0.10) >= 0.8, errors

    # map -> odom: future-dated image stamps, equal to the bag's (drifting) odometry offset.
    fresh = [t for t in odom_tf if stamp_to_ns(t.header.stamp) - 500_000_000 in truth]
    assert fresh, 'no map -> odom stamped with an image stamp + transform_tolerance'
    for transform in odom_tf:
        assert transform.header.frame_id == 'map'
    odom_errors = []
    for transform in fresh:
        stamp = stamp_to_ns(transform.header.stamp) - 500_000_000
        expected = odom_drift((stamp - bag.start_ns) / 1e9)
        odom_errors.append(pose_error(transform_to_matrix(transform.transform), expected))
    # Same floors as the poses: map -> odom inherits each fix's error.
    odom_errors = np.array(odom_errors)
    assert np.median(odom_errors[:, 0]) < 0.05 and np.median(odom_errors[:, 1]) < 2.0
    assert np.mean(odom_errors[:, 0] < 0.10) >= 0.8, odom_errors

    # Diagnostics while running: OK at some point, with the counters of a working node.
    assert any(s.level[0] == 0 and s.message.startswith('localizing') for s in diagnostics)
    values = {kv.key: kv.value for kv in diagnostics[-1].values}
    assert int(values['frames_localized']) >= len(poses)
    assert values['camera_frame'] == 'camera_color_optical_frame'
    assert 'latency_ms_total' in values

    # The evaluator's report: same scoring, every ground-truth frame a query.
    report = read_report(out / 'report.json')
    assert report['queries'] == len(FRAMES)
    assert report['localized'] == len({stamp_to_ns(p.header.stamp) for p in poses})
    # The map's facts, as neumap evaluate reports them.
    assert report['map_bytes'] == pathlib.Path(feature_map).stat().st_size
    assert report['mapping_seconds'] > 0
    localized = [q for q in report['per_query'] if q['success']]
    assert np.median([q['translation_error_m'] for q in localized]) < 0.05
    assert len(read_tum(out / 'estimate.tum')) == report['localized']
    assert len(read_tum(out / 'ground_truth.tum')) == len(FRAMES)
    assert (out / 'report.png').is_file()
    localizer.assert_running()


def test_bag_player_skips_unknown_types_and_stops_on_sigint(
        ros_context, ros_process, shared_data_dir, tmp_path):
    """
    A topic whose type is not installed is skipped, the rest plays; SIGINT ends it cleanly.

    The bag gets a topic of a made-up package, as bags from robots with custom messages
    have. It is played slowly, so SIGINT arrives mid-playback.
    """
    import signal
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys import get_types_from_msg
    from sensor_msgs.msg import CameraInfo
    from neumap_ros.core.bags import typestore
    ros = ros_context
    source = dataset_to_bag(shared_data_dir / SCENE,
                            str(write_split(tmp_path / 's.txt', FRAMES[:6])),
                            tmp_path / 'bag', 'mcap', fps=FPS)
    store = typestore()
    store.register(get_types_from_msg('string data', 'made_up_msgs/msg/Note'))
    bag = tmp_path / 'with_custom'
    with Reader(source.path) as reader, Writer(bag, version=9) as writer:
        note = writer.add_connection('/notes', 'made_up_msgs/msg/Note', typestore=store)
        copies = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store)
                  for c in reader.connections}
        for connection, stamp, raw in reader.messages():
            writer.write(copies[connection.id], stamp, raw)
            if connection.topic == launch_params.DEFAULT_CAMERA_INFO_TOPIC:
                message = store.types['made_up_msgs/msg/Note'](data='hello')
                writer.write(note, stamp, store.serialize_cdr(message, 'made_up_msgs/msg/Note'))
    infos = []
    ros.node.create_subscription(CameraInfo, launch_params.DEFAULT_CAMERA_INFO_TOPIC,
                                 infos.append, 10)
    player = ros_process('neumap_ros.ros.bag_player', ros_args=launch_params.ros_arguments(
        overrides={'bag_path': str(bag), 'rate': 0.5, 'clock': True,
                   'wait_for_subscribers': [launch_params.DEFAULT_CAMERA_INFO_TOPIC]}))
    ros.spin_until(lambda: len(infos) >= 2, timeout=30.0, watch=[player],
                   what='camera_info played past the unknown type')
    assert 'skipping /notes: message type made_up_msgs/msg/Note is not installed' in \
        player.log()
    player.popen.send_signal(signal.SIGINT)
    ros.spin_until(lambda: player.popen.poll() is not None, timeout=20.0,
                   what='the player to stop')
    assert player.popen.returncode == 130, player.log()
    assert 'Traceback' not in player.log() and len(infos) < 6


def test_replay_qos_keeps_tf_reliable_and_static_tf_latched():
    """A reliability override reaches images, never TF; static TF is latched in a namespace."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    from neumap_ros.ros.bag_player import recorded_qos
    image = recorded_qos('/camera/image_raw', [], 'best_effort')
    assert image.reliability == ReliabilityPolicy.BEST_EFFORT
    for topic in ('/tf', '/tf_static', '/robot1/tf', '/robot1/tf_static'):
        qos = recorded_qos(topic, [], 'best_effort')
        assert qos.reliability == ReliabilityPolicy.RELIABLE, topic
        latched = topic.endswith('tf_static')
        assert (qos.durability == DurabilityPolicy.TRANSIENT_LOCAL) == latched, topic
    assert recorded_qos('/camera/tf_like', [], 'best_effort').reliability == \
        ReliabilityPolicy.BEST_EFFORT


def test_bag_player_refuses_a_bag_without_messages(ros_process, tmp_path):
    """An empty bag is an error (exit 1), not a /clock at a made-up date and exit 0."""
    from rosbags.rosbag2 import Writer
    from neumap_ros.core.bags import typestore
    bag = tmp_path / 'empty'
    with Writer(bag, version=9) as writer:
        writer.add_connection(launch_params.DEFAULT_CAMERA_INFO_TOPIC,
                              'sensor_msgs/msg/CameraInfo', typestore=typestore())
    player = ros_process('neumap_ros.ros.bag_player', ros_args=launch_params.ros_arguments(
        overrides={'bag_path': str(bag), 'clock': True}))
    assert player.popen.wait(timeout=30.0) == 1, player.log()
    assert 'holds no messages' in player.log() and 'Traceback' not in player.log()
