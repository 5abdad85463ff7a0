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
Messages the nodes depend on cross a process boundary intact (ROS 2 graph smoke tests).

A helper process publishes a real camera frame as sensor_msgs/Image, or transforms as
tf2_msgs/TFMessage (built by tools/build_tf2_msgs.sh where ROS comes from wheels), and this
process receives them over DDS in a private domain.
"""

import os
import pathlib

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
import ros_graph
from rosbags.typesys import get_typestore, Stores
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

pytestmark = pytest.mark.ros

HELPERS = pathlib.Path(__file__).resolve().parent / 'helpers'
IMAGE_PUBLISHER = HELPERS / 'image_publisher.py'
TF_PUBLISHER = HELPERS / 'tf_publisher.py'
# The same conversions as the helper applies, done here independently of it.
CONVERSIONS = {'bgr8': None, 'rgb8': 'COLOR_BGR2RGB', 'mono8': 'COLOR_BGR2GRAY'}


@pytest.fixture(scope='module')
def kitchen_frame(shared_data_dir):
    """Return the path of the first 7-Scenes redkitchen colour frame (640x480 JPEG)."""
    path = shared_data_dir / '7scenes-redkitchen' / 'frame-000000.color.jpg'
    if not path.is_file():
        pytest.fail(f'{path} is missing from the shared data folder', pytrace=False)
    return path


def expected_pixels(path, encoding):
    """Decode ``path`` with OpenCV and convert it as an image of ``encoding``."""
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert pixels is not None, f'OpenCV cannot read {path}'
    if CONVERSIONS[encoding]:
        pixels = cv2.cvtColor(pixels, getattr(cv2, CONVERSIONS[encoding]))
    return pixels


def assert_image_equals(msg, pixels, encoding, frame_id):
    """Check every field of a received Image against the original pixels."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    assert (msg.height, msg.width) == (height, width) == (480, 640)
    assert msg.encoding == encoding
    assert msg.is_bigendian == 0
    assert msg.step == width * channels
    assert msg.header.frame_id == frame_id
    assert msg.header.stamp.sec > 0
    assert len(msg.data) == msg.step * msg.height
    received = np.frombuffer(msg.data, dtype=np.uint8).reshape(pixels.shape)
    np.testing.assert_array_equal(received, pixels)


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8', 'mono8'])
def test_image_from_another_process(ros_context, ros_process, kitchen_frame, encoding):
    """A reliable Image stream from another process arrives pixel for pixel."""
    topic = '/camera/image_raw'
    publisher = ros_process(IMAGE_PUBLISHER, '--image', kitchen_frame, '--encoding', encoding,
                            '--topic', topic, '--frame-id', 'kitchen_camera')
    received = []
    ros_context.node.create_subscription(Image, topic, received.append, QoSProfile(depth=5))

    ros_graph.wait_for_publishers(ros_context.node, topic, watch=[publisher])
    ros_context.spin_until(lambda: received, watch=[publisher], what='an Image message')

    assert_image_equals(received[0], expected_pixels(kitchen_frame, encoding), encoding,
                        'kitchen_camera')


def test_best_effort_image_stream(ros_context, ros_process, kitchen_frame):
    """A best-effort (sensor data) publisher reaches a best-effort subscriber, repeatedly."""
    topic = '/camera/image_best_effort'
    publisher = ros_process(IMAGE_PUBLISHER, '--image', kitchen_frame, '--topic', topic,
                            '--reliability', 'best_effort', '--rate', '10')
    received = []
    ros_context.node.create_subscription(Image, topic, received.append, qos_profile_sensor_data)

    ros_graph.wait_for_publishers(ros_context.node, topic, watch=[publisher])
    [info] = ros_context.node.get_publishers_info_by_topic(topic)
    assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    ros_context.spin_until(lambda: len(received) >= 3, watch=[publisher],
                           what='3 best-effort Image messages')

    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in received]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert_image_equals(received[-1], expected_pixels(kitchen_frame, 'bgr8'), 'bgr8', 'camera')


def test_tf_from_another_process(ros_context, ros_process):
    """A TFMessage on /tf from another process arrives with its frames and exact values."""
    transforms = {
        ('map', 'odom'): (1.5, -2.25, 0.125, 0.0, 0.0, 0.3826834323650898, 0.9238795325112867),
        ('odom', 'camera'): (0.1, 0.2, 0.3, 0.5, -0.5, 0.5, -0.5),
    }
    args = []
    for (parent, child), values in transforms.items():
        args += ['--transform', parent, child, *[repr(v) for v in values]]
    publisher = ros_process(TF_PUBLISHER, *args)
    received = []
    ros_context.node.create_subscription(TFMessage, '/tf', received.append, QoSProfile(depth=100))

    ros_graph.wait_for_publishers(ros_context.node, '/tf', watch=[publisher])
    ros_context.spin_until(lambda: received, watch=[publisher], what='a TFMessage on /tf')

    got = {}
    for transform in received[0].transforms:
        t, r = transform.transform.translation, transform.transform.rotation
        got[(transform.header.frame_id, transform.child_frame_id)] = (
            t.x, t.y, t.z, r.x, r.y, r.z, r.w)
        assert transform.header.stamp.sec > 0
    assert got == transforms


def test_tf2_msgs_type_hash_matches_upstream(ros_context, ros_process):
    """
    Our tf2_msgs build has upstream's RIHS01 type hash, so it talks to real tf2 nodes.

    The reference is computed by rosbags from the upstream message definitions of the sourced
    distro, or of Kilted (the release of the ROS wheels) when none is sourced.
    """
    distro = os.environ.get('ROS_DISTRO') or 'kilted'
    store = getattr(Stores, f'ROS2_{distro.upper()}', Stores.LATEST)
    upstream = get_typestore(store).hash_rihs01('tf2_msgs/msg/TFMessage')
    publisher = ros_process(TF_PUBLISHER, '--transform', 'a', 'b', *['0'] * 6, '1')
    ros_context.node.create_subscription(TFMessage, '/tf', lambda msg: None, 10)

    ros_graph.wait_for_publishers(ros_context.node, '/tf', watch=[publisher])
    [remote] = ros_context.node.get_publishers_info_by_topic('/tf')
    [local] = ros_context.node.get_subscriptions_info_by_topic('/tf')
    assert str(remote.topic_type_hash) == upstream
    assert str(local.topic_type_hash) == upstream


def test_two_publishers_of_one_script(ros_context, ros_process):
    """Two processes of one script keep separate logs and both show up in the graph."""
    first = ros_process(TF_PUBLISHER, '--transform', 'a', 'b', *['0'] * 6, '1')
    second = ros_process(TF_PUBLISHER, '--transform', 'a', 'c', *['0'] * 6, '1')
    assert first.log_path != second.log_path

    received = []
    ros_context.node.create_subscription(TFMessage, '/tf', received.append, QoSProfile(depth=100))
    ros_graph.wait_for_publishers(ros_context.node, '/tf', n=2, watch=[first, second])

    def children():
        return {t.child_frame_id for msg in received for t in msg.transforms}

    ros_context.spin_until(lambda: children() == {'b', 'c'}, watch=[first, second],
                           what='transforms from both processes')
