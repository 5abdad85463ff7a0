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
The localizer lifecycle node in a real ROS graph: transitions, bad inputs, QoS, services.

The node runs as a separate process with the parameters localize.launch.py gives it (see
neumap_testing.start_localizer); this process drives its lifecycle through the standard
lifecycle_msgs services, publishes camera frames of the real kitchen scene, and checks what
comes back on ~/pose, /tf and /diagnostics.
"""

import array
import math
import time

import cv2
from geometry_msgs.msg import PoseWithCovarianceStamped
from lifecycle_msgs.msg import State, Transition
from neumap_testing import cached_map, call, change_state, DiagnosticsWatcher, \
    get_state, OTHER_MAP_FRAMES, pose_error, QUERY_FRAMES, SCENE, set_parameters, \
    start_localizer
import numpy as np
import pytest
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
import ros_graph
from scipy.spatial import cKDTree
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from neumap_ros.core.bags import default_T_base_camera
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.geometry import invert_transform
from neumap_ros.core.localizer import load_localizer
from neumap_ros.ros.image_conversion import camera_to_camera_info, image_to_numpy, \
    numpy_to_image
from neumap_ros.ros.msg_conversions import covariance_from_msg, covariance_to_msg, \
    make_transform_stamped, matrix_to_pose, ns_to_stamp, pose_to_matrix, stamp_to_ns, \
    transform_to_matrix

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODE = 'localizer_node'
IMAGE_TOPIC, INFO_TOPIC = '/test_camera/image_raw', '/test_camera/camera_info'
CAMERA_FRAME = 'camera_color_optical_frame'


@pytest.fixture(scope='module')
def feature_map(tmp_path_factory, shared_data_dir):
    """Return the session's small feature map of the kitchen."""
    return cached_map(tmp_path_factory, shared_data_dir)


@pytest.fixture(scope='module')
def other_map(tmp_path_factory, shared_data_dir):
    """Return a second, tiny map of another part of the kitchen sequence."""
    return cached_map(tmp_path_factory, shared_data_dir, 'kitchen_other',
                      OTHER_MAP_FRAMES)


@pytest.fixture(scope='module')
def kitchen(shared_data_dir):
    """Return the kitchen dataset."""
    return open_dataset(shared_data_dir / SCENE)


def test_lifecycle_transitions(ros_context, ros_process, feature_map, tmp_path):
    """
    Configure fails cleanly on a bad map; then configure/activate/deactivate/cleanup work.

    The node stays alive and unconfigured after each failed configure, and says why on
    /diagnostics; subscriptions and services exist only while it is active.
    """
    ros = ros_context
    missing = tmp_path / 'missing.safetensors'
    node = start_localizer(ros_process, missing, {'diagnostics_period': 0.25},
                           IMAGE_TOPIC, INFO_TOPIC)
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')

    assert get_state(ros, NODE, 20.0) == (State.PRIMARY_STATE_UNCONFIGURED, 'unconfigured')
    assert not change_state(ros, NODE, Transition.TRANSITION_CONFIGURE)
    assert get_state(ros, NODE)[0] == State.PRIMARY_STATE_UNCONFIGURED
    ros.spin_until(lambda: 'does not exist' in (diagnostics.latest.message
                                                if diagnostics.latest else ''),
                   watch=[node], what='diagnostics naming the missing map')
    assert diagnostics.level() == 2 and str(missing) in diagnostics.latest.message

    corrupt = tmp_path / 'corrupt.safetensors'
    corrupt.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"not": "a map"}')
    assert set_parameters(ros, NODE, {'map_path': str(corrupt)})[0].successful
    assert not change_state(ros, NODE, Transition.TRANSITION_CONFIGURE)
    ros.spin_until(lambda: 'corrupt.safetensors' in diagnostics.latest.message,
                   watch=[node], what='diagnostics naming the corrupt map')
    assert not set_parameters(ros, NODE, {'tf_mode': 'sideways'})[0].successful
    assert not set_parameters(ros, NODE, {'voting_keypoints': 0})[0].successful
    # A whole number is a fine float; a string is not, and the refusal says why.
    assert set_parameters(ros, NODE, {'max_rate_hz': 0})[0].successful
    [refused] = set_parameters(ros, NODE, {'max_rate_hz': 'fast'})
    assert not refused.successful and 'must be of type float' in refused.reason
    node.assert_running()

    assert set_parameters(ros, NODE, {'map_path': str(feature_map)})[0].successful
    assert change_state(ros, NODE, Transition.TRANSITION_CONFIGURE)
    assert get_state(ros, NODE) == (State.PRIMARY_STATE_INACTIVE, 'inactive')
    # Absence means something only once the endpoints configure made have been discovered:
    # ~/pose is created by configure, subscriptions and services only by activate.
    ros_graph.wait_for_publishers(ros.node, f'/{NODE}/pose', watch=[node])
    assert ros.node.count_subscribers(IMAGE_TOPIC) == 0
    services = dict(ros.node.get_service_names_and_types())
    assert f'/{NODE}/relocalize' not in services

    assert change_state(ros, NODE, Transition.TRANSITION_ACTIVATE)
    assert get_state(ros, NODE) == (State.PRIMARY_STATE_ACTIVE, 'active')
    ros_graph.wait_for_subscribers(ros.node, IMAGE_TOPIC, watch=[node])
    ros_graph.wait_for_subscribers(ros.node, INFO_TOPIC, watch=[node])
    ros.spin_until(lambda: f'/{NODE}/load_map' in dict(ros.node.get_service_names_and_types()),
                   watch=[node], what='~/load_map service')
    [sub] = ros.node.get_subscriptions_info_by_topic(IMAGE_TOPIC)
    # Best effort matches reliable and best-effort cameras alike (depth is not advertised).
    assert sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    ros.spin_until(lambda: diagnostics.values().get('state') == 'active', watch=[node],
                   what='active state in diagnostics')
    assert diagnostics.values()['map_method'] == 'features'

    assert change_state(ros, NODE, Transition.TRANSITION_DEACTIVATE)
    assert get_state(ros, NODE)[0] == State.PRIMARY_STATE_INACTIVE
    ros.spin_until(lambda: ros.node.count_subscribers(IMAGE_TOPIC) == 0, watch=[node],
                   what='image subscription removed on deactivate')
    assert change_state(ros, NODE, Transition.TRANSITION_CLEANUP)
    assert get_state(ros, NODE)[0] == State.PRIMARY_STATE_UNCONFIGURED
    # A second cycle works after cleanup (nothing left over from the first), and picks up
    # changed parameters: a reliable subscription now, which a best-effort camera cannot
    # serve. The node says so instead of silently receiving nothing.
    assert set_parameters(ros, NODE, {'image_qos': 'reliable'})[0].successful
    assert change_state(ros, NODE, Transition.TRANSITION_CONFIGURE)
    assert change_state(ros, NODE, Transition.TRANSITION_ACTIVATE)
    assert get_state(ros, NODE)[0] == State.PRIMARY_STATE_ACTIVE
    ros.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data,
                              event_callbacks=PublisherEventCallbacks(
                                  incompatible_qos=lambda info: None))
    ros.spin_until(lambda: 'incompatible' in diagnostics.values().get('last_rejection', ''),
                   watch=[node], what='diagnostics reporting the QoS mismatch')
    assert 'RELIABILITY' in diagnostics.values()['last_rejection']
    assert diagnostics.level() == 2  # nothing usable arrives: an error, with the reason

    # CompressedImage transport: "image" is remapped first, then /compressed is appended.
    assert change_state(ros, NODE, Transition.TRANSITION_DEACTIVATE)
    assert change_state(ros, NODE, Transition.TRANSITION_CLEANUP)
    assert set_parameters(ros, NODE, {'image_qos': 'sensor_data',
                                      'image_transport': 'compressed'})[0].successful
    assert change_state(ros, NODE, Transition.TRANSITION_CONFIGURE)
    assert change_state(ros, NODE, Transition.TRANSITION_ACTIVATE)
    ros_graph.wait_for_subscribers(ros.node, IMAGE_TOPIC + '/compressed', watch=[node])
    assert ros.node.count_subscribers(IMAGE_TOPIC) == 0
    node.assert_running()


class Camera:
    """Publishes frames like a camera driver: best-effort Image and CameraInfo pairs."""

    def __init__(self, ros, kitchen):
        """Create the best-effort publishers (the QoS most drivers use)."""
        self.ros = ros
        self.kitchen = kitchen
        self.images = ros.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        self.infos = ros.node.create_publisher(CameraInfo, INFO_TOPIC, qos_profile_sensor_data)
        self.stamp_ns = 1_750_000_000 * 10 ** 9

    def next_stamp(self) -> int:
        """Return a stamp 100 ms after the last one."""
        self.stamp_ns += 100_000_000
        return self.stamp_ns

    def publish(self, image: Image, info=None, stamp_ns=None) -> int:
        """Publish an image (and its info, unless ``info`` is False) with one stamp."""
        stamp_ns = self.next_stamp() if stamp_ns is None else stamp_ns
        image.header.stamp = ns_to_stamp(stamp_ns)
        image.header.frame_id = CAMERA_FRAME
        if info is not False:
            info = info if info is not None else camera_to_camera_info(
                self.kitchen.frames[QUERY_FRAMES[0]].camera)
            info.header = image.header
            self.infos.publish(info)
        self.images.publish(image)
        return stamp_ns

    def frame(self, name: str) -> Image:
        """Return a kitchen frame as a bgr8 Image."""
        return numpy_to_image(self.kitchen.frames[name].load_image(), 'bgr8')


def publish_until(ros, camera, make, condition, node, what, period=0.4, timeout=20.0):
    """Publish ``make()`` every ``period`` s until ``condition()`` holds; return the stamps."""
    stamps = []
    deadline = time.monotonic() + timeout
    while True:
        stamps.append(make())
        try:
            ros.spin_until(condition, timeout=period, watch=[node], what=what)
            return stamps
        except AssertionError:
            node.assert_running()
            if time.monotonic() > deadline:
                raise AssertionError(f'{what} not met within {timeout} s')


def test_bad_inputs_qos_and_services(ros_context, ros_process, feature_map, other_map, kitchen):
    """
    Malformed frames are reported on /diagnostics while the node keeps localizing.

    Frames come from best-effort publishers; each bad input (encoding, calibration, size,
    blank image, stamps) must show up as the latest rejection or failure, after which a good
    frame still gives an accurate pose. ~/relocalize and ~/load_map (switching maps, and
    keeping the old one when the new one fails) work while the node runs.
    """
    ros = ros_context
    node = start_localizer(ros_process, feature_map, {
        'diagnostics_period': 0.25, 'base_frame': '', 'tf_mode': 'camera',
        'autostart': True,
        # A wrong prior must be able to fail a frame, so ~/relocalize has work to do.
        'retry_without_prior': False, 'relocalize_after_failures': 3,
        'publish_debug_image': True, 'map_cloud_max_points': 5000}, IMAGE_TOPIC, INFO_TOPIC)
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')
    poses, transforms, clouds, debug_images = [], [], [], []
    ros.node.create_subscription(PoseWithCovarianceStamped, f'/{NODE}/pose', poses.append, 10)
    ros.node.create_subscription(TFMessage, '/tf', transforms.append, QoSProfile(depth=100))
    ros.node.create_subscription(PointCloud2, f'/{NODE}/map_cloud', clouds.append, QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    ros.node.create_subscription(Image, f'/{NODE}/debug_image', debug_images.append, 5)
    camera = Camera(ros, kitchen)
    ros_graph.wait_for_subscribers(ros.node, IMAGE_TOPIC, timeout=30.0, watch=[node])

    def localize(name, timeout=20.0):
        poses.clear()
        stamps = publish_until(ros, camera, lambda: camera.publish(camera.frame(name)),
                               lambda: poses, node, f'a pose for {name}', period=1.0,
                               timeout=timeout)
        pose = poses[0]
        assert stamp_to_ns(pose.header.stamp) in stamps
        assert pose.header.frame_id == 'map'
        return pose

    # A good frame first: accurate camera pose, real covariance, map -> camera on TF.
    pose = localize(QUERY_FRAMES[1])
    t_err, r_err = pose_error(pose_to_matrix(pose.pose.pose),
                              kitchen.frames[QUERY_FRAMES[1]].T_world_camera)
    assert t_err < 0.05 and r_err < 2.0
    covariance = covariance_from_msg(pose.pose.covariance)
    assert np.all(np.diag(covariance) > 0) and np.all(np.isfinite(covariance))
    assert np.sqrt(np.trace(covariance[:3, :3])) < 0.1
    stamp = stamp_to_ns(pose.header.stamp)
    ros.spin_until(lambda: any(t.child_frame_id == CAMERA_FRAME for m in transforms
                               for t in m.transforms), watch=[node], what='map -> camera TF')
    tf = next(t for m in transforms for t in m.transforms if t.child_frame_id == CAMERA_FRAME)
    assert tf.header.frame_id == 'map'
    # The image's instant: only map -> odom is future-dated by transform_tolerance.
    assert stamp_to_ns(tf.header.stamp) == stamp
    np.testing.assert_allclose(transform_to_matrix(tf.transform),
                               pose_to_matrix(pose.pose.pose), atol=1e-9)

    # For RViz: the map's landmarks (latched, capped) and the inliers drawn on the image.
    ros.spin_until(lambda: clouds and debug_images, watch=[node], what='map cloud and debug image')
    cloud = clouds[-1]
    assert cloud.header.frame_id == 'map' and cloud.height == 1 and cloud.width == 5000
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
        ('x', 0, PointField.FLOAT32), ('y', 4, PointField.FLOAT32), ('z', 8, PointField.FLOAT32)]
    cloud_points = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 3)
    map_points = load_localizer(feature_map, 'cpu').map_points()
    distances, _ = cKDTree(map_points).query(cloud_points)
    assert distances.max() < 1e-3   # a sample of the map's own points
    debug = debug_images[-1]
    assert (debug.width, debug.height, debug.encoding) == (640, 480, 'bgr8')
    drawn = image_to_numpy(debug).astype(int) - kitchen.frames[QUERY_FRAMES[1]].load_image()
    assert np.count_nonzero(np.abs(drawn).sum(axis=2)) > 1000   # circles and the inlier count

    def rejected(text):
        return lambda: text in diagnostics.values().get('last_rejection', '')

    good_info = camera_to_camera_info(kitchen.frames[QUERY_FRAMES[0]].camera)
    pixels = kitchen.frames[QUERY_FRAMES[2]].load_image()

    def bad_encoding():
        msg = camera.frame(QUERY_FRAMES[2])
        msg.encoding = 'yuv422'
        return camera.publish(msg)

    def zero_k():
        info = camera_to_camera_info(kitchen.frames[QUERY_FRAMES[0]].camera)
        info.k = [0.0] * 9
        return camera.publish(camera.frame(QUERY_FRAMES[2]), info)

    def nan_k():
        info = camera_to_camera_info(kitchen.frames[QUERY_FRAMES[0]].camera)
        info.k[0] = math.nan
        return camera.publish(camera.frame(QUERY_FRAMES[2]), info)

    def wrong_size():
        small = camera_to_camera_info(kitchen.frames[QUERY_FRAMES[0]].camera.scaled(0.5))
        return camera.publish(camera.frame(QUERY_FRAMES[2]), small)

    def tiny():
        info = camera_to_camera_info(kitchen.frames[QUERY_FRAMES[0]].camera.scaled(1 / 80))
        return camera.publish(numpy_to_image(cv2.resize(pixels, (8, 6)), 'bgr8'), info)

    def bad_step():
        msg = camera.frame(QUERY_FRAMES[2])
        msg.step = 640
        return camera.publish(msg)

    def truncated():
        msg = camera.frame(QUERY_FRAMES[2])
        msg.data = array.array('B', bytes(msg.data)[:1000])
        return camera.publish(msg)

    for make, text in ((bad_encoding, 'unsupported image encoding "yuv422"'),
                       (zero_k, 'focal lengths are not positive'),
                       (nan_k, 'NaN or infinite'),
                       (wrong_size, 'image is 640x480 but camera_info describes 320x240'),
                       (tiny, 'too small'),
                       (bad_step, 'step 640 is smaller'),
                       (truncated, 'holds 1000 bytes')):
        publish_until(ros, camera, make, rejected(text), node, f'rejection "{text}"')
    assert diagnostics.level() >= 1  # recent rejections make the verdict a warning

    blank = numpy_to_image(np.full((480, 640, 3), 128, np.uint8), 'bgr8')
    publish_until(ros, camera, lambda: camera.publish(blank, good_info),
                  lambda: 'too_few_keypoints' in diagnostics.values().get('last_failure', ''),
                  node, 'failure of a blank image')

    # Images and calibration of different frames (a remapping mix-up) are warned about.
    def other_frames():
        stamp_ns = camera.next_stamp()
        image = camera.frame(QUERY_FRAMES[2])
        image.header.stamp, image.header.frame_id = ns_to_stamp(stamp_ns), CAMERA_FRAME
        info = camera_to_camera_info(kitchen.frames[QUERY_FRAMES[0]].camera)
        info.header.stamp, info.header.frame_id = image.header.stamp, 'ir_optical_frame'
        camera.infos.publish(info)
        camera.images.publish(image)
        return stamp_ns

    publish_until(ros, camera, other_frames,
                  lambda: "their camera_info in 'ir_optical_frame'" in node.log(), node,
                  'a warning about the mismatched frames')

    # A stamp older than the last one is refused; an image without its info waits.
    old = camera.stamp_ns - 10 ** 9
    publish_until(ros, camera, lambda: camera.publish(camera.frame(QUERY_FRAMES[2]),
                                                      stamp_ns=old),
                  lambda: int(diagnostics.values().get('sync_out_of_order', 0)) >= 1,
                  node, 'out-of-order stamp counted')
    attempted = int(diagnostics.values()['frames_attempted'])
    publish_until(ros, camera, lambda: camera.publish(camera.frame(QUERY_FRAMES[2]), False),
                  lambda: int(diagnostics.values().get('sync_pending_images', 0)) >= 1,
                  node, 'image waiting for its camera_info')
    assert int(diagnostics.values()['frames_attempted']) == attempted
    # A driver that leaves header.stamp at 0 is named as the cause, not "out of order".
    publish_until(ros, camera, lambda: camera.publish(camera.frame(QUERY_FRAMES[2]),
                                                      stamp_ns=0),
                  rejected('header.stamp is 0'), node, 'rejection of a zero stamp')

    # Still localizing after all that, also when stamps jump a minute back without a clock
    # jump (a bag looped on wall time): a new timeline, not a minute of "out of order".
    pose = localize(QUERY_FRAMES[3])
    assert pose_error(pose_to_matrix(pose.pose.pose),
                      kitchen.frames[QUERY_FRAMES[3]].T_world_camera)[0] < 0.05
    restarts = int(diagnostics.values()['sync_restarts'])
    camera.stamp_ns -= 60 * 10 ** 9
    pose = localize(QUERY_FRAMES[2])
    assert pose_error(pose_to_matrix(pose.pose.pose),
                      kitchen.frames[QUERY_FRAMES[2]].T_world_camera)[0] < 0.05
    ros.spin_until(lambda: int(diagnostics.values()['sync_restarts']) > restarts,
                   watch=[node], what='the stamp restart counted')
    assert 'camera stamps went back by more than 1 s' in node.log()

    # A wrong initialpose (the far side of the kitchen, 0.1 m sigma) confines the search and
    # the frame fails; ~/relocalize makes the next frame ignore the prior and succeed.
    initial = PoseWithCovarianceStamped()
    initial.header.frame_id = 'map'
    matrix_to_pose(kitchen.frames['frame-000420'].T_world_camera, initial.pose.pose)
    initial.pose.covariance = covariance_to_msg(np.diag([0.01] * 6))
    initial_pub = ros.node.create_publisher(PoseWithCovarianceStamped, '/initialpose', 10)
    ros_graph.wait_for_subscribers(ros.node, '/initialpose', watch=[node])
    initial_pub.publish(initial)
    ros.spin_until(lambda: 'initial pose received: searching within 0.5 m' in node.log(),
                   watch=[node], what='the initial pose to be taken')
    publish_until(ros, camera, lambda: camera.publish(camera.frame(QUERY_FRAMES[4])),
                  lambda: diagnostics.values().get('last_failure', '').startswith(
                      ('too_few_inliers', 'too_few_matches')), node,
                  'a failure near the wrong prior', period=1.0)
    response = call(ros, Trigger, f'/{NODE}/relocalize', Trigger.Request(), watch=[node])
    assert response.success and 'without a pose prior' in response.message
    pose = localize(QUERY_FRAMES[4])
    assert pose_error(pose_to_matrix(pose.pose.pose),
                      kitchen.frames[QUERY_FRAMES[4]].T_world_camera)[0] < 0.05
    # Without the service: relocalize_after_failures (3) failures in a row near a wrong
    # prior (a kidnapped robot) drop it, and the node finds itself again. Best-effort frames
    # get lost on a busy machine: time for a few more.
    assert 'relocalizing globally' not in node.log()
    initial_pub.publish(initial)
    ros.spin_until(lambda: node.log().count('initial pose received') == 2, watch=[node],
                   what='the second initial pose to be taken')
    pose = localize(QUERY_FRAMES[4], timeout=45.0)
    assert pose_error(pose_to_matrix(pose.pose.pose),
                      kitchen.frames[QUERY_FRAMES[4]].T_world_camera)[0] < 0.05
    assert 'several failures near the pose prior; relocalizing globally' in node.log()

    # Switch maps at run time: set map_path, then ~/load_map.
    assert set_parameters(ros, NODE, {'map_path': str(other_map)})[0].successful
    response = call(ros, Trigger, f'/{NODE}/load_map', Trigger.Request(), watch=[node])
    assert response.success and str(other_map) in response.message
    ros.spin_until(lambda: diagnostics.values().get('map_frames') == str(len(OTHER_MAP_FRAMES)),
                   watch=[node], what='diagnostics showing the new map')
    assert set_parameters(ros, NODE, {'map_path': '/nonexistent/map.safetensors'})[0].successful
    response = call(ros, Trigger, f'/{NODE}/load_map', Trigger.Request(), watch=[node])
    assert not response.success and f'keeping {other_map}' in response.message
    ros.spin_until(lambda: 'load_map failed' in diagnostics.latest.message, watch=[node],
                   what='a warning about the failed load_map')
    assert diagnostics.values()['map_path'] == str(other_map)
    # The map that is still loaded keeps working (a frame from its part of the sequence).
    pose = localize('frame-000645')
    assert pose_error(pose_to_matrix(pose.pose.pose),
                      kitchen.frames['frame-000645'].T_world_camera)[0] < 0.05
    node.assert_running()


def test_compressed_images_and_base_tf(ros_context, ros_process, feature_map, kitchen):
    """
    JPEG frames on <image>/compressed give the base_link pose and map -> base_link (tf_mode base).

    The camera is mounted on base_link by a static transform published here (no pose goes out
    before it is known); the node turns
    the camera pose into the base pose through it, for a robot without odometry. A burst of
    frames faster than max_rate_hz is thinned to the newest frame, the rest counted as dropped.
    """
    ros = ros_context
    node = start_localizer(ros_process, feature_map, {
        'image_transport': 'compressed', 'tf_mode': 'base', 'autostart': True,
        'max_rate_hz': 1.0, 'diagnostics_period': 0.25}, IMAGE_TOPIC, INFO_TOPIC)
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')
    poses, transforms = [], []
    ros.node.create_subscription(PoseWithCovarianceStamped, f'/{NODE}/pose', poses.append, 10)
    ros.node.create_subscription(TFMessage, '/tf', transforms.append, QoSProfile(depth=100))
    T_base_camera = default_T_base_camera()
    images = ros.node.create_publisher(CompressedImage, IMAGE_TOPIC + '/compressed', 5)
    infos = ros.node.create_publisher(CameraInfo, INFO_TOPIC, 5)
    ros_graph.wait_for_subscribers(ros.node, IMAGE_TOPIC + '/compressed', timeout=30.0,
                                   watch=[node])
    frame = kitchen.frames[QUERY_FRAMES[5]]
    ok, jpeg = cv2.imencode('.jpg', frame.load_image(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    stamps = []
    start = [1_780_000_000 * 10 ** 9]

    def publish():
        stamp = start[0] + len(stamps) * 10 ** 8
        stamps.append(stamp)
        msg = CompressedImage(format='jpeg', data=array.array('B', jpeg.tobytes()))
        msg.header.stamp, msg.header.frame_id = ns_to_stamp(stamp), CAMERA_FRAME
        infos.publish(camera_to_camera_info(frame.camera, msg.header))
        images.publish(msg)
        return stamp

    # Before the mount is known, frames localize but no pose goes out: a camera pose on a
    # topic of base poses would mislead whoever fuses it. Diagnostics say why.
    publish_until(ros, None, publish,
                  lambda: 'so no pose is published' in (diagnostics.latest.message
                                                        if diagnostics.latest else ''),
                  node, 'a warning about the missing base -> camera transform', period=1.0)
    assert int(diagnostics.values()['frames_localized']) >= 1 and poses == []
    assert diagnostics.level() == 1
    static = ros.node.create_publisher(TFMessage, '/tf_static', QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    static.publish(TFMessage(transforms=[
        make_transform_stamped(T_base_camera, 'base_link', CAMERA_FRAME, 0)]))

    publish_until(ros, None, publish, lambda: poses, node, 'a pose from a JPEG frame',
                  period=1.0)
    stamp = stamp_to_ns(poses[0].header.stamp)
    assert stamp in stamps
    T_map_base = frame.T_world_camera @ invert_transform(T_base_camera)
    t_err, r_err = pose_error(pose_to_matrix(poses[0].pose.pose), T_map_base)
    assert t_err < 0.05 and r_err < 2.0
    ros.spin_until(lambda: any(t.child_frame_id == 'base_link' for m in transforms
                               for t in m.transforms), watch=[node], what='map -> base_link')
    tf = next(t for m in transforms for t in m.transforms if t.child_frame_id == 'base_link')
    assert tf.header.frame_id == 'map' and stamp_to_ns(tf.header.stamp) == stamp  # not dated on
    np.testing.assert_allclose(transform_to_matrix(tf.transform),
                               pose_to_matrix(poses[0].pose.pose), atol=1e-9)

    # Latest frame only: 12 frames at 12 Hz against max_rate_hz 1 give at most a few poses,
    # the last of them for the last frame, and the skipped frames show up as dropped.
    poses.clear()
    burst = []
    started = time.monotonic()
    for _ in range(12):
        burst.append(publish())
        time.sleep(1 / 12)
    elapsed = time.monotonic() - started
    ros.spin_until(lambda: poses and stamp_to_ns(poses[-1].header.stamp) == burst[-1],
                   timeout=10.0, watch=[node], what='a pose for the newest frame of the burst')
    # Counted against the time the burst really took (a loaded machine stretches it): at
    # 1 Hz, one pose per started second plus the frame in flight when the burst began.
    of_burst = [p for p in poses if stamp_to_ns(p.header.stamp) in burst]
    assert len(of_burst) <= math.floor(elapsed * 1.0) + 2, (len(of_burst), elapsed)
    ros.spin_until(lambda: int(diagnostics.values().get('frames_dropped', 0)) >= 4,
                   watch=[node], what='dropped frames in diagnostics')

    # The camera's stamps restart a minute back (a bag looped on wall time): dynamic TF and
    # pending frames go, the latched base -> camera mount stays, so base poses keep coming.
    start[0] -= 60 * 10 ** 9
    poses.clear()
    publish_until(ros, None, publish, lambda: poses, node, 'a pose after the stamps restarted',
                  period=1.0)
    assert stamp_to_ns(poses[0].header.stamp) < burst[0]
    assert pose_error(pose_to_matrix(poses[0].pose.pose), T_map_base)[0] < 0.05
    assert 'cleared TF buffer' in node.log()


def test_sim_time_jumping_back_starts_over(ros_context, ros_process, feature_map, kitchen):
    """
    On sim time, /clock going back (a bag played again) clears the old timeline.

    The node logs the jump, and frames stamped on the new timeline localize at once.
    """
    from rosgraph_msgs.msg import Clock
    ros = ros_context
    node = start_localizer(ros_process, feature_map, {
        'base_frame': '', 'tf_mode': 'camera', 'autostart': True}, IMAGE_TOPIC, INFO_TOPIC,
        use_sim_time=True)
    clock = ros.node.create_publisher(Clock, '/clock', 10)
    poses = []
    ros.node.create_subscription(PoseWithCovarianceStamped, f'/{NODE}/pose', poses.append, 10)
    camera = Camera(ros, kitchen)
    ros_graph.wait_for_subscribers(ros.node, IMAGE_TOPIC, timeout=30.0, watch=[node])
    ros_graph.wait_for_subscribers(ros.node, '/clock', watch=[node])

    def localize_at(name):
        poses.clear()

        def publish():
            clock.publish(Clock(clock=ns_to_stamp(camera.stamp_ns + 100_000_000)))
            return camera.publish(camera.frame(name))

        publish_until(ros, camera, publish, lambda: poses, node, f'a pose for {name}',
                      period=1.0)
        return poses[0]

    first = localize_at(QUERY_FRAMES[1])
    camera.stamp_ns -= 30 * 10 ** 9
    clock.publish(Clock(clock=ns_to_stamp(camera.stamp_ns)))
    ros.spin_until(lambda: 'time jumped back by' in node.log(), watch=[node],
                   what='the clock jump noticed')
    second = localize_at(QUERY_FRAMES[2])
    assert stamp_to_ns(second.header.stamp) < stamp_to_ns(first.header.stamp)
    assert pose_error(pose_to_matrix(second.pose.pose),
                      kitchen.frames[QUERY_FRAMES[2]].T_world_camera)[0] < 0.05


def test_robot_in_a_namespace_gets_map_to_odom(ros_context, ros_process, feature_map, kitchen):
    """
    In a robot's namespace, as nav2 runs it, camera topics and TF are the namespace's own.

    With the launch file's defaults the node in /robot1 reads /robot1/camera/...,
    /robot1/tf and /robot1/tf_static, and publishes map -> odom on /robot1/tf (where the
    robot's nav2 listens), nothing on the global /tf. An initialpose sets map -> odom at
    once, as amcl does. Sent before any image (so before the camera frame is known), it
    still becomes the right camera prior:
    without a global retry, a prior looking the wrong way confines the search to the wrong
    part of the map (measured: a 10 cm error instead of a fix within 5 cm).
    """
    ros = ros_context
    node = start_localizer(ros_process, feature_map, {
        'autostart': True, 'retry_without_prior': False, 'relocalize_after_failures': 1000},
        namespace='/robot1')
    poses, ns_tf, global_tf = [], [], []
    ros.node.create_subscription(PoseWithCovarianceStamped, f'/robot1/{NODE}/pose',
                                 poses.append, 10)
    ros.node.create_subscription(TFMessage, '/robot1/tf', ns_tf.append, QoSProfile(depth=100))
    ros.node.create_subscription(TFMessage, '/tf', global_tf.append, QoSProfile(depth=100))
    images = ros.node.create_publisher(Image, '/robot1/camera/color/image_raw',
                                       qos_profile_sensor_data)
    infos = ros.node.create_publisher(CameraInfo, '/robot1/camera/color/camera_info',
                                      qos_profile_sensor_data)
    odometry = ros.node.create_publisher(TFMessage, '/robot1/tf', QoSProfile(depth=100))
    static = ros.node.create_publisher(TFMessage, '/robot1/tf_static', QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    T_base_camera = default_T_base_camera()
    static.publish(TFMessage(transforms=[
        make_transform_stamped(T_base_camera, 'base_link', CAMERA_FRAME, 0)]))
    ros_graph.wait_for_subscribers(ros.node, '/robot1/camera/color/image_raw', timeout=30.0,
                                   watch=[node])
    frame = kitchen.frames[QUERY_FRAMES[3]]
    T_map_base = frame.T_world_camera @ invert_transform(T_base_camera)
    T_odom_base = np.eye(4)
    T_odom_base[:3, 3] = [0.5, -0.2, 0.0]   # the robot moved 0.5 m since odom started
    clicked = T_map_base.copy()
    clicked[:3, 3] += [0.15, 0.0, 0.0]       # where the user put it in RViz, 15 cm off
    initial = ros.node.create_publisher(PoseWithCovarianceStamped, '/robot1/initialpose', 10)
    ros_graph.wait_for_subscribers(ros.node, '/robot1/initialpose', watch=[node])
    message = PoseWithCovarianceStamped()
    message.header.frame_id = 'map'
    message.pose.pose = matrix_to_pose(clicked)
    message.pose.covariance = covariance_to_msg(np.diag([0.01, 0.01, 0.01, 0.01, 0.01, 0.01]))

    def map_odom():
        return [t for m in ns_tf for t in m.transforms if t.child_frame_id == 'odom']

    def send_initial_pose():
        odometry.publish(TFMessage(transforms=[
            make_transform_stamped(T_odom_base, 'odom', 'base_link', 1_760_000_000 * 10 ** 9)]))
        initial.publish(message)

    # Before any image, as amcl does: map -> odom puts the base where the user clicked.
    publish_until(ros, None, send_initial_pose, map_odom, node,
                  'map -> odom from the initial pose', period=1.0)
    assert map_odom()[0].header.frame_id == 'map'
    from_click = transform_to_matrix(map_odom()[0].transform) @ T_odom_base
    np.testing.assert_allclose(from_click, clicked, atol=1e-6)
    assert not poses
    stamp = [1_760_000_000 * 10 ** 9]

    def publish():
        stamp[0] += 100_000_000
        header_stamp = ns_to_stamp(stamp[0])
        odometry.publish(TFMessage(transforms=[
            make_transform_stamped(T_odom_base, 'odom', 'base_link', stamp[0])]))
        image = numpy_to_image(frame.load_image(), 'bgr8')
        image.header.stamp, image.header.frame_id = header_stamp, CAMERA_FRAME
        info = camera_to_camera_info(frame.camera, image.header)
        infos.publish(info)
        images.publish(image)
        return stamp[0]

    publish_until(ros, None, publish, lambda: poses, node, 'a pose in /robot1', period=1.0)
    assert pose_error(pose_to_matrix(poses[0].pose.pose), T_map_base)[0] < 0.05
    # The fix moves map -> odom from the click to the camera's measurement.
    ros.spin_until(lambda: any(
        pose_error(transform_to_matrix(t.transform) @ T_odom_base, T_map_base)[0] < 0.05
        for t in map_odom()), watch=[node], what='map -> odom of the fix')
    assert not [t for m in global_tf for t in m.transforms if t.child_frame_id == 'odom']


def test_a_mounted_camera_keeps_its_parent(ros_context, ros_process, feature_map, kitchen):
    """
    ``tf_mode: camera`` never gives a camera mounted on base_link a second parent.

    The node refuses map -> camera while the mount is in TF and says so, and keeps
    publishing base poses: its own transform does not replace the mount in its buffer.
    Parameters set on the running node take effect, or are refused with the reason.
    """
    ros = ros_context
    node = start_localizer(ros_process, feature_map, {
        'tf_mode': 'camera', 'autostart': True, 'diagnostics_period': 0.25},
        IMAGE_TOPIC, INFO_TOPIC)
    diagnostics = DiagnosticsWatcher(ros, f'/{NODE}:')
    poses, camera_tf = [], []
    ros.node.create_subscription(PoseWithCovarianceStamped, f'/{NODE}/pose', poses.append, 10)
    ros.node.create_subscription(
        TFMessage, '/tf',
        lambda m: camera_tf.extend(t for t in m.transforms if t.child_frame_id == CAMERA_FRAME),
        QoSProfile(depth=100))
    static = ros.node.create_publisher(TFMessage, '/tf_static', QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    static.publish(TFMessage(transforms=[
        make_transform_stamped(default_T_base_camera(), 'base_link', CAMERA_FRAME, 0)]))
    camera = Camera(ros, kitchen)
    ros_graph.wait_for_subscribers(ros.node, IMAGE_TOPIC, timeout=30.0, watch=[node])
    publish_until(ros, camera, lambda: camera.publish(camera.frame(QUERY_FRAMES[4])),
                  lambda: len(poses) >= 3, node, 'three base poses in a row', period=1.0)
    ros.spin_until(lambda: 'already has the parent base_link' in (
        diagnostics.latest.message if diagnostics.latest else ''), watch=[node],
        what='diagnostics saying why map -> camera is not published')
    assert camera_tf == []
    assert int(diagnostics.values()['median_inliers']) >= 15
    assert 0 < float(diagnostics.values()['median_inlier_ratio']) <= 1

    # Parameters: thresholds apply at once on the active node, what shapes its topics and
    # frames is refused (not accepted and ignored), and so are values out of range.
    assert set_parameters(ros, NODE, {'min_inliers': 100000})[0].successful
    publish_until(ros, camera, lambda: camera.publish(camera.frame(QUERY_FRAMES[4])),
                  lambda: diagnostics.values().get('consecutive_failures', '0') != '0', node,
                  'a frame failing the raised min_inliers', period=1.0)
    assert 'keypoints' in diagnostics.values()['last_failure']   # fewer than 100000
    [refused] = set_parameters(ros, NODE, {'tf_mode': 'odom'})
    assert not refused.successful and 'read on configure' in refused.reason
    [refused] = set_parameters(ros, NODE, {'min_success_rate': 1.5})
    assert not refused.successful and 'must be in [0, 1]' in refused.reason
    assert set_parameters(ros, NODE, {'min_inliers': 15})[0].successful
    poses.clear()
    publish_until(ros, camera, lambda: camera.publish(camera.frame(QUERY_FRAMES[4])),
                  lambda: poses, node, 'poses again with min_inliers 15', period=1.0)


def large_feature_map(path, points: int = 1_500_000):
    """Write a feature map of random points, large enough that loading it takes seconds."""
    from neumap_ros.core.feature_map import FeatureMap
    from neumap_ros.core.features import FeatureConfig
    from neumap_ros.core.retrieval import Vocabulary
    rng = np.random.default_rng(0)
    words = rng.normal(size=(8, 128))
    words /= np.linalg.norm(words, axis=1, keepdims=True)
    FeatureMap(FeatureConfig(kind='sift'), rng.integers(0, 4, points).astype(np.int32),
               rng.integers(0, 256, (points, 128), dtype=np.uint8),
               rng.normal(size=(points, 3)).astype(np.float32),
               rng.normal(size=(4, 3)).astype(np.float32),
               Vocabulary(words.astype(np.float32), np.ones(8, np.float32)),
               rng.uniform(0.0, 1.0, (4, 8)).astype(np.float32), {'dataset': 'large'}).save(path)
    return path


def test_the_node_keeps_working_while_a_map_loads(ros_context, ros_process, feature_map,
                                                  tmp_path):
    """
    ~/load_map of a map that takes seconds to read does not stall the node meanwhile.

    The node's diagnostics (as its TF republishing and image intake) keep coming while the
    call is pending; before, the whole executor waited for the map.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    ros = ros_context
    large = large_feature_map(tmp_path / 'large.safetensors')
    node = start_localizer(ros_process, feature_map, {'diagnostics_period': 0.2,
                                                      'autostart': True},
                           IMAGE_TOPIC, INFO_TOPIC)
    stamps = []
    ros.node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda msg: stamps.extend(stamp_to_ns(msg.header.stamp) for status in msg.status
                                  if status.name.startswith(f'/{NODE}:')), 50)
    ros.spin_until(lambda: f'/{NODE}/load_map' in dict(ros.node.get_service_names_and_types()),
                   watch=[node], what='~/load_map service')
    assert set_parameters(ros, NODE, {'map_path': str(large)})[0].successful
    started = time.time_ns()
    response = call(ros, Trigger, f'/{NODE}/load_map', Trigger.Request(), timeout=60.0,
                    watch=[node])
    ended = time.time_ns()
    assert response.success and str(large) in response.message, response.message
    assert ended - started > 1.0e9, 'the map loaded too fast to show anything'
    # Stamped by the node while the call was pending (margins for transport both ways).
    during = [s for s in stamps if started + 2e8 < s < ended - 2e8]
    assert len(during) >= 2, (len(during), (ended - started) / 1e9)
    node.assert_running()
