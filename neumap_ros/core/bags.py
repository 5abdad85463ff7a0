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
rosbag2 files from posed datasets and back, and offline evaluation of a map on a bag (ROS-free).

Bags are read and written with ``rosbags`` (pure Python, sqlite3 and mcap storage) and its own
CDR typestore, so these tools need no ROS installation. A bag written by
:func:`dataset_to_bag` looks like a robot recording:

* ``sensor_msgs/Image`` (bgr8, rgb8 or mono8) and ``sensor_msgs/CameraInfo`` with equal stamps,
  optionally a depth ``sensor_msgs/Image`` (16UC1, millimetres, registered to the colour image);
* ``/tf_static``: ``base_link -> camera optical frame``, a forward-looking camera mounted ahead
  of and above the base (REP-103 optical axes), offered transient-local;
* ``/tf``: ``odom -> base_link`` at every frame, equal to the ground truth seen through a slowly
  drifting ``map -> odom`` (:func:`odom_drift`), the way wheel odometry drifts;
* a ``geometry_msgs/PoseStamped`` ground-truth topic: the camera optical frame in ``map``.

:func:`bag_to_dataset` turns such a bag (or any bag with images, calibration and either a pose
topic or TF from the world frame to the camera) into the 7-Scenes layout that ``build-map``
reads; :func:`evaluate_bag` localizes a bag's images with a map and writes the report of
``neumap evaluate`` plus TUM trajectories (``timestamp tx ty tz qx qy qz qw``) that ``evo``
reads.
"""

import bisect
import contextlib
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path
import shutil
import struct
import tempfile
from typing import Callable, Dict, Iterator, Optional

import cv2
import numpy as np

from neumap_ros.core.camera import CameraError, PinholeCamera
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.geometry import invert_transform, make_transform, quaternion_xyzw, \
    rotation_from_quaternion_xyzw
from neumap_ros.core.keyframes import KeyframeSelector
from neumap_ros.core.pose_timeline import PoseTimeline
from neumap_ros.core.sensor_data import camera_from_calibration, decode_compressed, \
    decode_depth, decode_image, ImageConversionError
from neumap_ros.core.transform_buffer import TransformBuffer, TransformError

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
POSE_TYPE = 'geometry_msgs/msg/PoseStamped'
# Ground truth may come as any of these; the pose is the child (camera) in the header's frame.
POSE_TYPES = (POSE_TYPE, 'geometry_msgs/msg/PoseWithCovarianceStamped', 'nav_msgs/msg/Odometry',
              'geometry_msgs/msg/TransformStamped')
TF_TYPE = 'tf2_msgs/msg/TFMessage'

# Mid-November 2023: a realistic wall-clock epoch for recorded data.
DEFAULT_START_NS = 1_700_000_000 * 10 ** 9


class BagError(ValueError):
    """A bag that lacks what was asked of it (topics, poses, calibration), or bad arguments."""


def rosbags_errors() -> tuple:
    """
    Return the exception classes of rosbags (none where it is not installed).

    They derive from Exception only (rosbags has no common base): callers that report errors
    in one line name them beside BagError.
    """
    try:
        from rosbags.rosbag2 import ReaderError, WriterError
        from rosbags.serde import SerdeError
        from rosbags.typesys import TypesysError
    except ImportError:
        return ()
    return ReaderError, WriterError, SerdeError, TypesysError


def typestore():
    """Return the rosbags typestore of the newest ROS 2 release it knows (Kilted or older)."""
    from rosbags.typesys import get_typestore, Stores
    for name in ('ROS2_KILTED', 'ROS2_JAZZY', 'ROS2_HUMBLE'):
        store = getattr(Stores, name, None)
        if store is not None:
            return get_typestore(store)
    raise BagError('rosbags knows no ROS 2 typestore')


def default_T_base_camera() -> np.ndarray:
    """
    Return the mounting of the camera optical frame on base_link used by generated bags.

    base_link is x forward, y left, z up (REP-103); the optical frame is x right, y down,
    z forward. The camera sits 0.25 m ahead of and 0.60 m above the base centre, 0.05 m to the
    left, pitched 10 degrees down and rolled 2 degrees: a realistic, non-trivial extrinsic.
    """
    base_from_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pitch, roll = math.radians(10.0), math.radians(2.0)
    tilt = np.array([[math.cos(pitch), 0.0, math.sin(pitch)], [0.0, 1.0, 0.0],
                     [-math.sin(pitch), 0.0, math.cos(pitch)]])  # about base y: nose down
    twist = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(roll), -math.sin(roll)],
                      [0.0, math.sin(roll), math.cos(roll)]])
    return make_transform(tilt @ twist @ base_from_optical, [0.25, 0.05, 0.60])


def odom_drift(seconds: float) -> np.ndarray:
    """
    Return ``T_map_odom`` ``seconds`` after the start of a generated bag.

    A fixed offset (odometry started elsewhere than the map origin) plus a slow drift of
    2 cm/s and 0.2 deg/s about the map's z axis, like integrated wheel odometry.
    """
    yaw = math.radians(5.0 + 0.2 * seconds)
    rotation = np.array([[math.cos(yaw), -math.sin(yaw), 0.0],
                         [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    return make_transform(rotation, [0.40 + 0.02 * seconds, -0.30 + 0.01 * seconds, 0.05])


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 10 ** 9 + int(header.stamp.nanosec)


def _matrix_from_ros(translation, rotation) -> np.ndarray:
    return make_transform(rotation_from_quaternion_xyzw(
        [rotation.x, rotation.y, rotation.z, rotation.w]),
        [translation.x, translation.y, translation.z])


def _sibling_camera_info(image_topic: str) -> str:
    """Return the camera_info topic image_transport pairs with ``image_topic``."""
    base = image_topic[:-len('/compressed')] if image_topic.endswith('/compressed') \
        else image_topic
    return base.rsplit('/', 1)[0] + '/camera_info'


def _pose_matrix(msg) -> np.ndarray:
    """Return the 4x4 pose any of POSE_TYPES carries."""
    if hasattr(msg, 'transform'):                      # TransformStamped
        return _matrix_from_ros(msg.transform.translation, msg.transform.rotation)
    pose = msg.pose.pose if hasattr(msg.pose, 'pose') else msg.pose   # with covariance
    return _matrix_from_ros(pose.position, pose.orientation)


@dataclass
class BagSummary:
    """What :func:`dataset_to_bag` wrote."""

    path: Path
    storage: str
    frames: int
    duration_s: float
    topics: Dict[str, str]
    start_ns: int
    stamps_ns: list = field(default_factory=list)


class _BagWriter:
    """Typed connections over a rosbags Writer."""

    def __init__(self, path: Path, storage: str):
        from rosbags.rosbag2 import StoragePlugin, Writer
        plugins = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
        if storage not in plugins:
            raise BagError(f'storage must be sqlite3 or mcap, got {storage!r}')
        if Path(path).exists():
            raise BagError(f'{path} exists already; rosbag2 bags are never overwritten')
        self.store = typestore()
        self.writer = Writer(path, version=9, storage_plugin=plugins[storage])
        self.connections = {}

    def add(self, topic: str, msgtype: str, reliable: bool = True, latched: bool = False,
            depth: int = 10) -> None:
        from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, \
            QosReliability, QosTime
        zero = QosTime(0, 0)
        qos = Qos(QosHistory.KEEP_LAST, depth,
                  QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
                  QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
                  zero, zero, QosLiveliness.AUTOMATIC, zero, False)
        self.connections[topic] = self.writer.add_connection(
            topic, msgtype, typestore=self.store, offered_qos_profiles=[qos])

    def write(self, topic: str, log_time_ns: int, message) -> None:
        data = self.store.serialize_cdr(message, message.__msgtype__)
        self.writer.write(self.connections[topic], int(log_time_ns), data)

    def msg(self, typename: str):
        return self.store.types[typename]

    def header(self, stamp_ns: int, frame_id: str):
        time = self.msg('builtin_interfaces/msg/Time')(sec=int(stamp_ns // 10 ** 9),
                                                       nanosec=int(stamp_ns % 10 ** 9))
        return self.msg('std_msgs/msg/Header')(stamp=time, frame_id=frame_id)

    def transform(self, stamp_ns: int, parent: str, child: str, matrix: np.ndarray):
        q = quaternion_xyzw(matrix[:3, :3])
        t = matrix[:3, 3]
        return self.msg('geometry_msgs/msg/TransformStamped')(
            header=self.header(stamp_ns, parent), child_frame_id=child,
            transform=self.msg('geometry_msgs/msg/Transform')(
                translation=self.msg('geometry_msgs/msg/Vector3')(
                    x=float(t[0]), y=float(t[1]), z=float(t[2])),
                rotation=self.msg('geometry_msgs/msg/Quaternion')(
                    x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))

    def pose(self, stamp_ns: int, frame_id: str, matrix: np.ndarray):
        q = quaternion_xyzw(matrix[:3, :3])
        t = matrix[:3, 3]
        return self.msg(POSE_TYPE)(
            header=self.header(stamp_ns, frame_id),
            pose=self.msg('geometry_msgs/msg/Pose')(
                position=self.msg('geometry_msgs/msg/Point')(
                    x=float(t[0]), y=float(t[1]), z=float(t[2])),
                orientation=self.msg('geometry_msgs/msg/Quaternion')(
                    x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))

    def image(self, stamp_ns: int, frame_id: str, pixels: np.ndarray, encoding: str):
        from neumap_ros.core.sensor_data import encode_image
        height, width, encoding, step, data = encode_image(pixels, encoding)
        return self.msg(IMAGE_TYPE)(
            header=self.header(stamp_ns, frame_id), height=height, width=width,
            encoding=encoding, is_bigendian=0, step=step,
            data=np.frombuffer(data, dtype=np.uint8))

    def camera_info(self, stamp_ns: int, frame_id: str, camera: PinholeCamera):
        distortion = list(camera.distortion) or [0.0] * 5
        model = 'rational_polynomial' if len(distortion) >= 8 else 'plumb_bob'
        K = camera.K
        P = np.hstack([K, np.zeros((3, 1))])
        roi = self.msg('sensor_msgs/msg/RegionOfInterest')(
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.msg(INFO_TYPE)(
            header=self.header(stamp_ns, frame_id), height=int(camera.height),
            width=int(camera.width), distortion_model=model,
            d=np.asarray(distortion, dtype=np.float64), k=K.reshape(-1).astype(np.float64),
            r=np.eye(3).reshape(-1), p=P.reshape(-1).astype(np.float64), binning_x=0,
            binning_y=0, roi=roi)


def dataset_to_bag(dataset_dir, split, out_bag, storage: str = 'sqlite3', fps: float = 10.0,
                   image_topic: str = '/camera/color/image_raw',
                   camera_info_topic: str = '/camera/color/camera_info',
                   gt_topic: str = '/ground_truth/camera_pose',
                   depth_topic: Optional[str] = None, encoding: str = 'bgr8',
                   map_frame: str = 'map', odom_frame: str = 'odom',
                   base_frame: str = 'base_link',
                   camera_frame: str = 'camera_color_optical_frame',
                   T_base_camera: Optional[np.ndarray] = None, drift: bool = True,
                   image_reliable: bool = True, start_ns: int = DEFAULT_START_NS,
                   max_frames: int = 0,
                   progress: Optional[Callable[[int, int], None]] = None) -> BagSummary:
    """
    Write the frames of a dataset split as a rosbag2 recording (see the module docstring).

    Frames are stamped ``start_ns + i / fps``. ``image_reliable=False`` records the image and
    camera_info topics as offered best-effort (as camera drivers usually do), which a player
    replays with that QoS. Returns a :class:`BagSummary`.
    """
    if not fps > 0:
        raise BagError(f'fps must be positive, got {fps}')
    if encoding not in ('bgr8', 'rgb8', 'mono8'):
        raise BagError(f'encoding must be bgr8, rgb8 or mono8, got {encoding!r}')
    if Path(out_bag).exists():
        raise BagError(f'{out_bag} exists already; rosbag2 bags are never overwritten')
    dataset = open_dataset(dataset_dir)
    frames = dataset.split(split)
    if max_frames:
        frames = frames[:max_frames]
    if not frames:
        raise BagError(f'split {split!r} of {dataset_dir} has no frames')
    if depth_topic and not dataset.has_depth:
        raise BagError(f'{dataset_dir} has no depth images for {depth_topic}')
    T_base_camera = default_T_base_camera() if T_base_camera is None else \
        np.asarray(T_base_camera, dtype=float)
    T_camera_base = invert_transform(T_base_camera)
    out_bag = Path(out_bag)
    # Written inside a hidden folder beside the target and renamed at the end: a run killed
    # half-way leaves no bag without metadata.yaml at out_bag, which would block a retry.
    out_bag.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{out_bag.name}.partial-', dir=out_bag.parent))
    bag = None
    try:
        # The bag keeps its name inside the staging folder: its files are named after it.
        bag = _BagWriter(staging / out_bag.name, storage)
        bag.writer.open()
        bag.add('/tf', TF_TYPE, depth=100)
        bag.add('/tf_static', TF_TYPE, latched=True, depth=1)
        bag.add(image_topic, IMAGE_TYPE, reliable=image_reliable, depth=5)
        bag.add(camera_info_topic, INFO_TYPE, reliable=image_reliable, depth=5)
        if gt_topic:
            bag.add(gt_topic, POSE_TYPE)
        if depth_topic:
            bag.add(depth_topic, IMAGE_TYPE, reliable=image_reliable, depth=5)
        tf_message = bag.msg(TF_TYPE)
        bag.write('/tf_static', start_ns, tf_message(transforms=[
            bag.transform(start_ns, base_frame, camera_frame, T_base_camera)]))
        period_ns = int(round(1e9 / fps))
        stamps = []
        for index, frame in enumerate(frames):
            stamp = start_ns + index * period_ns
            stamps.append(stamp)
            seconds = (stamp - start_ns) / 1e9
            T_map_odom = odom_drift(seconds) if drift else np.eye(4)
            T_map_base = frame.T_world_camera @ T_camera_base
            T_odom_base = invert_transform(T_map_odom) @ T_map_base
            # Log times a few microseconds apart keep TF ahead of the image it belongs to.
            bag.write('/tf', stamp, tf_message(transforms=[
                bag.transform(stamp, odom_frame, base_frame, T_odom_base)]))
            if gt_topic:
                bag.write(gt_topic, stamp + 1000,
                          bag.pose(stamp, map_frame, frame.T_world_camera))
            bag.write(camera_info_topic, stamp + 2000,
                      bag.camera_info(stamp, camera_frame, frame.camera))
            if depth_topic:
                depth_mm = np.round(frame.load_depth() * 1000.0).astype(np.uint16)
                bag.write(depth_topic, stamp + 3000,
                          bag.image(stamp, camera_frame, depth_mm, '16UC1'))
            bag.write(image_topic, stamp + 4000,
                      bag.image(stamp, camera_frame, frame.load_image(), encoding))
            if progress:
                progress(index + 1, len(frames))
        bag.writer.close()
        if out_bag.exists():
            raise BagError(f'{out_bag} exists already; rosbag2 bags are never overwritten')
        os.rename(staging / out_bag.name, out_bag)
    except BaseException:
        if bag is not None:   # closes its files before the staging folder goes
            with contextlib.suppress(Exception):
                bag.writer.abort()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    topics = {'image': image_topic, 'camera_info': camera_info_topic, 'tf': '/tf',
              'tf_static': '/tf_static'}
    if gt_topic:
        topics['ground_truth'] = gt_topic
    if depth_topic:
        topics['depth'] = depth_topic
    return BagSummary(out_bag, storage, len(frames), (len(frames) - 1) / fps, topics,
                      start_ns, stamps)


# --- reading ----------------------------------------------------------------------------------


@dataclass
class BagFrame:
    """One image of a bag with its calibration and (when known) its ground-truth pose."""

    stamp_ns: int
    frame_id: str
    image: Optional[np.ndarray]           # None when it could not be decoded (see problem)
    camera: Optional[PinholeCamera]
    T_world_camera: Optional[np.ndarray]
    depth_m: Optional[np.ndarray] = None
    problem: str = ''                     # why the image or its calibration is unusable


@dataclass
class _Unreadable:
    """A message that did not deserialize: its header, as far as it could be read, and why."""

    header: object
    problem: str


class BagReader:
    """
    Index a bag once (topics, TF, calibration, ground truth), then iterate its images.

    Topics left as None are found by message type when the bag has exactly one candidate.
    Poses come from ``gt_topic`` (any of POSE_TYPES, the camera in the world frame; by
    default the bag's only PoseStamped topic, if any), else from TF: ``world_frame`` to the
    image's frame (or ``camera_frame``), read from /tf and /tf_static or, without them, from
    the one namespace's ``/<ns>/tf`` and ``/<ns>/tf_static``.
    """

    def __init__(self, path, image_topic: Optional[str] = None,
                 camera_info_topic: Optional[str] = None, gt_topic: Optional[str] = None,
                 depth_topic: Optional[str] = None, world_frame: str = 'map',
                 camera_frame: Optional[str] = None, sync_tolerance_s: float = 0.0,
                 rectified_input: bool = False):
        """Open the bag at ``path`` and read everything but the images."""
        from rosbags.rosbag2 import Reader
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f'bag {self.path} does not exist')
        self.store = typestore()
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as error:  # rosbags raises its own ReaderError for bad bags
            raise BagError(f'cannot open bag {self.path}: {error}')
        try:
            self._setup(image_topic, camera_info_topic, gt_topic, depth_topic, world_frame,
                        camera_frame, sync_tolerance_s, rectified_input)
        except BaseException:
            # No with block holds the reader yet: nobody else would close its files.
            self._reader.close()
            raise

    def _setup(self, image_topic, camera_info_topic, gt_topic, depth_topic, world_frame,
               camera_frame, sync_tolerance_s, rectified_input) -> None:
        """Pick the topics and index the bag (the rest of ``__init__``)."""
        self.types = {c.topic: c.msgtype for c in self._reader.connections}
        self.image_topic = self._pick(image_topic, (IMAGE_TYPE, COMPRESSED_TYPE), 'image',
                                      exclude='depth')
        self.camera_info_topic = self._pick(camera_info_topic, (INFO_TYPE,), 'camera_info',
                                            prefer=_sibling_camera_info(self.image_topic))
        if gt_topic is None:
            self.gt_topic = self._pick(None, (POSE_TYPE,), 'ground truth', required=False,
                                       hint='; or pass an empty ground-truth topic to use TF')
        else:
            self.gt_topic = self._pick(gt_topic, POSE_TYPES, 'ground truth') if gt_topic \
                else None
        self.depth_topic = self._pick(depth_topic, (IMAGE_TYPE,), 'depth') if depth_topic \
            else None
        self.world_frame = world_frame
        self.camera_frame = camera_frame
        self.tolerance_ns = int(round(sync_tolerance_s * 1e9))
        self.rectified_input = rectified_input
        # An offline index keeps everything: header time may span far more than log time
        # (a bag recorded from a faster-than-real-time replay or simulation).
        self.tf = TransformBuffer(cache_time=math.inf)
        self.ground_truth = PoseTimeline(self.tolerance_ns)
        self.zero_stamp_images = 0   # images without a header stamp: no pose can be found
        # Messages of the index left out, by reason ('unreadable camera_info', ...).
        self.skipped_messages: Dict[str, int] = {}
        self.infos: Dict[int, object] = {}
        self._index()

    @property
    def duration_s(self) -> float:
        """Return the time between the first and the last message."""
        return self._reader.duration / 1e9

    @property
    def image_count(self) -> int:
        """Return how many messages the image topic holds."""
        return sum(c.msgcount for c in self._reader.connections if c.topic == self.image_topic)

    def close(self) -> None:
        """Close the bag."""
        self._reader.close()

    def __enter__(self):
        """Use as a context manager."""
        return self

    def __exit__(self, *exc):
        """Close on leaving the with block."""
        self.close()

    def _pick(self, topic, msgtypes, what, required=True, exclude=None, hint='', prefer=None):
        if topic:
            if topic not in self.types:
                raise BagError(f'bag {self.path} has no topic {topic}; its topics: '
                               f'{sorted(self.types)}')
            if self.types[topic] not in msgtypes:
                raise BagError(f'{what} topic {topic} carries {self.types[topic]}, expected '
                               f'{" or ".join(msgtypes)}')
            return topic
        found = [t for t, m in self.types.items() if m in msgtypes
                 and not (exclude and exclude in t)]
        if len(found) == 1:
            return found[0]
        if prefer in found:
            return prefer
        if not required and not found:
            return None
        raise BagError(f'cannot tell which {what} topic to use in {self.path}: candidates '
                       f'{sorted(found) or "none"}; name one explicitly{hint}')

    def _messages(self, topics):
        """
        Yield (topic, message) in log order.

        A message that does not deserialize (truncated, corrupt) comes as an
        :class:`_Unreadable`: one bad message is one lost message, not the end of the bag.
        """
        from rosbags.serde import SerdeError
        connections = [c for c in self._reader.connections if c.topic in topics]
        for connection, _, raw in self._reader.messages(connections=connections):
            try:
                msg = self.store.deserialize_cdr(raw, connection.msgtype)
            except SerdeError as error:
                msg = _Unreadable(self._raw_header(raw),
                                  f'unreadable {connection.msgtype} on {connection.topic}: '
                                  f'{error}')
            yield connection.topic, msg

    def _raw_header(self, raw):
        """
        Return the std_msgs Header that the CDR bytes of a stamped message start with.

        Read by hand from a message that does not deserialize as a whole, so that a bad image
        keeps its stamp (its ground truth); stamp 0 and no frame where even that is damaged.
        """
        sec, nanosec, frame_id = 0, 0, ''
        with contextlib.suppress(struct.error, UnicodeDecodeError, IndexError):
            order = '<' if raw[1] else '>'   # CDR encapsulation: 0x0001 is little-endian
            stamp = struct.unpack_from(order + 'iI', raw, 4)
            if stamp[1] < 10 ** 9:
                sec, nanosec = stamp
            length, = struct.unpack_from(order + 'I', raw, 12)
            if 16 + length <= len(raw):
                frame_id = bytes(raw[16:16 + length]).split(b'\0', 1)[0].decode()
        time = self.store.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)
        return self.store.types['std_msgs/msg/Header'](stamp=time, frame_id=frame_id)

    def _skip(self, reason: str) -> None:
        self.skipped_messages[reason] = self.skipped_messages.get(reason, 0) + 1

    def _index(self) -> None:
        self.tf_topics = self._tf_topics()
        topics = {self.camera_info_topic} | set(self.tf_topics)
        if self.gt_topic:
            topics.add(self.gt_topic)
        for topic, msg in self._messages(topics):
            kind = 'camera_info' if topic == self.camera_info_topic else \
                'ground truth' if topic == self.gt_topic else 'tf'
            if isinstance(msg, _Unreadable):
                self._skip(f'unreadable {kind}')
                continue
            if topic == self.camera_info_topic:
                self.infos[_stamp_ns(msg.header)] = msg
            elif topic == self.gt_topic:
                frame = msg.header.frame_id.strip('/')
                if frame and frame != self.world_frame.strip('/'):
                    raise BagError(
                        f'ground truth {self.gt_topic} is given in frame "{frame}", not in the '
                        f'world frame "{self.world_frame}": set the world frame to "{frame}", '
                        f'or pass an empty ground-truth topic to use TF')
                try:
                    pose = _pose_matrix(msg)
                except ValueError:   # a zero quaternion: one bad sample, like a bad TF one
                    self._skip('invalid ground truth')
                    continue
                self.ground_truth.add(_stamp_ns(msg.header), pose)
            else:
                for transform in msg.transforms:
                    try:
                        self.tf.set_matrix(
                            transform.header.frame_id, transform.child_frame_id,
                            _stamp_ns(transform.header) / 1e9,
                            _matrix_from_ros(transform.transform.translation,
                                             transform.transform.rotation),
                            static=topic.endswith('tf_static'))
                    except ValueError:
                        self._skip('invalid tf')
        if not self.infos:
            readable = 'readable ' if 'unreadable camera_info' in self.skipped_messages else ''
            raise BagError(f'topic {self.camera_info_topic} of {self.path} holds no '
                           f'{readable}messages')
        # Sorted once for _nearest_info; the rank is the table's order, which breaks ties.
        self._info_stamps = sorted(self.infos)
        self._info_rank = {stamp: rank for rank, stamp in enumerate(self.infos)}

    def _tf_topics(self) -> tuple:
        """
        Return the TF topics to read: /tf and /tf_static, else one namespace's pair.

        A robot run in a namespace records ``/<ns>/tf`` (nav2's multi-robot bringup remaps
        them there); with several namespaces and no plain /tf, which one is meant is unclear.
        """
        found = [t for t, m in self.types.items() if m == TF_TYPE
                 and t.rsplit('/', 1)[-1] in ('tf', 'tf_static')]
        plain = tuple(t for t in ('/tf', '/tf_static') if t in found)
        if plain or not found:
            return plain
        namespaces = sorted({t.rsplit('/', 1)[0] for t in found})
        if len(namespaces) > 1:
            raise BagError(f'bag {self.path} has TF in several namespaces {namespaces} and no '
                           f'/tf: poses from TF would mix robots; give a ground-truth topic '
                           f'or extract the topics of one robot')
        return tuple(sorted(found))

    def _nearest_info(self, stamp: int):
        """
        Return the CameraInfo stamped nearest ``stamp`` within the tolerance, or None.

        Of two as near, the one first in the bag wins. A binary search: a scan of every
        calibration per image made long bags quadratic.
        """
        if stamp in self.infos:
            return self.infos[stamp]
        stamps = self._info_stamps
        if not stamps:
            return None
        after = bisect.bisect_left(stamps, stamp)
        best = min(stamps[max(after - 1, 0):after + 1],
                   key=lambda s: (abs(s - stamp), self._info_rank[s]))
        return self.infos[best] if abs(best - stamp) <= self.tolerance_ns else None

    def camera_for(self, stamp: int) -> Optional[PinholeCamera]:
        """Return the camera of the CameraInfo matching ``stamp`` (nearest within tolerance)."""
        info = self._nearest_info(stamp)
        if info is None and len(self.infos) == 1:
            info = next(iter(self.infos.values()))
        if info is None:
            return None
        roi = info.roi
        return camera_from_calibration(
            info.width, info.height, info.distortion_model, info.d, info.k, info.p,
            info.binning_x, info.binning_y,
            (roi.x_offset, roi.y_offset, roi.height, roi.width), self.rectified_input)

    def pose_for(self, stamp: int, frame_id: str) -> Optional[np.ndarray]:
        """
        Return the ground-truth camera-to-world pose at ``stamp``, or None.

        From a pose topic: the sample at ``stamp``, else interpolated between the samples
        around it (see :class:`PoseTimeline`), else the nearest within the sync tolerance.
        A zero stamp (an unstamped image) has no pose.
        """
        if stamp == 0:
            return None
        if self.gt_topic:
            return self.ground_truth.pose_at(stamp)
        try:
            return self.tf.lookup(self.world_frame, self.camera_frame or frame_id, stamp / 1e9)
        except (TransformError, ValueError):   # ValueError: an empty or malformed frame_id
            return None

    def pose_source(self) -> str:
        """Describe where poses come from (for reports)."""
        if self.gt_topic:
            return f'topic {self.gt_topic}'
        source = f'tf {self.world_frame} -> {self.camera_frame or "<image frame>"}'
        if self.tf_topics and self.tf_topics[0] not in ('/tf', '/tf_static'):
            source += f' (on {", ".join(self.tf_topics)})'
        return source

    def frames(self, every: int = 1, with_depth: bool = False) -> Iterator[BagFrame]:
        """Yield every ``every``-th image as a BagFrame (posed or not: callers count)."""
        with_depth = with_depth and self.depth_topic is not None
        for msg, depth_msg in self._images_with_depth(every, with_depth):
            stamp = _stamp_ns(msg.header)
            if stamp == 0:
                self.zero_stamp_images += 1
            pose = self.pose_for(stamp, msg.header.frame_id)
            # One bad message is one unusable frame, not the end of the bag.
            unreadable = next((m for m in (msg, depth_msg) if isinstance(m, _Unreadable)), None)
            if unreadable is not None:
                yield BagFrame(stamp, msg.header.frame_id, None, None, pose, None,
                               unreadable.problem)
                continue
            try:
                camera = self.camera_for(stamp)
                if self.types[self.image_topic] == COMPRESSED_TYPE:
                    pixels = decode_compressed(msg.format, msg.data)
                else:
                    pixels = decode_image(msg.height, msg.width, msg.encoding, msg.step,
                                          msg.data, msg.is_bigendian)
                depth_m = None
                if depth_msg is not None:
                    depth_m = decode_depth(depth_msg.height, depth_msg.width,
                                           depth_msg.encoding, depth_msg.step, depth_msg.data,
                                           depth_msg.is_bigendian)
            except (ImageConversionError, CameraError) as error:
                yield BagFrame(stamp, msg.header.frame_id, None, None, pose, None, str(error))
                continue
            yield BagFrame(stamp, msg.header.frame_id, pixels, camera, pose, depth_m)

    def _images_with_depth(self, every: int, with_depth: bool):
        """
        Yield (image, depth or None) for every ``every``-th image, in one pass over the bag.

        Depth is matched by exact stamp. Both topics come in log order, so only a few
        messages wait for their partner at any time: a long RGB-D bag is never held in
        memory. An image waits until its depth comes or a later depth shows it never will.
        """
        topics = {self.image_topic} | ({self.depth_topic} if with_depth else set())
        depths, waiting, newest_depth, index = {}, [], None, -1
        limit = 64   # messages of each kind held back at most
        for topic, msg in self._messages(topics):
            if topic == self.image_topic:
                index += 1
                if index % max(every, 1) == 0:
                    waiting.append(msg)
            else:
                newest_depth = _stamp_ns(msg.header)
                depths[newest_depth] = msg
                if len(depths) > limit:
                    del depths[min(depths)]
            while waiting:
                stamp = _stamp_ns(waiting[0].header)
                if not with_depth or stamp in depths:
                    yield waiting.pop(0), depths.pop(stamp, None)
                elif newest_depth is not None and newest_depth > stamp or len(waiting) > limit:
                    yield waiting.pop(0), None
                else:
                    break
        for msg in waiting:
            yield msg, depths.pop(_stamp_ns(msg.header), None)


@dataclass
class DatasetSummary:
    """What :func:`bag_to_dataset` wrote."""

    path: Path
    frames: int
    skipped_without_pose: int
    has_depth: bool
    pose_source: str
    split: str
    not_keyframes: int = 0     # posed images left out: too close to the last keyframe
    # Calibration, TF and ground-truth messages left out, by reason (unreadable, invalid).
    skipped_messages: Dict[str, int] = field(default_factory=dict)


def bag_to_dataset(bag, out_dir, image_topic: Optional[str] = None,
                   camera_info_topic: Optional[str] = None, gt_topic: Optional[str] = None,
                   depth_topic: Optional[str] = None, world_frame: str = 'map',
                   camera_frame: Optional[str] = None, every: int = 1, max_frames: int = 0,
                   split_name: str = 'all', sync_tolerance_s: float = 0.0,
                   progress: Optional[Callable[[int, int], None]] = None,
                   rectified_input: bool = False, keyframe_translation_m: float = 0.0,
                   keyframe_rotation_deg: float = 0.0) -> DatasetSummary:
    """
    Write a bag's posed images as a 7-Scenes-layout dataset that ``build-map`` reads.

    Writes ``frame-NNNNNN.color.png``, ``frame-NNNNNN.pose.txt`` (camera-to-world 4x4),
    ``frame-NNNNNN.depth.png`` (uint16 mm) when a depth topic is given,
    ``rgb-camera-intrinsics.txt``, ``split-<split_name>.txt`` and ``timestamps.txt``. Distorted
    images are undistorted first, since the layout stores a pinhole K only. Images without a
    pose are skipped and counted. With ``rectified_input`` the images are taken as rectified
    (camera_info P, no distortion). With keyframe distances, an image is written only once
    the camera moved ``keyframe_translation_m`` or turned ``keyframe_rotation_deg`` since the
    last written one (after ``every``; ``max_frames`` counts written frames). Raises BagError
    when nothing usable is found.
    """
    keyframes = KeyframeSelector(keyframe_translation_m, keyframe_rotation_deg)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.glob('frame-*')):
        raise BagError(f'{out_dir} already holds frames; choose an empty folder')
    # Written into a hidden folder inside the target (same filesystem, even for a mounted
    # target) and moved up at the end: a bag that fails half-way leaves no frames behind
    # without their calibration (which would open with a default camera).
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix='.partial-', dir=out_dir))
    try:
        names, skipped, has_depth, source, close, messages = _write_frames(
            bag, staging, image_topic, camera_info_topic, gt_topic, depth_topic, world_frame,
            camera_frame, every, max_frames, split_name, sync_tolerance_s, progress,
            rectified_input, keyframes)
        for item in staging.iterdir():
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DatasetSummary(out_dir, len(names), skipped, has_depth, source, split_name, close,
                          messages)


def _write_frames(bag, out_dir: Path, image_topic, camera_info_topic, gt_topic, depth_topic,
                  world_frame, camera_frame, every, max_frames, split_name, sync_tolerance_s,
                  progress, rectified_input, keyframes: KeyframeSelector) -> tuple:
    """Write the dataset files of :func:`bag_to_dataset` into ``out_dir``."""
    names, stamps = [], []
    close = 0     # posed images too near the last keyframe
    K = None
    has_depth = bool(depth_topic)
    with BagReader(bag, image_topic, camera_info_topic, gt_topic, depth_topic, world_frame,
                   camera_frame, sync_tolerance_s, rectified_input) as reader:
        total = reader.image_count // max(every, 1)
        reasons = {}

        def skip(reason):
            reasons[reason] = reasons.get(reason, 0) + 1

        for frame in reader.frames(every, with_depth=has_depth):
            if frame.problem:
                skip('unreadable image or camera_info')
                continue
            if frame.T_world_camera is None or frame.camera is None:
                skip('header stamp 0' if frame.stamp_ns == 0 else
                     'no pose' if frame.T_world_camera is None else 'no camera_info')
                continue
            camera = frame.camera
            if (frame.image.shape[1], frame.image.shape[0]) != (camera.width, camera.height):
                raise BagError(f'image {frame.image.shape[1]}x{frame.image.shape[0]} does not '
                               f'match camera_info {camera.width}x{camera.height}')
            image, depth = frame.image, frame.depth_m
            if depth is not None and depth.shape[:2] != image.shape[:2]:
                # Refused here, before any frame is written (observe_frame checks it too).
                raise BagError(f'depth on {reader.depth_topic} is {depth.shape[1]}x'
                               f'{depth.shape[0]} but the images are {image.shape[1]}x'
                               f'{image.shape[0]}: record depth registered to the colour '
                               f'camera')
            if camera.has_distortion:
                image = cv2.undistort(image, camera.K, np.asarray(camera.distortion))
                if depth is not None:
                    maps = cv2.initUndistortRectifyMap(camera.K, np.asarray(camera.distortion),
                                                       None, camera.K,
                                                       (camera.width, camera.height),
                                                       cv2.CV_32FC1)
                    depth = cv2.remap(depth, *maps, cv2.INTER_NEAREST)
            if K is None:
                K = camera.K
            elif not np.allclose(K, camera.K):
                raise BagError('the calibration changes during the bag; the 7-Scenes layout '
                               'holds one camera')
            if has_depth and depth is None:
                skip('no depth')
                continue
            if not keyframes.is_keyframe(frame.T_world_camera):
                close += 1
                if progress:
                    progress(len(names) + close + sum(reasons.values()), max(total, 1))
                continue
            name = f'frame-{len(names):06d}'
            cv2.imwrite(str(out_dir / f'{name}.color.png'), image)
            np.savetxt(out_dir / f'{name}.pose.txt', frame.T_world_camera, fmt='%.9f')
            if depth is not None:
                cv2.imwrite(str(out_dir / f'{name}.depth.png'),
                            np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16))
            names.append(name)
            stamps.append(frame.stamp_ns)
            keyframes.accept(frame.T_world_camera)
            if progress:
                progress(len(names) + close + sum(reasons.values()), max(total, 1))
            if max_frames and len(names) >= max_frames:   # frames written, not read
                break
        source, messages = reader.pose_source(), dict(reader.skipped_messages)
    skipped = sum(reasons.values())
    if not names:
        why = ', '.join(f'{count} {reason}' for reason, count in sorted(reasons.items()))
        lost = ', '.join(f'{count} {reason}' for reason, count in sorted(messages.items()))
        raise BagError(f'no image of {bag} has a pose ({source}), a camera_info'
                       f'{" and depth" if has_depth else ""}; images skipped: {why or "none"}'
                       + (f'; messages skipped: {lost}' if lost else ''))
    np.savetxt(out_dir / 'rgb-camera-intrinsics.txt', K, fmt='%.9f')
    (out_dir / f'split-{split_name}.txt').write_text('\n'.join(names) + '\n')
    (out_dir / 'timestamps.txt').write_text(
        ''.join(f'{n} {s}\n' for n, s in zip(names, stamps)))
    return names, skipped, has_depth, source, close, messages


# --- offline evaluation -----------------------------------------------------------------------


def tum_line(stamp, T_world_camera: np.ndarray) -> str:
    """
    Return one TUM trajectory line: ``timestamp tx ty tz qx qy qz qw``.

    ``stamp`` is integer nanoseconds (written exactly; a float of today's epoch seconds holds
    only about 7 digits after the point) or float seconds.
    """
    t = T_world_camera[:3, 3]
    q = quaternion_xyzw(T_world_camera[:3, :3])
    if isinstance(stamp, (int, np.integer)):
        seconds = f'{int(stamp) // 10 ** 9}.{int(stamp) % 10 ** 9:09d}'
    else:
        seconds = f'{stamp:.9f}'
    return seconds + ' ' + ' '.join(f'{v:.9f}' for v in (*t, *q)) + '\n'


def read_tum(path) -> np.ndarray:
    """Read a TUM trajectory file into an (N, 8) array."""
    rows = [list(map(float, line.split())) for line in Path(path).read_text().splitlines()
            if line.strip() and not line.startswith('#')]
    return np.array(rows, dtype=float).reshape(-1, 8)


def evaluate_bag(map_path, bag, json_path=None, tum_path=None, gt_tum_path=None,
                 plot_path=None, image_topic: Optional[str] = None,
                 camera_info_topic: Optional[str] = None, gt_topic: Optional[str] = None,
                 world_frame: str = 'map', every: int = 1, max_frames: int = 0,
                 device: str = 'auto', options=None, weights=None,
                 progress: Optional[Callable[[int, int], None]] = None,
                 rectified_input: bool = False, camera_frame: Optional[str] = None,
                 sync_tolerance_s: float = 0.0) -> dict:
    """
    Localize a bag's images offline with the ROS-free localizer and score them.

    Returns (and writes to ``json_path``) the report of ``neumap evaluate``
    (:func:`neumap_ros.core.evaluation.summarize`); ``tum_path`` receives the estimated camera
    trajectory and ``gt_tum_path`` the ground truth, both in TUM format; ``plot_path`` the
    error CDFs and trajectory plot. An unreadable image is a failed query (``bad_input``), one
    without calibration too (``no_camera_info``); only a bag whose scored images all lack it
    is refused.
    """
    from neumap_ros.core.evaluation import json_safe, record_from_result, summarize
    from neumap_ros.core.features import ImageError
    from neumap_ros.core.localizer import load_localizer, LocalizationResult, LocalizerOptions
    from neumap_ros.core.map_io import atomic_write_bytes
    localizer = load_localizer(map_path, device, options or LocalizerOptions(), weights)
    records, estimates, truths, without_truth = [], [], [], 0
    try:
        with BagReader(bag, image_topic, camera_info_topic, gt_topic, None, world_frame,
                       camera_frame, sync_tolerance_s, rectified_input) as reader:
            total = reader.image_count // max(every, 1)
            for frame in reader.frames(every):
                if frame.T_world_camera is None:
                    without_truth += 1
                    continue
                stamp_s = frame.stamp_ns / 1e9
                try:
                    if frame.problem:
                        raise ImageError(frame.problem)
                    if frame.camera is None:
                        # Typically the first images of a recording started mid-stream.
                        result = LocalizationResult(False, 'no_camera_info', f'no camera_info '
                                                    f'for the image at {frame.stamp_ns} ns')
                    else:
                        result = localizer.localize(frame.image, frame.camera)
                except (CameraError, ImageError) as error:
                    # A failed query, as in `neumap evaluate`, not a lost evaluation.
                    result = LocalizationResult(False, 'bad_input', str(error))
                records.append(record_from_result(str(frame.stamp_ns), stamp_s, result,
                                                  frame.T_world_camera))
                truths.append(tum_line(frame.stamp_ns, frame.T_world_camera))
                if result.success:
                    estimates.append(tum_line(frame.stamp_ns, result.T_world_camera))
                if progress:
                    progress(len(records), max(total, 1))
                if max_frames and len(records) >= max_frames:   # frames scored, not read
                    break
            source, duration = reader.pose_source(), reader.duration_s
            info_topic, skipped = reader.camera_info_topic, dict(reader.skipped_messages)
    finally:
        localizer.release()
    if not records:
        raise BagError(f'no image of {bag} has ground truth ({without_truth} without)')
    if all(record.status == 'no_camera_info' for record in records):
        raise BagError(f'no camera_info for any image of {bag}: none has a {info_topic} message '
                       f'at its stamp; if the calibration is stamped apart from the images, '
                       f'give a sync tolerance')
    report = summarize(records, localizer.method, localizer.map_bytes,
                       localizer.map.info.get('mapping_seconds'),
                       {'map': str(map_path), 'bag': str(bag), 'dataset': Path(bag).name,
                        'ground_truth': source, 'bag_duration_s': duration,
                        'images_without_ground_truth': without_truth,
                        'skipped_messages': skipped,
                        'map_info': localizer.describe()})
    header = '# timestamp tx ty tz qx qy qz qw\n'
    if json_path:
        atomic_write_bytes(json_path, json.dumps(json_safe(report), indent=1,
                                                 allow_nan=False).encode())
    if tum_path:
        atomic_write_bytes(tum_path, (header + ''.join(estimates)).encode())
    if gt_tum_path:
        atomic_write_bytes(gt_tum_path, (header + ''.join(truths)).encode())
    if plot_path:
        from neumap_ros.core.plots import plot_reports
        plot_reports([report], plot_path, f'{Path(bag).name}')
    return report
