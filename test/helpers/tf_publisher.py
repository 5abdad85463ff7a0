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
Publish fixed transforms as tf2_msgs/TFMessage at a fixed rate (a test helper process).

    python tf_publisher.py --transform PARENT CHILD X Y Z QX QY QZ QW [--transform ...]
                           [--topic /tf] [--rate HZ] [--ros-args ...]

The values are published exactly as given, so a test can compare them field by field.
"""

import argparse
import sys

from geometry_msgs.msg import TransformStamped
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile
from tf2_msgs.msg import TFMessage


def to_transform(parent, child, x, y, z, qx, qy, qz, qw):
    """Build a TransformStamped from frame names and numbers given as strings."""
    transform = TransformStamped()
    transform.header.frame_id = parent
    transform.child_frame_id = child
    translation = transform.transform.translation
    translation.x, translation.y, translation.z = float(x), float(y), float(z)
    rotation = transform.transform.rotation
    rotation.x, rotation.y, rotation.z, rotation.w = float(qx), float(qy), float(qz), float(qw)
    return transform


class TfPublisher(Node):
    """Publishes the same transforms again and again, stamped with the current time."""

    def __init__(self, transforms, topic, rate):
        """Publish ``transforms`` in one TFMessage on ``topic`` at ``rate`` Hz."""
        super().__init__('tf_publisher')
        self._msg = TFMessage(transforms=transforms)
        # Depth 100, reliable, volatile: the QoS tf2_ros uses for /tf.
        self._publisher = self.create_publisher(TFMessage, topic, QoSProfile(depth=100))
        self.create_timer(1.0 / rate, self._publish)

    def _publish(self):
        stamp = self.get_clock().now().to_msg()
        for transform in self._msg.transforms:
            transform.header.stamp = stamp
        self._publisher.publish(self._msg)


def main(argv=None):
    """Parse arguments, then publish until interrupted."""
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--transform', nargs=9, action='append', required=True,
                        metavar=('PARENT', 'CHILD', 'X', 'Y', 'Z', 'QX', 'QY', 'QZ', 'QW'))
    parser.add_argument('--topic', default='/tf')
    parser.add_argument('--rate', type=float, default=5.0)
    args = parser.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])

    try:
        with rclpy.init(args=argv):
            rclpy.spin(TfPublisher([to_transform(*t) for t in args.transform], args.topic,
                                   args.rate))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == '__main__':
    main()
