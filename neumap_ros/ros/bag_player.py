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
Play a rosbag2 (sqlite3 or mcap) into the ROS graph, like ``ros2 bag play [--clock]``.

    bag_player [BAG] --ros-args -p bag_path:=BAG -p rate:=1.0 -p clock:=true

Messages go out at their recorded times scaled by ``rate``, as serialized CDR (no
deserialization, so large images cost nothing extra), each topic with the QoS it was recorded
with (``/tf_static`` always transient-local, so late subscribers still get it) unless
``qos_reliability`` forces reliable or best-effort delivery. Images and point clouds are sent
through a DDS participant of their own, so that they cannot delay TF (see LARGE_TYPES). With
``clock: true`` the bag time is published on ``/clock`` (rosgraph_msgs/Clock) at
``clock_rate`` Hz for nodes running with ``use_sim_time``. ``wait_for_subscribers`` names
topics that must have a subscriber before playback starts (a node that subscribes on
activation would otherwise miss the first frames). The process exits when the bag is done:
status 0, or 1 when the bag cannot be played. Written for machines without ros2bag; on a ROS 2
distro ``ros2 bag play`` does the same job.
"""

import importlib
import sys
import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock

from neumap_ros.ros.msg_conversions import ns_to_stamp
from neumap_ros.ros.parameters import declare_parameters, read_parameters

PARAMETERS = {
    'bag_path': ('', 'rosbag2 folder (or its .db3 / .mcap file)'),
    'rate': (1.0, 'playback speed factor'),
    'clock': (False, 'publish the bag time on /clock'),
    'clock_rate': (100.0, 'Hz of /clock messages'),
    'start_delay': (0.0, 'seconds to wait before the first message'),
    'wait_for_subscribers': ([''], 'topics that need a subscriber before playback starts '
                                   '("topic", or "topic:N" for N subscribers)'),
    'wait_timeout': (30.0, 'seconds to wait for those subscribers (then play anyway)'),
    'settle_time': (0.5, 'seconds to wait after they appeared, for their side of discovery'),
    'topics': ([''], 'play only these topics (empty: all)'),
    'linger': (1.0, 'seconds to stay after the last message so it is delivered'),
    'qos_reliability': ('recorded', 'recorded (as offered when recorded), reliable or '
                                    'best_effort for every topic'),
}


# Published through a second DDS participant (a second rclpy context). With Fast DDS's
# shared-memory transport, camera frames (about 1 MB, several per second) fill the sending
# participant's segment, and the small samples it sends meanwhile (TF, camera_info, ground
# truth) are then delivered only on a later reliability heartbeat, seconds late: consumers
# see TF extrapolation errors. A participant of their own keeps small topics on time.
LARGE_TYPES = {'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage',
               'sensor_msgs/msg/PointCloud2'}


def message_class(msgtype: str):
    """Return the rclpy message class of a type name like ``sensor_msgs/msg/Image``."""
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def is_tf_topic(topic: str) -> bool:
    """Return whether a topic is TF's, also a robot's in a namespace (``/robot1/tf``)."""
    return topic.rstrip('/').rsplit('/', 1)[-1] in ('tf', 'tf_static')


def recorded_qos(topic: str, profiles, reliability_override: str = 'recorded') -> QoSProfile:
    """
    Return the QoS to replay a topic with, from the profiles recorded in the bag.

    The reliability override leaves TF alone: tf2 listeners subscribe reliably and would
    receive nothing from a best-effort publisher.
    """
    from rosbags.interfaces import QosDurability, QosReliability
    reliability, durability, depth = ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE, 10
    if profiles:
        # As rosbag2 replays: a policy only when every recorded publisher offered it, so
        # the replay still reaches whoever subscribed to any of them.
        if all(p.reliability == QosReliability.BEST_EFFORT for p in profiles):
            reliability = ReliabilityPolicy.BEST_EFFORT
        if all(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles):
            durability = DurabilityPolicy.TRANSIENT_LOCAL
        depth = max(max(int(p.depth or 0) for p in profiles), 1)
    if is_tf_topic(topic):
        reliability = ReliabilityPolicy.RELIABLE
    elif reliability_override == 'reliable':
        reliability = ReliabilityPolicy.RELIABLE
    elif reliability_override == 'best_effort':
        reliability = ReliabilityPolicy.BEST_EFFORT
    if is_tf_topic(topic) and topic.rstrip('/').endswith('tf_static'):
        durability, depth = DurabilityPolicy.TRANSIENT_LOCAL, max(depth, 100)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(depth, 10),
                      reliability=reliability, durability=durability)


class BagPlayer(Node):
    """Publishes the messages of a bag at their recorded pace."""

    def __init__(self, bag_path: str = '', large_context=None):
        """
        Declare parameters, open the bag and create one publisher per topic.

        Topics of LARGE_TYPES are published from a node in ``large_context`` when given.
        """
        super().__init__('bag_player')
        declare_parameters(self, PARAMETERS)
        self.param = read_parameters(self, PARAMETERS)
        from rosbags.rosbag2 import Reader
        self.bag_path = bag_path or self.param['bag_path']
        if not self.bag_path:
            raise ValueError('no bag given: pass it as argument or set bag_path')
        self.rate = self.param['rate']
        if not self.rate > 0:
            raise ValueError(f'rate must be positive, got {self.rate}')
        self.reader = Reader(self.bag_path)
        self.reader.open()
        wanted = {t for t in self.param['topics'] if t}
        self.connections = [c for c in self.reader.connections
                            if not wanted or c.topic in wanted]
        if not self.connections:
            raise ValueError(f'{self.bag_path} has none of the topics {sorted(wanted)}')
        # Images go out through a DDS participant of their own (see LARGE_TYPES).
        self.large_node = rclpy.create_node('bag_player_large', context=large_context) \
            if large_context is not None else self
        override = self.param['qos_reliability']
        if override not in ('recorded', 'reliable', 'best_effort'):
            raise ValueError(f'qos_reliability must be recorded, reliable or best_effort, '
                             f'got {override!r}')
        self.publishers_by_topic = {}
        for connection in self.connections:
            if connection.topic in self.publishers_by_topic:
                continue
            try:
                kind = message_class(connection.msgtype)
            except (ImportError, AttributeError, ValueError):
                # As ros2 bag play: a type this machine lacks skips its topic, not the bag.
                self.get_logger().warning(f'skipping {connection.topic}: message type '
                                          f'{connection.msgtype} is not installed')
                continue
            node = self.large_node if connection.msgtype in LARGE_TYPES else self
            offers = [p for c in self.connections if c.topic == connection.topic
                      for p in c.ext.offered_qos_profiles]
            self.publishers_by_topic[connection.topic] = node.create_publisher(
                kind, connection.topic, recorded_qos(connection.topic, offers, override))
        self.connections = [c for c in self.connections if c.topic in self.publishers_by_topic]
        if not self.connections:
            raise ValueError(f'{self.bag_path} has no topic whose message type is installed')
        if sum(c.msgcount for c in self.connections) == 0:
            # Its start time is then a placeholder, which /clock would publish as a date.
            raise ValueError(f'{self.bag_path} holds no messages on '
                             f'{sorted({c.topic for c in self.connections})}')
        self.clock_publisher = None
        if self.param['clock']:
            self.clock_publisher = self.create_publisher(
                Clock, '/clock', QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.bag_time_ns = self.reader.start_time
        self.stopped = threading.Event()
        # SIGINT shuts the context down without raising here: stop playing, not publishing
        # on a dead context.
        self.context.on_shutdown(self.stopped.set)

    def _publish_clock(self) -> None:
        if self.clock_publisher is not None:
            self.clock_publisher.publish(Clock(clock=ns_to_stamp(self.bag_time_ns)))

    def _clock_loop(self, period: float) -> None:
        while not self.stopped.wait(period):
            try:
                self._publish_clock()
            except Exception:   # the context went away between the check and the publish
                return

    def _wait_for_subscribers(self) -> None:
        topics = [t for t in self.param['wait_for_subscribers'] if t]
        deadline = time.monotonic() + self.param['wait_timeout']
        for entry in topics:
            topic, _, count = entry.partition(':')
            wanted = int(count) if count.isdigit() else 1
            # Publishers are keyed by the bag's names; a remapped topic is found by its
            # resolved name among theirs.
            publisher = next((p for p in self.publishers_by_topic.values()
                              if p.topic_name == self.resolve_topic_name(topic)), None)
            if publisher is None:
                self.get_logger().warning(f'not waiting for {topic}: it is not in the bag')
                continue
            while publisher.get_subscription_count() < wanted and not self.stopped.is_set():
                if time.monotonic() > deadline:
                    self.get_logger().warning(
                        f'{publisher.get_subscription_count()} of {wanted} subscribers on '
                        f'{publisher.topic_name}; playing anyway')
                    break
                time.sleep(0.05)
        if topics:
            # The publisher sees the subscriber before the subscriber sees the publisher;
            # best-effort samples sent in between are lost.
            self.stopped.wait(self.param['settle_time'])

    def play(self) -> int:
        """Play the bag once; return the number of messages published."""
        clock_thread = None
        if self.clock_publisher is not None:
            # From the start, holding the bag's first stamp while waiting: a node on sim
            # time that starts meanwhile gets a clock at once.
            period = 1.0 / max(self.param['clock_rate'], 1.0)
            clock_thread = threading.Thread(target=self._clock_loop, args=(period,),
                                            daemon=True)
            clock_thread.start()
        self._publish_clock()
        self._wait_for_subscribers()
        delay = self.param['start_delay']
        if delay > 0:
            self.stopped.wait(delay)
        start_ns, wall_start = self.reader.start_time, time.monotonic()
        self.get_logger().info(
            f'playing {self.bag_path}: {sum(c.msgcount for c in self.connections)} messages, '
            f'{self.reader.duration / 1e9:.1f} s at rate {self.rate}')
        count = 0
        try:
            for connection, stamp_ns, raw in self.reader.messages(connections=self.connections):
                due = wall_start + (stamp_ns - start_ns) / 1e9 / self.rate
                while not self.stopped.is_set():
                    remaining = due - time.monotonic()
                    # Bag time advances with the wall clock, so /clock never runs ahead.
                    self.bag_time_ns = max(self.bag_time_ns, start_ns + int(
                        (time.monotonic() - wall_start) * self.rate * 1e9))
                    if remaining <= 0:
                        break
                    time.sleep(min(remaining, 0.01))
                if self.stopped.is_set():
                    break
                self.bag_time_ns = max(self.bag_time_ns, stamp_ns)
                try:
                    self.publishers_by_topic[connection.topic].publish(bytes(raw))
                except Exception:
                    if self.context.ok():
                        raise
                    break   # shut down between the check and the publish
                count += 1
        except KeyboardInterrupt:
            # SIGINT may also arrive as an exception here, while the context shuts down.
            self.stopped.set()
            raise
        finally:
            if not self.stopped.is_set() and self.context.ok():
                # A complete playback: let the last messages reach their subscribers.
                self._publish_clock()
                linger = self.param['linger']
                for publisher in self.publishers_by_topic.values():
                    publisher.wait_for_all_acked(Duration(seconds=linger))
            self.stopped.set()
            if clock_thread is not None:
                clock_thread.join()
            self.reader.close()
        if self.context.ok():
            self.get_logger().info(f'done: published {count} messages')
        return count


def without_node_name(args):
    """Return ``args`` less node-name remappings (launch renames the main node only)."""
    kept, skip = [], False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        following = args[index + 1] if index + 1 < len(args) else ''
        if arg in ('-r', '--remap') and following.split(':=')[0].endswith('__node'):
            skip = True
            continue
        kept.append(arg)
    return kept


def main(args=None) -> int:
    """Play the bag named by the first argument or the bag_path parameter, then exit."""
    args = sys.argv if args is None else args
    positional = rclpy.utilities.remove_ros_args(args)[1:]
    status = 0
    large_context = Context()
    try:
        with rclpy.init(args=args):
            rclpy.init(args=without_node_name(args), context=large_context,
                       signal_handler_options=SignalHandlerOptions.NO)
            try:
                player = BagPlayer(positional[0] if positional else '', large_context)
            except Exception as error:  # rosbags raises its own ReaderError for bad bags
                print(f'bag_player: error: {error}', file=sys.stderr)
                return 1
            executor = SingleThreadedExecutor()
            executor.add_node(player)

            def spin():
                try:
                    executor.spin()
                except ExternalShutdownException:
                    pass

            spinner = threading.Thread(target=spin, daemon=True)
            spinner.start()
            try:
                player.play()
                if not rclpy.ok():
                    status = 130   # interrupted: not a complete playback
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception as error:  # a damaged message mid-bag: say so, exit 1
                print(f'bag_player: error while playing: {error}', file=sys.stderr)
                status = 1
            finally:
                player.stopped.set()
                executor.shutdown()
                spinner.join()
                if player.large_node is not player:
                    player.large_node.destroy_node()
                player.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        status = 130
    finally:
        large_context.try_shutdown()
    return status


if __name__ == '__main__':
    sys.exit(main())
