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
Build a NeuMap (or feature-matching) map from ROS data (``map_builder_node``).

Two sources:

* a rosbag2 (``bag_path`` set): its posed keyframes (as below) are extracted with
  :func:`neumap_ros.core.bags.bag_to_dataset` and the map is built at once; the node exits when
  done (status 0, or 1 on failure) unless ``exit_when_done`` is false.
* live topics: ``image`` + ``camera_info`` (+ ``depth`` when ``use_depth``), posed by a
  PoseStamped topic (``pose_topic``) or by TF ``world_frame -> camera``. Keyframes (moved at
  least ``keyframe_translation`` m or ``keyframe_rotation_deg``) are staged on disk in the
  7-Scenes layout; ``~/build`` (std_srvs/Trigger) builds the map from them.

Progress goes to the log, to ``~/progress`` (std_msgs/Float32: 0..1, -1 on failure) and to
``/diagnostics``. The map is written atomically by :func:`neumap_ros.core.map_building.build_map`
and only after every step succeeded, so a failed build never replaces a good map.
"""

from collections import deque
import math
import os
from pathlib import Path
import shutil
import sys
import tempfile
import threading
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from neumap_ros.core.keyframes import KeyframeSelector
from neumap_ros.core.observations import check_registered_depth
from neumap_ros.core.sensor_data import decode_depth
from neumap_ros.core.stamp_sync import StampSynchronizer
from neumap_ros.core.transform_buffer import TransformBuffer, TransformError
from neumap_ros.ros.image_conversion import camera_info_to_camera, check_size, image_to_numpy
from neumap_ros.ros.localizer_node import IMAGE_QOS, image_qos_profile, TF_QOS, \
    TF_STATIC_QOS
from neumap_ros.ros.msg_conversions import NS_PER_S, pose_to_matrix, stamp_to_ns, \
    transform_to_matrix
from neumap_ros.ros.parameters import declare_parameters, read_parameters

NODE_NAME = 'map_builder_node'

PARAMETERS = {
    'output_path': ('', 'map file to write (.safetensors)'),
    'method': ('neural', 'neural or features'),
    'weights': ('', 'decoder weights for neural maps (empty: the decoder shipped for '
                'the keypoint kind)'),
    'config_file': ('', 'YAML with "mapping:" and "features:" sections, as neumap build-map'),
    'bag_path': ('', 'build from this rosbag2 instead of live topics'),
    'bag_image_topic': ('', 'image topic in the bag (empty: the only one)'),
    'bag_camera_info_topic': ('', 'camera_info topic in the bag (empty: the only one)'),
    'pose_topic': ('', 'pose of the camera in world_frame (bag: PoseStamped, '
                       'PoseWithCovarianceStamped, Odometry or TransformStamped, empty = the '
                       'only PoseStamped or TF; live: PoseStamped, empty = TF)'),
    'depth_topic': ('', 'bag: depth image topic (empty: none)'),
    'use_depth': (False, 'live: subscribe to "depth" (16UC1 mm or 32FC1 m, registered)'),
    'world_frame': ('map', 'frame the map is built in'),
    'camera_frame': ('', 'camera optical frame (empty: image header frame_id)'),
    'rectified_input': (False, 'images are rectified (image_rect): use camera_info P, ignore '
                               'distortion'),
    'every': (1, 'bag: use every n-th image'),
    'max_frames': (0, 'most frames used (0: all)'),
    'keyframe_translation': (0.05, 'metres of camera travel between keyframes (live and bag)'),
    'keyframe_rotation_deg': (5.0, 'degrees of turn between keyframes (both 0: every frame)'),
    'image_qos': ('sensor_data', 'sensor_data, reliable or system_default'),
    'sync_tolerance': (0.0, 'largest image/camera_info/pose/depth stamp difference (s)'),
    # Longer than a DDS reliable retransmission (Fast DDS heartbeats every 3 s): a large
    # message that lost a fragment still arrives, late.
    'pose_wait': (5.0, 'live: seconds a frame waits for its pose and depth before it is '
                       'skipped'),
    # Each waiting frame holds its image (~1 MB at 640x480): a bound, and a count when hit.
    'pending_frames': (60, 'live: frames that may wait for their pose at once; beyond it the '
                           'oldest is skipped (counted as skipped_queue_full)'),
    'work_dir': ('', 'where frames are staged (empty: a temporary folder)'),
    'exit_when_done': (True, 'bag: exit after building'),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages'),
}


# Latched: a monitor that joins mid-build (or just after a short one) still gets the recent
# progress values, the last one being the current state.
PROGRESS_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Stage names on /diagnostics for the steps build_map reports.
BUILD_STAGES = {'features': 'extracting features', 'codes': 'optimising codes',
                'finetune': 'fine-tuning codes', 'saving': 'writing the map',
                'saved': 'map written'}


class BuildCancelled(Exception):
    """Raised inside a running build when the node shuts down."""


class MapBuilderNode(Node):
    """Collects posed frames (or reads a bag) and builds a map on request."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        """Declare parameters; subscribe (live) or schedule the bag build."""
        super().__init__(node_name, **kwargs)
        declare_parameters(self, PARAMETERS)
        self.p = read_parameters(self, PARAMETERS)
        if self.p['method'] not in ('neural', 'features'):
            raise ValueError(f'method must be neural or features, got {self.p["method"]!r}')
        if not self.p['output_path']:
            raise ValueError('output_path is empty: set it to the map file to write')
        if not self.p['pose_wait'] > 0:
            raise ValueError(f'pose_wait must be positive, got {self.p["pose_wait"]}')
        if self.p['pending_frames'] < 1:
            raise ValueError(f'pending_frames must be >= 1, got {self.p["pending_frames"]}')
        for name in ('every',):
            if self.p[name] < 1:
                raise ValueError(f'{name} must be >= 1, got {self.p[name]}')
        for name in ('max_frames', 'keyframe_translation', 'keyframe_rotation_deg',
                     'sync_tolerance'):
            if not self.p[name] >= 0:
                raise ValueError(f'{name} must be >= 0, got {self.p[name]}')
        if self.p['image_qos'] not in IMAGE_QOS:
            raise ValueError(f'image_qos must be one of {IMAGE_QOS}, got '
                             f'{self.p["image_qos"]!r}')
        self.output = Path(self.p['output_path']).expanduser().resolve()
        # Settings are read now, not at ~/build: a typo must not cost a collection session.
        self.request_settings = self._settings()
        self._temporary = not self.p['work_dir']
        if self.p['work_dir']:
            self.work_dir = Path(self.p['work_dir']).expanduser().resolve()
            if not self.p['bag_path'] and any(self.work_dir.glob('frame-*')):
                # Frames of an earlier session would be built into this map (other camera,
                # perhaps another world frame), and new frames would overwrite some of them.
                raise ValueError(f'work_dir {self.work_dir} holds frames of an earlier '
                                 f'session: empty it or choose another folder')
        else:
            self.work_dir = Path(tempfile.mkdtemp(prefix='neumap_frames_'))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.lock = threading.Lock()
        self.stage, self.progress, self.error = 'collecting', 0.0, ''
        self.building = False
        self._thread = None
        self._cancel = threading.Event()
        self.done = threading.Event()
        self.succeeded = False
        self.cancelled = False
        self.summary = None
        self.progress_pub = self.create_publisher(Float32, '~/progress', PROGRESS_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(max(float(self.p['diagnostics_period']), 0.1),
                          self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.frames, self.K = 0, None
        self.skipped = {'no_pose': 0, 'no_depth': 0, 'no_frame_id': 0, 'queue_full': 0,
                        'bad': 0, 'write_failed': 0}
        self._skipped_reported = 0   # skipped frames at the last diagnostics message
        self.poses_in_other_frame = 0
        self.incompatible_qos = self.lost_in_transport = 0   # live camera subscriptions
        self.sync = None
        self.keyframes = KeyframeSelector(self.p['keyframe_translation'],
                                          self.p['keyframe_rotation_deg'])
        if self.p['bag_path']:
            # Steady: a bag build has no /clock, so a sim-time timer would never fire.
            self._once = self.create_timer(0.1, self._start_bag_build,
                                           clock=Clock(clock_type=ClockType.STEADY_TIME))
        else:
            self._subscribe()
        self.create_service(Trigger, '~/build', self._on_build)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        # Read once at start (the bag build or the staging folder depend on them): accepting a
        # change that is then ignored would mislead.
        for parameter in parameters:
            if parameter.name in PARAMETERS and parameter.value != self.p[parameter.name]:
                return SetParametersResult(successful=False, reason=(
                    f'{parameter.name} is read when the node starts: restart it to change'))
        return SetParametersResult(successful=True)

    def _settings(self):
        from neumap_ros.core.features import FeatureConfig
        from neumap_ros.core.mapping import MappingConfig
        from neumap_ros.core.settings import load_settings_file, with_overrides
        settings = load_settings_file(self.p['config_file'], ('mapping', 'features'))
        source = self.p['config_file'] or 'config'
        return (with_overrides(MappingConfig(), settings.get('mapping', {}), source),
                with_overrides(FeatureConfig(), settings.get('features', {}), source))

    # --- live collection --------------------------------------------------------------------

    def _subscribe(self) -> None:
        # A deeper queue than a localizer's: a keyframe lost to a burst is a hole in the map.
        qos = image_qos_profile(self.p['image_qos'], 20)
        tolerance = int(round(self.p['sync_tolerance'] * NS_PER_S))
        self.sync = StampSynchronizer(tolerance, max_pending=30)
        self.pending = deque()
        self.poses, self.depths = {}, {}
        self.tf = TransformBuffer(cache_time=30.0)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos,
                                            message_lost=self._on_message_lost)
        self.create_subscription(Image, 'image', self._on_image, qos, event_callbacks=events)
        self.create_subscription(CameraInfo, 'camera_info', self._on_info, qos,
                                 event_callbacks=events)
        if self.p['use_depth']:
            self.create_subscription(Image, 'depth', self._on_depth, qos, event_callbacks=events)
        if self.p['pose_topic']:
            self.create_subscription(PoseStamped, self.p['pose_topic'], self._on_pose, 50)
        self.create_subscription(TFMessage, '/tf', lambda m: self._on_tf(m, False), TF_QOS)
        self.create_subscription(TFMessage, '/tf_static', lambda m: self._on_tf(m, True),
                                 TF_STATIC_QOS)
        # Steady, as pose_wait is: a paused /clock must not freeze the queue.
        self.create_timer(0.05, self._drain, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _on_incompatible_qos(self, info) -> None:
        # A reliable subscription never hears a best-effort camera: nothing would ever be
        # collected, silently. Say so in the log and the diagnostics.
        self.incompatible_qos += 1
        policy = getattr(info.last_policy_kind, 'name', str(info.last_policy_kind))
        self.get_logger().warning(
            f'a camera publisher offers QoS incompatible with image_qos '
            f'"{self.p["image_qos"]}" (policy {policy}); try image_qos sensor_data',
            throttle_duration_sec=5.0)

    def _on_message_lost(self, info) -> None:
        self.lost_in_transport += int(info.total_count_change)

    def _on_image(self, msg: Image) -> None:
        self.sync.add_image(stamp_to_ns(msg.header.stamp), msg)
        self._queue_pair()

    def _on_info(self, msg: CameraInfo) -> None:
        self.sync.add_info(stamp_to_ns(msg.header.stamp), msg)
        self._queue_pair()

    def _queue_pair(self) -> None:
        pair = self.sync.take()
        if pair is None:
            return
        if len(self.pending) >= self.p['pending_frames']:
            # Poses lag more than the queue covers: keep the newest frames, say so.
            self.pending.popleft()
            self.skipped['queue_full'] += 1
            self.get_logger().warning(
                f'skipped a frame: {self.p["pending_frames"]} frames already wait for their '
                'pose (poses late or missing; raise pending_frames or lower the image rate)',
                throttle_duration_sec=5.0)
        self.pending.append((time.monotonic(), pair))

    def _on_depth(self, msg: Image) -> None:
        self.depths[stamp_to_ns(msg.header.stamp)] = msg
        while len(self.depths) > 30:
            self.depths.pop(min(self.depths))

    def _on_pose(self, msg: PoseStamped) -> None:
        frame, world = msg.header.frame_id.strip('/'), self.p['world_frame'].strip('/')
        if frame and frame != world:
            # A pose in another frame (odom for map) would build a map in that frame: its
            # frames end up skipped for want of a pose, and the reason is said here.
            self.poses_in_other_frame += 1
            self.get_logger().warning(
                f'ignoring poses on {self.p["pose_topic"]}: they are in frame {frame!r}, not '
                f'world_frame {world!r}', throttle_duration_sec=5.0)
            return
        try:
            self.poses[stamp_to_ns(msg.header.stamp)] = pose_to_matrix(msg.pose)
        except ValueError:
            return
        while len(self.poses) > 300:
            self.poses.pop(min(self.poses))

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        for transform in msg.transforms:
            try:
                self.tf.set_matrix(transform.header.frame_id, transform.child_frame_id,
                                   stamp_to_ns(transform.header.stamp) / NS_PER_S,
                                   transform_to_matrix(transform.transform), static)
            except ValueError:
                continue

    def _nearest(self, table: dict, stamp: int):
        """Return the entry of ``table`` at ``stamp``, else the nearest within sync_tolerance."""
        if stamp in table:
            return table[stamp]
        tolerance = self.p['sync_tolerance'] * NS_PER_S
        near = [s for s in table if abs(s - stamp) <= tolerance]
        return table[min(near, key=lambda s: abs(s - stamp))] if near else None

    def _pose(self, stamp: int, frame: str):
        if self.p['pose_topic']:
            return self._nearest(self.poses, stamp)
        try:
            return self.tf.lookup(self.p['world_frame'], self.p['camera_frame'] or frame,
                                  stamp / NS_PER_S)
        except (TransformError, ValueError):   # ValueError: a frame name TF cannot hold
            return None

    def _drain(self) -> None:
        # Pairs wait up to pose_wait for their pose (and depth) to arrive, then are skipped.
        now = time.monotonic()
        keep = deque()
        while self.pending:
            queued, pair = self.pending.popleft()
            frame = pair.image.header.frame_id
            if not (self.p['pose_topic'] or self.p['camera_frame'] or frame.strip('/')):
                self.skipped['no_frame_id'] += 1
                self.get_logger().warning(
                    'skipped a frame: its header.frame_id is empty, so TF cannot place it '
                    '(set camera_frame, or pose_topic)', throttle_duration_sec=5.0)
                continue
            pose = self._pose(pair.stamp, frame)
            depth = self._nearest(self.depths, pair.stamp) if self.p['use_depth'] else None
            if pose is None or (self.p['use_depth'] and depth is None):
                if now - queued < self.p['pose_wait']:
                    keep.append((queued, pair))
                else:
                    reason = 'no_pose' if pose is None else 'no_depth'
                    self.skipped[reason] += 1
                    self.get_logger().warning(
                        f'skipped a frame ({reason.replace("_", " ")} within '
                        f'{self.p["pose_wait"]:g} s)',
                        throttle_duration_sec=5.0)
                continue
            self._stage_frame(pair, pose, depth)
        self.pending = keep

    def _stage_frame(self, pair, pose, depth_msg) -> None:
        if self.building or (self.p['max_frames'] and self.frames >= self.p['max_frames']):
            return
        if not self.keyframes.is_keyframe(pose):
            return
        try:
            image = image_to_numpy(pair.image)
            camera = camera_info_to_camera(pair.info, self.p['rectified_input'])
            check_size(image, camera)
            depth = None
            if depth_msg is not None:
                depth = decode_depth(depth_msg.height, depth_msg.width, depth_msg.encoding,
                                     depth_msg.step, depth_msg.data, depth_msg.is_bigendian)
                check_registered_depth(depth, image)   # skip the frame, not the build
        except ValueError as error:
            self.skipped['bad'] += 1
            self.get_logger().warning(f'skipping a frame: {error}')
            return
        if camera.has_distortion:
            # The 7-Scenes layout stores a pinhole K only: undistort pixels and depth alike.
            maps = cv2.initUndistortRectifyMap(camera.K, np.asarray(camera.distortion), None,
                                               camera.K, (camera.width, camera.height),
                                               cv2.CV_32FC1)
            image = cv2.remap(image, *maps, cv2.INTER_LINEAR)
            if depth is not None:
                depth = cv2.remap(depth, *maps, cv2.INTER_NEAREST)
        if self.K is None:
            self.K = camera.K
            self.work_dir.mkdir(parents=True, exist_ok=True)
            np.savetxt(self.work_dir / 'rgb-camera-intrinsics.txt', self.K, fmt='%.9f')
        elif not np.allclose(self.K, camera.K):
            # One map, one camera (the 7-Scenes layout holds a single K).
            self.skipped['bad'] += 1
            self.get_logger().warning('skipping a frame: the calibration changed since the '
                                      'first frame', throttle_duration_sec=5.0)
            return
        name = f'frame-{self.frames:06d}'
        try:
            written = cv2.imwrite(str(self.work_dir / f'{name}.color.png'), image)
            if depth is not None:
                written = written and cv2.imwrite(
                    str(self.work_dir / f'{name}.depth.png'),
                    np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16))
            if not written:
                raise OSError(f'cannot write {name} images to {self.work_dir}')
            # The pose last, under its final name only once complete: a frame whose pose
            # file exists is whole.
            partial = self.work_dir / f'.{name}.pose.txt'
            np.savetxt(partial, pose, fmt='%.9f')
            os.replace(partial, self.work_dir / f'{name}.pose.txt')
        except OSError as error:   # disk full or read-only: keep what is staged, say so
            self.skipped['write_failed'] += 1
            self.get_logger().error(f'cannot stage a keyframe ({error}); the '
                                    f'{self.frames} staged so far are kept',
                                    throttle_duration_sec=5.0)
            return
        self.frames += 1
        self.keyframes.accept(pose)
        if self.frames % 10 == 0:
            self.get_logger().info(f'{self.frames} keyframes collected')

    # --- building ---------------------------------------------------------------------------

    def _set(self, stage: str, progress: float, final: bool = False) -> None:
        # Every build step passes here: the place a shutdown stops a running build (a final
        # state is then not published: the context may be gone).
        if self._cancel.is_set():
            if final:
                return
            raise BuildCancelled('the node is shutting down')
        with self.lock:
            self.stage, self.progress = stage, progress
        self.progress_pub.publish(Float32(data=float(progress)))

    def stop_build(self, timeout: float = 30.0) -> None:
        """Stop a running build at its next step and wait for it (before shutdown)."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_build(self, request, response):
        if self.building:
            response.success, response.message = False, 'a build is already running'
        elif self.p['bag_path']:
            response.success, response.message = False, 'building from the bag already'
        elif self.frames < 3:
            response.success = False
            response.message = f'only {self.frames} keyframes collected; need at least 3'
        else:
            self._start(self._build_live)
            response.success = True
            response.message = f'building a map from {self.frames} keyframes into {self.output}'
        return response

    def _start(self, target) -> None:
        self.building = True
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _start_bag_build(self) -> None:
        self._once.cancel()
        self._start(self._build_bag)

    def _run(self, target) -> None:
        started = time.monotonic()
        try:
            summary = target()
        except BuildCancelled:
            self.cancelled = True
            self.get_logger().info(f'map build stopped by shutdown, {self.output} left '
                                   f'unchanged')
        except Exception as error:  # reported, and the previous map is left as it was
            self.error = f'{type(error).__name__}: {error}'
            self.get_logger().error(f'map build failed, {self.output} left unchanged: '
                                    f'{self.error}')
            self._set('failed', -1.0, final=True)
        else:
            self.summary = summary
            self.succeeded = True
            self._set('done', 1.0, final=True)
            self.get_logger().info(
                f'wrote {summary.output} ({summary.method}, {summary.map_bytes / 1e6:.2f} MB) '
                f'from {summary.frames} frames / {summary.points} 3D points in '
                f'{time.monotonic() - started:.1f} s')
        finally:
            self.building = False
            self.done.set()

    def _request(self, dataset: Path, split):
        from neumap_ros.core.map_building import BuildRequest
        mapping, features = self.request_settings
        return BuildRequest(dataset, split, self.output, self.p['method'], features, mapping,
                            Path(self.p['weights']) if self.p['weights'] else None, False)

    def _build_with_heartbeat(self, request):
        from neumap_ros.core.map_building import build_map
        start = self.progress
        stop = threading.Event()

        def on_progress(step, fraction):
            # 'saved' comes after the map is written: too late to stop, so never cancelled.
            final = step == 'saved'
            if self._cancel.is_set() and not final:
                raise BuildCancelled('the node is shutting down')
            # The build reports every frame and every 25 iterations; publish visible steps.
            stage = BUILD_STAGES.get(step, step)
            value = start + (1.0 - start) * fraction
            if stage != self.stage or value >= self.progress + 0.005:
                self._set(stage, value, final)

        def heartbeat():
            started = time.monotonic()
            while not stop.wait(2.0):
                self.get_logger().info(f'building the {self.p["method"]} map: {self.stage} '
                                       f'({self.progress:.0%}, {time.monotonic() - started:.0f}'
                                       f' s)')

        request.on_progress = on_progress

        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        try:
            return build_map(request)
        finally:
            stop.set()
            thread.join()

    def _build_bag(self):
        from neumap_ros.core.bags import bag_to_dataset
        self._set('extracting', 0.0)
        # A folder of our own (emptied first), named after the bag: the map records its
        # dataset's name. Never the bag itself, whatever work_dir is.
        bag = Path(self.p['bag_path']).expanduser().resolve()
        dataset = self.work_dir.resolve() / 'dataset' / (bag.stem or 'bag')
        if dataset == bag or dataset in bag.parents:
            raise ValueError(f'work_dir {self.work_dir} would stage frames over the bag {bag};'
                             f' choose another work_dir')
        if dataset.exists():
            shutil.rmtree(dataset)

        def extracted(done, total):
            self._set('extracting', 0.3 * min(done / total, 1.0))

        summary = bag_to_dataset(
            self.p['bag_path'], dataset, self.p['bag_image_topic'] or None,
            self.p['bag_camera_info_topic'] or None, self.p['pose_topic'] or None,
            self.p['depth_topic'] or None, self.p['world_frame'],
            self.p['camera_frame'] or None, self.p['every'], self.p['max_frames'],
            sync_tolerance_s=self.p['sync_tolerance'], progress=extracted,
            rectified_input=self.p['rectified_input'],
            keyframe_translation_m=self.p['keyframe_translation'],
            keyframe_rotation_deg=self.p['keyframe_rotation_deg'])
        self.frames = summary.frames
        self.get_logger().info(f'extracted {summary.frames} posed frames from '
                               f'{self.p["bag_path"]} (poses from {summary.pose_source}, '
                               f'{summary.skipped_without_pose} skipped, '
                               f'{summary.not_keyframes} too close to a keyframe)')
        self._set('building', 0.3)
        return self._build_with_heartbeat(self._request(dataset, summary.split))

    def _build_live(self):
        names = [f'frame-{index:06d}' for index in range(self.frames)]   # this session's
        split = self.work_dir / 'split-all.txt'
        split.write_text('\n'.join(names) + '\n')
        self._set('building', 0.3)
        return self._build_with_heartbeat(self._request(self.work_dir, 'all'))

    # --- diagnostics ------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        with self.lock:
            stage, progress = self.stage, self.progress
        status = DiagnosticStatus()
        status.name = f'{self.get_fully_qualified_name()}: map building'
        status.hardware_id = 'neumap_ros'
        skipped = sum(self.skipped.values())
        if stage == 'failed':
            status.level, status.message = DiagnosticStatus.ERROR, f'failed: {self.error}'
        elif stage == 'collecting' and self.incompatible_qos and not self.frames:
            status.level = DiagnosticStatus.WARN
            status.message = (f'collecting: nothing received, a camera publisher offers QoS '
                              f'incompatible with image_qos "{self.p["image_qos"]}"')
        elif stage == 'collecting' and skipped > self._skipped_reported:
            # Frames arrive but are thrown away: say so, not "collecting" in green.
            reasons = ', '.join(f'{k} {v}' for k, v in self.skipped.items() if v)
            status.level = DiagnosticStatus.WARN
            status.message = (f'collecting: {skipped - self._skipped_reported} frames skipped '
                              f'since the last report (in all: {reasons})')
        else:
            status.level = DiagnosticStatus.OK
            status.message = f'{stage} ({progress:.0%})' if not math.isnan(progress) else stage
        self._skipped_reported = skipped
        values = {'stage': stage, 'progress': f'{progress:.3f}', 'frames': str(self.frames),
                  'output_path': str(self.output), 'work_dir': str(self.work_dir)}
        values.update({f'skipped_{k}': str(v) for k, v in self.skipped.items()})
        values['poses_in_other_frame'] = str(self.poses_in_other_frame)
        if self.sync is not None:   # live: how images and calibration paired up
            counters = self.sync.counters
            values.update({'sync_pairs': str(counters.pairs),
                           'sync_dropped': str(counters.dropped),
                           'sync_out_of_order': str(counters.out_of_order),
                           'sync_restarts': str(counters.restarts),
                           'incompatible_qos': str(self.incompatible_qos),
                           'frames_lost_in_transport': str(self.lost_in_transport)})
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(msg)

    def cleanup(self) -> None:
        """Remove the temporary staging folder, unless it holds frames no map was built from."""
        if not self._temporary or (self._thread is not None and self._thread.is_alive()):
            return   # a build still running reads it
        if self.frames and not self.succeeded and not self.p['bag_path']:
            self.get_logger().warning(f'keeping the {self.frames} staged keyframes in '
                                      f'{self.work_dir} (no map was built from them)')
            return
        shutil.rmtree(self.work_dir, ignore_errors=True)


def main(args=None) -> int:
    """Run the map builder; with a bag, exit when the map is written (1 failed, 130 stopped)."""
    status = 0
    try:
        with rclpy.init(args=args):
            try:
                node = MapBuilderNode()
            except ValueError as error:
                print(f'map_builder_node: error: {error}', file=sys.stderr)
                return 2
            try:
                exit_when_done = node.p['bag_path'] and node.p['exit_when_done']
                # A bag build that ends by Ctrl-C or SIGTERM wrote no map: a script running
                # it must not take that for success.
                status = 130 if node.p['bag_path'] else 0
                while rclpy.ok():
                    rclpy.spin_once(node, timeout_sec=0.1)
                    if exit_when_done and node.done.is_set():
                        # Let the last progress and diagnostics reach their subscribers.
                        node.progress_pub.wait_for_all_acked(Duration(seconds=5))
                        status = 0 if node.succeeded else 1
                        break
            finally:
                # A build thread left running would publish on a dead context and read a
                # deleted staging folder; torch in a thread at interpreter exit aborts.
                node.stop_build()
                node.cleanup()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return status


if __name__ == '__main__':
    sys.exit(main())
