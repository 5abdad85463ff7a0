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
Publish one real camera frame as sensor_msgs/Image at a fixed rate (a test helper process).

    python image_publisher.py [--image PATH] [--encoding bgr8|rgb8|mono8] [--topic T]
                              [--rate HZ] [--reliability reliable|best_effort] [--ros-args ...]

The image defaults to frame-000000.color.jpg of 7scenes-redkitchen in the shared data folder.
"""

import argparse
import array
import sys

import cv2
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from neumap_ros.core.data_paths import require_shared_data

DEFAULT_IMAGE = ('7scenes-redkitchen', 'frame-000000.color.jpg')
# Conversions from OpenCV's BGR decoding; the tests apply the same ones to check the pixels.
CONVERSIONS = {'bgr8': None, 'rgb8': cv2.COLOR_BGR2RGB, 'mono8': cv2.COLOR_BGR2GRAY}
RELIABILITY = {'reliable': ReliabilityPolicy.RELIABLE,
               'best_effort': ReliabilityPolicy.BEST_EFFORT}


def load_pixels(path, encoding):
    """Read an image file with OpenCV and convert it to ``encoding``."""
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        raise FileNotFoundError(f'cannot read image {path}')
    if CONVERSIONS[encoding] is not None:
        pixels = cv2.cvtColor(pixels, CONVERSIONS[encoding])
    return pixels


def to_image_msg(pixels, encoding, frame_id):
    """Build a sensor_msgs/Image holding ``pixels`` (uint8, HxW or HxWxC)."""
    msg = Image()
    msg.header.frame_id = frame_id
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = pixels.strides[0]
    # array('B') is taken as is; a bytes object would be checked element by element.
    msg.data = array.array('B', pixels.tobytes())
    return msg


class ImagePublisher(Node):
    """Publishes the same frame again and again, stamped with the current time."""

    def __init__(self, msg, topic, rate, reliability):
        """Publish ``msg`` on ``topic`` at ``rate`` Hz with the given reliability."""
        super().__init__('image_publisher')
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                         reliability=RELIABILITY[reliability])
        self._msg = msg
        self._publisher = self.create_publisher(Image, topic, qos)
        self.create_timer(1.0 / rate, self._publish)

    def _publish(self):
        self._msg.header.stamp = self.get_clock().now().to_msg()
        self._publisher.publish(self._msg)


def main(argv=None):
    """Parse arguments, then publish until interrupted."""
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--image', help='image file (default: a 7-Scenes frame)')
    parser.add_argument('--encoding', choices=sorted(CONVERSIONS), default='bgr8')
    parser.add_argument('--topic', default='image')
    parser.add_argument('--frame-id', default='camera')
    parser.add_argument('--rate', type=float, default=5.0)
    parser.add_argument('--reliability', choices=sorted(RELIABILITY), default='reliable')
    args = parser.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])

    path = args.image or require_shared_data(*DEFAULT_IMAGE)
    msg = to_image_msg(load_pixels(path, args.encoding), args.encoding, args.frame_id)

    try:
        with rclpy.init(args=argv):
            node = ImagePublisher(msg, args.topic, args.rate, args.reliability)
            node.get_logger().info(
                f'publishing {path} as {msg.width}x{msg.height} {msg.encoding} on {args.topic}')
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == '__main__':
    main()
