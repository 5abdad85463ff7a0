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
The map builder node: a map from a rosbag2 and from live topics, and no damage on failure.

The node runs as a process with the parameters build_map.launch.py gives it; the maps it
writes are then loaded with the ROS-free localizer and must localize frames of the kitchen
that were not mapped.
"""

from pathlib import Path
import shutil
import signal

from geometry_msgs.msg import PoseStamped
from neumap_testing import DiagnosticsWatcher, MAP_FRAMES, pose_error, QUERY_FRAMES, SCENE, \
    set_parameters, write_split
import numpy as np
import pytest
from rclpy.qos import QoSProfile
import ros_graph
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from neumap_ros.core.bags import dataset_to_bag
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.localizer import load_localizer, map_header
from neumap_ros.ros import launch_params
from neumap_ros.ros.image_conversion import camera_to_camera_info, numpy_to_image
from neumap_ros.ros.localizer_node import TF_STATIC_QOS
from neumap_ros.ros.map_builder_node import PROGRESS_QOS
from neumap_ros.ros.msg_conversions import make_transform_stamped, matrix_to_pose, \
    ns_to_stamp, stamp_to_ns

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODE = 'map_builder_node'
BAG_FRAMES = MAP_FRAMES[::3]       # 14 frames spread over the first 600


@pytest.fixture(scope='module')
def kitchen(shared_data_dir):
    """Return the kitchen dataset."""
    return open_dataset(shared_data_dir / SCENE)


@pytest.fixture(scope='module')
def depth_bag(tmp_path_factory, shared_data_dir):
    """Write an mcap bag of mapping frames with registered depth."""
    root = tmp_path_factory.mktemp('builder_bag')
    return dataset_to_bag(shared_data_dir / SCENE, str(write_split(root / 's.txt', BAG_FRAMES)),
                          root / 'bag', 'mcap', fps=10.0, depth_topic='/camera/depth/image_raw')


def start_builder(ros_process, output, bag='', extra=None, remappings=(), name=NODE,
                  depth_topic=''):
    """Start map_builder_node as build_map.launch.py would (parameter file + overrides)."""
    overrides = launch_params.map_builder_overrides(str(output), str(bag), 'features',
                                                    depth_topic=depth_topic)
    overrides.update(extra or {})
    return ros_process('neumap_ros.ros.map_builder_node', name=name,
                       ros_args=launch_params.ros_arguments(
                           params_file=launch_params.config_path('map_builder.yaml'),
                           overrides=overrides, remappings=remappings))


def camera_publishers(ros, builder, prefix: str, pose_source: tuple) -> list:
    """
    Return publishers of PREFIX/image, camera_info, depth and the pose source (type, topic, qos).

    They are returned once the builder subscribes to each of them.
    """
    qos = QoSProfile(depth=20)
    topics = [(Image, f'{prefix}/image', qos), (CameraInfo, f'{prefix}/camera_info', qos),
              (Image, f'{prefix}/depth', qos), pose_source]
    publishers = [ros.node.create_publisher(*topic) for topic in topics]
    for _, topic, _ in topics:
        ros_graph.wait_for_subscribers(ros.node, topic, timeout=30.0, watch=[builder])
    return publishers


def assert_localizes(map_path, kitchen, names=QUERY_FRAMES[:4]):
    """Localize unmapped kitchen frames with the map; all must be accurate."""
    localizer = load_localizer(map_path)
    for name in names:
        frame = kitchen.frames[name]
        result = localizer.localize(frame.load_image(), frame.camera)
        assert result.success, (name, result.status, result.message)
        t_err, r_err = pose_error(result.T_world_camera, frame.T_world_camera)
        assert t_err < 0.05 and r_err < 2.0, (name, t_err, r_err)


def test_map_from_bag(ros_context, ros_process, depth_bag, kitchen, tmp_path):
    """A bag becomes a map that localizes; a failed build leaves the existing map alone."""
    ros = ros_context
    progress = []
    ros.node.create_subscription(Float32, f'/{NODE}/progress', lambda m: progress.append(m.data),
                                 PROGRESS_QOS)
    output = tmp_path / 'from_bag.safetensors'
    # On sim time, as next to a replay: nothing publishes /clock, the build still starts.
    builder = start_builder(ros_process, output, depth_bag.path,
                            depth_topic='/camera/depth/image_raw', extra={'use_sim_time': True})
    ros.spin_until(lambda: builder.popen.poll() is not None, timeout=120.0,
                   what='the map builder to finish')
    assert builder.popen.returncode == 0, builder.log()
    assert 'wrote' in builder.log() and f'extracted {len(BAG_FRAMES)} posed frames' in \
        builder.log()
    ros.spin_until(lambda: 1.0 in progress, timeout=5.0, what='final progress 1.0')
    assert map_header(output)['info']['dataset'] == Path(depth_bag.path).stem   # not 'dataset'
    assert all(0.0 <= p <= 1.0 for p in progress) and progress == sorted(progress)
    # The build itself reports progress (per frame here), not only its start and end.
    assert len([p for p in progress if 0.3 < p < 1.0]) >= 3, progress
    assert_localizes(output, kitchen)

    before = output.read_bytes()
    failing = start_builder(ros_process, output, depth_bag.path,
                            {'pose_topic': '/no/such/topic'}, name='failing_builder')
    ros.spin_until(lambda: failing.popen.poll() is not None, timeout=60.0,
                   what='the failing build to end')
    assert failing.popen.returncode == 1
    assert 'left unchanged' in failing.log() and 'no topic /no/such/topic' in failing.log()
    assert output.read_bytes() == before


def test_map_from_live_topics(ros_context, ros_process, kitchen, tmp_path):
    """Frames, depth and poses published live are collected as keyframes; ~/build maps them."""
    ros = ros_context
    output = tmp_path / 'live.safetensors'
    builder = start_builder(ros_process, output, extra={
        'pose_topic': '/camera_pose', 'image_qos': 'reliable', 'diagnostics_period': 0.25,
        'work_dir': str(tmp_path / 'frames')}, depth_topic='/live/depth',
        remappings=launch_params.map_builder_remappings('/live/image', '/live/camera_info',
                                                        '/live/depth'))
    images, infos, depths, poses = camera_publishers(
        ros, builder, '/live', (PoseStamped, '/camera_pose', QoSProfile(depth=20)))
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')

    def build():
        client = ros.node.create_client(Trigger, f'/{NODE}/build')
        ros.spin_until(client.service_is_ready, watch=[builder], what='~/build')
        future = client.call_async(Trigger.Request())
        ros.spin_until(future.done, watch=[builder], what='~/build response')
        return future.result()

    # Too early: nothing collected yet.
    assert not build().success
    stamp = 1_760_000_000 * 10 ** 9
    frames_dir = tmp_path / 'frames'

    def publish(name, stamp, world_frame='map'):
        """Publish a kitchen frame's pose (in ``world_frame``), calibration, depth, image."""
        frame = kitchen.frames[name]
        header = Image().header
        header.stamp, header.frame_id = ns_to_stamp(stamp), 'camera'
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = header.stamp, world_frame
        matrix_to_pose(frame.T_world_camera, pose.pose)
        poses.publish(pose)
        infos.publish(camera_to_camera_info(frame.camera, header))
        depths.publish(numpy_to_image(
            np.round(frame.load_depth() * 1000.0).astype(np.uint16), '16UC1', header))
        images.publish(numpy_to_image(frame.load_image(), 'bgr8', header))

    # A frame posed in odom, not the world frame: refused, said once, never staged.
    publish(BAG_FRAMES[0], stamp, 'odom')
    ros.spin_until(lambda: "in frame 'odom', not world_frame 'map'" in builder.log(),
                   timeout=20.0, watch=[builder], what='the odom pose to be refused')
    # After pose_wait (5 s) the frame is given up for want of a pose in the world frame.
    ros.spin_until(lambda: diagnostics.values().get('skipped_no_pose') == '1', timeout=30.0,
                   watch=[builder], what='the odom-posed frame to be skipped')
    assert diagnostics.values()['poses_in_other_frame'] == '1'
    assert not list(frames_dir.glob('*.pose.txt'))
    for index, name in enumerate(BAG_FRAMES):
        stamp += 200_000_000
        publish(name, stamp)
        # One keyframe at a time, as a moving camera delivers them: on a loaded machine a
        # burst of 1.5 MB messages could outrun the node's queue, which is not under test.
        ros.spin_until(lambda: len(list(frames_dir.glob('*.pose.txt'))) == index + 1,
                       timeout=20.0, watch=[builder], what=f'keyframe {index + 1} staged')
    response = build()
    assert response.success and f'from {len(BAG_FRAMES)} keyframes' in response.message
    ros.spin_until(lambda: 'wrote' in builder.log(), timeout=90.0, watch=[builder],
                   what='the live map to be written')
    assert_localizes(output, kitchen)


def test_live_frames_beyond_the_pose_queue_are_counted(ros_context, ros_process, kitchen,
                                                       tmp_path):
    """Frames whose poses lag beyond ``pending_frames``: oldest dropped, counted; rest staged."""
    ros = ros_context
    frames_dir = tmp_path / 'frames'
    builder = start_builder(ros_process, tmp_path / 'never.safetensors', extra={
        'pose_topic': '/lag/pose', 'image_qos': 'reliable', 'pending_frames': 3,
        'pose_wait': 120.0, 'diagnostics_period': 0.25, 'work_dir': str(frames_dir)},
        name='lagging_builder',
        remappings=launch_params.map_builder_remappings('/lag/image', '/lag/camera_info', ''))
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')
    qos = QoSProfile(depth=20)
    images = ros.node.create_publisher(Image, '/lag/image', qos)
    infos = ros.node.create_publisher(CameraInfo, '/lag/camera_info', qos)
    poses = ros.node.create_publisher(PoseStamped, '/lag/pose', qos)
    for topic in ('/lag/image', '/lag/camera_info', '/lag/pose'):
        ros_graph.wait_for_subscribers(ros.node, topic, timeout=30.0, watch=[builder])

    names = BAG_FRAMES[:6]
    headers = []
    for index, name in enumerate(names):
        frame = kitchen.frames[name]
        header = Image().header
        header.stamp = ns_to_stamp(1_760_000_000 * 10 ** 9 + index * 200_000_000)
        header.frame_id = 'camera'
        headers.append(header)
        infos.publish(camera_to_camera_info(frame.camera, header))
        images.publish(numpy_to_image(frame.load_image(), 'bgr8', header))
        # Paced once drops start, so each drop is seen as it happens.
        expected = max(0, index + 1 - 3)
        ros.spin_until(lambda: diagnostics.values().get('skipped_queue_full') == str(expected),
                       timeout=20.0, watch=[builder], what=f'frame {index + 1} queued')
    assert diagnostics.values()['skipped_queue_full'] == '3'
    assert 'frames already wait for their pose' in builder.log()

    def publish_pose(index):
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = headers[index].stamp, 'map'
        matrix_to_pose(kitchen.frames[names[index]].T_world_camera, pose.pose)
        poses.publish(pose)

    # The first frame's pose comes too late: it was dropped and must not be staged. The three
    # newest frames were kept and are staged as keyframes once their poses arrive.
    for index in (0, 3, 4, 5):
        publish_pose(index)
    ros.spin_until(lambda: len(list(frames_dir.glob('*.pose.txt'))) == 3, timeout=20.0,
                   watch=[builder], what='the three queued frames staged')
    ros.spin_until(lambda: diagnostics.values().get('frames') == '3', timeout=10.0,
                   watch=[builder], what='three frames in diagnostics')
    assert len(list(frames_dir.glob('*.pose.txt'))) == 3
    assert diagnostics.values()['skipped_no_pose'] == '0'


def test_live_frames_tf_cannot_place_are_skipped(ros_context, ros_process, kitchen, tmp_path):
    """
    An image with an empty frame_id is skipped with a warning, and the node lives on.

    Whole numbers for float parameters are accepted (``pose_wait: 1``), and depth stamped a
    few ms off its image pairs within sync_tolerance, as poses do.
    """
    ros = ros_context
    frames_dir = tmp_path / 'frames'
    builder = start_builder(ros_process, tmp_path / 'never.safetensors', extra={
        'image_qos': 'reliable', 'use_depth': True, 'sync_tolerance': 0.02, 'pose_wait': 1,
        'keyframe_rotation_deg': 5, 'diagnostics_period': 0.25, 'work_dir': str(frames_dir)},
        name='placing_builder', remappings=launch_params.map_builder_remappings(
            '/place/image', '/place/camera_info', '/place/depth'))
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')
    images, infos, depths, static_tf = camera_publishers(
        ros, builder, '/place', (TFMessage, '/tf_static', TF_STATIC_QOS))

    def publish(index, frame_id, depth_step=1):
        frame = kitchen.frames[BAG_FRAMES[index]]
        header = Image().header
        header.stamp = ns_to_stamp(1_760_000_000 * 10 ** 9 + index * 200_000_000)
        header.frame_id = frame_id
        infos.publish(camera_to_camera_info(frame.camera, header))
        images.publish(numpy_to_image(frame.load_image(), 'bgr8', header))
        depth_header = Image().header
        depth_header.stamp = ns_to_stamp(stamp_to_ns(header.stamp) + 5_000_000)
        millimetres = np.round(frame.load_depth() * 1000.0).astype(np.uint16)
        millimetres = np.ascontiguousarray(millimetres[::depth_step, ::depth_step])
        depths.publish(numpy_to_image(millimetres, '16UC1', depth_header))
        return frame

    publish(0, '')
    ros.spin_until(lambda: diagnostics.values().get('skipped_no_frame_id') == '1',
                   timeout=20.0, watch=[builder], what='the frame without frame_id skipped')
    ros.spin_until(lambda: diagnostics.level() == 1, timeout=5.0, watch=[builder],
                   what='a warning on /diagnostics')
    assert 'skipped' in diagnostics.latest.message
    assert 'frame_id is empty' in builder.log()
    # Parameters are read at start: a change is refused, not accepted and ignored.
    [refused] = set_parameters(ros, NODE, {'keyframe_translation': 0.5})
    assert not refused.successful and 'restart it' in refused.reason

    frame = kitchen.frames[BAG_FRAMES[1]]
    static_tf.publish(TFMessage(transforms=[make_transform_stamped(
        frame.T_world_camera, 'map', 'camera', 0)]))
    publish(1, 'camera')
    ros.spin_until(lambda: diagnostics.values().get('frames') == '1', timeout=20.0,
                   watch=[builder], what='the placed frame staged')
    assert len(list(frames_dir.glob('*.depth.png'))) == 1
    np.testing.assert_allclose(np.loadtxt(next(frames_dir.glob('*.pose.txt'))),
                               frame.T_world_camera, atol=1e-6)
    ros.spin_until(lambda: diagnostics.level() == 0, timeout=5.0, watch=[builder],
                   what='OK again once frames are used')
    assert builder.popen.poll() is None

    # Depth not registered to the image (another size) would give wrong points: skipped.
    frame = kitchen.frames[BAG_FRAMES[2]]
    static_tf.publish(TFMessage(transforms=[make_transform_stamped(
        frame.T_world_camera, 'map', 'camera', 0)]))
    publish(2, 'camera', depth_step=2)
    ros.spin_until(lambda: diagnostics.values().get('skipped_bad') == '1', timeout=20.0,
                   watch=[builder], what='the frame with unregistered depth skipped')
    assert 'depth is 320x240 but the image is 640x480' in builder.log()
    # A frame whose TF never comes waits pose_wait, then counts as skipped_no_pose.
    publish(3, 'unknown_camera')
    ros.spin_until(lambda: diagnostics.values().get('skipped_no_pose') == '1', timeout=20.0,
                   watch=[builder], what='the frame TF cannot place skipped')
    assert diagnostics.values()['frames'] == '1'
    assert builder.popen.poll() is None


def test_a_work_dir_holding_the_bag_keeps_it(ros_context, ros_process, depth_bag, tmp_path):
    """Frames are staged in a folder of the builder's own, never over the bag beside them."""
    bag = tmp_path / 'bags' / 'kitchen'   # a copy: this test stages next to the bag
    shutil.copytree(depth_bag.path, bag)
    output = tmp_path / 'beside.safetensors'
    builder = start_builder(ros_process, output, bag, extra={'work_dir': str(bag.parent)},
                            name='beside_builder')
    ros_context.spin_until(lambda: builder.popen.poll() is not None, timeout=120.0,
                           what='the map builder to finish')
    assert builder.popen.returncode == 0, builder.log()
    assert output.is_file() and (bag / 'metadata.yaml').is_file()


def test_shutdown_during_a_build_stops_it_cleanly(ros_context, ros_process, depth_bag,
                                                  tmp_path):
    """
    SIGINT while codes are being optimised: the build stops, the node exits 130, no map.

    The build runs on a thread; left running it published on a dead context and aborted the
    interpreter at exit (torch in a thread: "terminate called without an active exception").
    """
    ros = ros_context
    output = tmp_path / 'interrupted.safetensors'
    builder = start_builder(ros_process, output, depth_bag.path,
                            depth_topic='/camera/depth/image_raw',
                            extra={'method': 'neural'}, name='interrupted_builder')
    ros.spin_until(lambda: 'optimising codes' in builder.log(), timeout=120.0,
                   watch=[builder], what='code optimisation under way')
    builder.popen.send_signal(signal.SIGINT)
    ros.spin_until(lambda: builder.popen.poll() is not None, timeout=30.0,
                   what='the builder to exit')
    assert builder.popen.returncode == 130, builder.log()   # not success: no map came of it
    assert 'stopped by shutdown' in builder.log()
    assert 'terminate called' not in builder.log() and 'Traceback' not in builder.log()
    assert not output.exists()


def test_settings_and_staging_folder_are_checked_at_start(ros_context, ros_process, tmp_path):
    """
    A misspelt config section, or a work_dir with another session's frames, stops the start.

    Found at ~/build they would cost the collection (or mix old frames into the map).
    """
    config = tmp_path / 'build.yaml'
    config.write_text('maping: {iterations: 10}\n')
    typo = start_builder(ros_process, tmp_path / 'm.safetensors',
                         extra={'config_file': str(config)}, name='typo_builder')
    used = tmp_path / 'frames'
    used.mkdir()
    (used / 'frame-000000.pose.txt').write_text('1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n')
    reused = start_builder(ros_process, tmp_path / 'm.safetensors',
                           extra={'work_dir': str(used)}, name='reused_builder')
    for process, message in ((typo, "unknown sections ['maping']"),
                             (reused, 'holds frames of an earlier session')):
        ros_context.spin_until(lambda: process.popen.poll() is not None, timeout=60.0,
                               what='the builder to refuse its settings')
        assert process.popen.returncode == 2 and message in process.log(), process.log()


def test_a_camera_it_cannot_hear_is_reported(ros_context, ros_process, tmp_path):
    """
    A best-effort camera against image_qos reliable: a warning on /diagnostics, not silence.

    The pairing counters of live collection are reported beside it.
    """
    from rclpy.event_handler import PublisherEventCallbacks
    from rclpy.qos import qos_profile_sensor_data
    ros = ros_context
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')
    builder = start_builder(ros_process, tmp_path / 'm.safetensors', extra={
        'image_qos': 'reliable', 'diagnostics_period': 0.25},
        remappings=launch_params.map_builder_remappings('/be/image', '/be/camera_info', ''))
    camera = ros.node.create_publisher(   # the mismatch is expected on this side
        Image, '/be/image', qos_profile_sensor_data,
        event_callbacks=PublisherEventCallbacks(incompatible_qos=lambda _: None))
    ros.spin_until(lambda: 'incompatible with image_qos' in (
        diagnostics.latest.message if diagnostics.latest else ''), timeout=30.0,
        watch=[builder], what='a diagnostics warning about the QoS mismatch')
    assert diagnostics.level() == 1 and int(diagnostics.values()['incompatible_qos']) >= 1
    assert diagnostics.values()['sync_pairs'] == '0'
    assert 'try image_qos sensor_data' in builder.log()
    ros.node.destroy_publisher(camera)
