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
The NeuMap localizer as a ROS 2 lifecycle node (``localizer_node``).

Lifecycle (as nav2's amcl):

* configure: read and check the parameters, load the map (FAILURE, and the node stays
  unconfigured, on a missing or bad map), create the publishers.
* activate: subscribe to ``image`` (or ``image/compressed``) + ``camera_info``, ``/tf``,
  ``/tf_static`` and ``initialpose``; offer ``~/relocalize`` and ``~/load_map``; start the worker.
* deactivate / cleanup: stop and release everything (``Localizer.release()``).

Inputs are paired by stamp and only the newest pair is kept: the worker thread localizes the
freshest frame and frames that arrive meanwhile replace the pending one (counted as dropped),
so the node never works through a backlog of stale frames, whatever the queue depths.

Outputs, all stamped with the image stamp:

* ``~/pose`` (PoseWithCovarianceStamped in ``map_frame``): the ``base_frame`` pose (covariance
  propagated over the lever arm through base -> camera TF), or the camera pose when
  ``base_frame`` is empty. Nothing is published for a failed frame, nor while base -> camera
  is unknown; the reason goes to diagnostics.
* TF (``tf_mode``): ``map -> odom`` computed with odom -> camera at the image stamp (REP-105,
  as amcl; future-dated by ``transform_tolerance`` and republished between fixes), or
  ``map -> base_link`` / ``map -> camera`` (at the image stamp) for robots without odometry.
* ``/diagnostics``: state, map, rates, success rate, latency per stage, dropped and rejected
  inputs, and an OK/WARN/ERROR verdict with its reason.
* optional ``~/debug_image`` (inliers drawn) and ``~/map_cloud`` (map points, latched).

``~/load_map`` is a std_srvs/Trigger: it (re)loads the file named by the ``map_path``
parameter, so switching maps at run time is ``ros2 param set`` followed by the call; the old
map stays in use while the new one loads (images, TF and diagnostics go on meanwhile) and when
it fails to load. ``~/relocalize`` makes the next frame ignore any pose prior (global
relocalization).
"""

from dataclasses import dataclass
import math
import threading
import time
import traceback
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from neumap_ros.core.camera import CameraError
from neumap_ros.core.features import ImageError
from neumap_ros.core.geometry import invert_transform, pose_covariance_with_lever_arm
from neumap_ros.core.localization_stats import HealthThresholds, Level, LocalizationStats
from neumap_ros.core.stamp_sync import StampSynchronizer
from neumap_ros.core.transform_buffer import TransformBuffer, TransformError
from neumap_ros.ros.image_conversion import camera_info_to_camera, check_size, \
    compressed_to_numpy, image_to_numpy, numpy_to_image
from neumap_ros.ros.msg_conversions import covariance_from_msg, make_pose_with_covariance, \
    make_transform_stamped, NS_PER_S, pose_to_matrix, stamp_to_ns, transform_to_matrix
from neumap_ros.ros.parameters import coerce, declare_parameters, type_problem

NODE_NAME = 'localizer_node'

# Optical frame (z forward, x right, y down) of a camera looking along a base's x axis.
BASE_TO_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0],
                            [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])

DEVICES = ('auto', 'cpu', 'cuda')
TF_MODES = ('odom', 'base', 'camera')
IMAGE_QOS = ('sensor_data', 'reliable', 'system_default')
TRANSPORTS = ('raw', 'compressed')
# Stamps going back by more than this (without a clock jump) mean a new timeline: a bag looped
# on wall time or a restarted driver. Smaller steps back are reordering and are rejected.
STAMP_RESTART_NS = 1_000_000_000

# name -> (default, description); declared in the constructor so that YAML files and
# `ros2 param set` can provide them before configure, as nav2 nodes do.
PARAMETERS = {
    'map_path': ('', 'map file (.safetensors) loaded on configure and by ~/load_map'),
    'weights': ('', 'decoder weights a neural map was built with (empty: the decoder shipped '
                'for the keypoint kind of the map)'),
    'device': ('auto', 'auto, cpu or cuda'),
    'max_keypoints': (0, 'keypoints per image (0: as the map was built)'),
    'max_image_side': (-1, 'detect keypoints on images downscaled to this side in pixels '
                           '(0: full resolution, -1: as the map was built)'),
    'top_voxels': (24, 'neural maps: voxels decoded per image'),
    'voting_keypoints': (256, 'neural maps: strongest keypoints that vote for those voxels'),
    'min_inliers': (15, 'fewest PnP inliers of an accepted pose'),
    'min_inlier_ratio': (0.0, 'smallest inlier ratio of an accepted pose'),
    'max_position_std': (0.0, 'reject poses whose position std (m) exceeds this (0: off)'),
    'point_std': (-1.0, '3D error (m) of the map points in the pose covariance (-1: the '
                        'measured default of the map kind)'),
    'use_pose_prior': (True, 'search what the last pose could see (faster, fewer confusions)'),
    'prior_radius': (3.0, 'position error (m) assumed for a pose prior'),
    'prior_angle': (30.0, 'rotation error (deg) assumed for a pose prior'),
    'retry_without_prior': (True, 'when a prior leads to no pose, search globally at once'),
    'prior_timeout': (5.0, 'seconds after which the last pose is no longer used as a prior'),
    'relocalize_after_failures': (5, 'drop the prior after this many failures in a row'),
    'map_frame': ('map', 'frame of the map and of published poses'),
    'odom_frame': ('odom', 'odometry frame (tf_mode odom)'),
    'base_frame': ('base_link', 'robot base frame whose pose is published (empty: the camera '
                                'pose)'),
    'camera_frame': ('', 'camera optical frame (empty: the image header frame_id)'),
    'tf_broadcast': (True, 'publish the localization as a transform'),
    'tf_mode': ('odom', 'odom: map->odom (REP-105); base: map->base; camera: map->camera'),
    'transform_tolerance': (0.5, 'seconds map -> odom is future-dated by (tf_mode odom)'),
    'tf_republish_rate': (10.0, 'Hz at which the last map->odom is republished (0: off)'),
    'tf_lookup_timeout': (0.2, 'seconds to wait for TF at the image stamp'),
    'tf_cache_time': (10.0, 'seconds of TF history kept'),
    'image_transport': ('raw', 'raw (sensor_msgs/Image) or compressed (image/compressed)'),
    'image_qos': ('sensor_data', 'sensor_data (best effort, matches any camera), reliable, '
                                 'system_default'),
    'image_queue_depth': (1, 'subscription depth of image and camera_info'),
    'sync_tolerance': (0.0, 'largest image/camera_info stamp difference (s) that pairs'),
    'use_latest_camera_info': (False, 'pair images with the newest camera_info whatever its '
                                      'stamp (drivers with unrelated stamps)'),
    'rectified_input': (False, 'images are rectified: use P and no distortion'),
    'max_rate_hz': (0.0, 'localize at most this often (0: as fast as possible)'),
    'max_image_age': (0.0, 'skip frames older than this many seconds (0: off)'),
    'publish_debug_image': (False, 'publish ~/debug_image with the inliers drawn'),
    'publish_map_cloud': (True, 'publish the map points on ~/map_cloud (latched)'),
    # 20000 points = 240 KB, below Fast DDS's 512 KB shared-memory segment (see bag_player).
    'map_cloud_max_points': (20000, 'most points in ~/map_cloud'),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages'),
    'stats_window': (10.0, 'seconds of history behind rates and success rate'),
    'input_timeout': (5.0, 'WARN when no image arrived for this long (s)'),
    'min_success_rate': (0.3, 'WARN below this success rate'),
    'lost_after_failures': (10, 'ERROR after this many failed frames in a row'),
    'max_latency_ms': (0.0, 'WARN when the median latency exceeds this (0: off)'),
    'autostart': (False, 'configure and activate by itself (without a lifecycle manager)'),
}


class ConfigError(ValueError):
    """A parameter value the node cannot work with."""


@dataclass
class _Config:
    """Parameters as read on configure."""

    values: dict

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name)


NON_NEGATIVE = ('max_keypoints', 'max_rate_hz', 'max_image_age', 'sync_tolerance',
                'transform_tolerance', 'tf_republish_rate', 'tf_lookup_timeout',
                'max_position_std', 'min_inlier_ratio', 'max_latency_ms', 'input_timeout')
FRACTIONS = ('min_inlier_ratio', 'min_success_rate')

# Parameters that `ros2 param set` changes at once on a configured node (each frame reads
# them); map_path, weights, device and the keypoint settings take effect on ~/load_map. The
# rest shape subscriptions, publishers or buffers and are read on configure only.
LIVE_PARAMETERS = ('top_voxels', 'voting_keypoints', 'min_inliers', 'min_inlier_ratio',
                   'max_position_std', 'point_std', 'use_pose_prior', 'prior_radius',
                   'prior_angle', 'retry_without_prior', 'prior_timeout',
                   'relocalize_after_failures', 'transform_tolerance', 'tf_lookup_timeout',
                   'max_rate_hz', 'max_image_age', 'diagnostics_period', 'input_timeout',
                   'min_success_rate', 'lost_after_failures', 'max_latency_ms')
ON_LOAD_MAP_PARAMETERS = ('map_path', 'weights', 'device', 'max_keypoints', 'max_image_side')
POSITIVE = ('top_voxels', 'voting_keypoints', 'min_inliers', 'image_queue_depth',
            'prior_radius', 'tf_cache_time', 'diagnostics_period', 'stats_window',
            'map_cloud_max_points', 'lost_after_failures', 'relocalize_after_failures',
            'prior_timeout')


def value_problem(name: str, value) -> Optional[str]:
    """Say what is wrong with one parameter value on its own (None: nothing)."""
    choices = {'device': DEVICES, 'tf_mode': TF_MODES, 'image_qos': IMAGE_QOS,
               'image_transport': TRANSPORTS}
    if name in PARAMETERS:
        problem = type_problem(name, value, PARAMETERS[name][0])
        if problem is not None:
            return problem
    if name in choices and value not in choices[name]:
        return f'{name} must be one of {choices[name]}'
    if name in NON_NEGATIVE and value < 0:
        return f'{name} must be >= 0, got {value}'
    if name in POSITIVE and value <= 0:
        return f'{name} must be > 0, got {value}'
    if name == 'max_image_side' and value < -1:
        return 'max_image_side must be >= -1'
    if name == 'point_std' and value < 0 and value != -1:
        return f'point_std must be >= 0 (or -1: the default of the map kind), got {value}'
    if name in FRACTIONS and not 0 <= value <= 1:
        return f'{name} must be in [0, 1], got {value}'
    if name == 'prior_angle' and not 0 <= value <= 180:
        return 'prior_angle must be in [0, 180] degrees'
    return None


def _check_config(values: dict) -> None:
    def need(condition, message):
        if not condition:
            raise ConfigError(message)

    for name, value in values.items():
        problem = value_problem(name, value)
        need(problem is None, problem)
    need(values['map_path'], 'map_path is empty: set it to a map file (.safetensors)')
    need(values['map_frame'], 'map_frame is empty')
    need(values['tf_mode'] != 'odom' or values['odom_frame'],
         'tf_mode odom needs an odom_frame')
    need(values['tf_mode'] != 'base' or values['base_frame'], 'tf_mode base needs a base_frame')


def image_qos_profile(name: str, depth: int) -> QoSProfile:
    """Return the subscription QoS for camera topics; a shallow queue keeps frames fresh."""
    reliability = {'sensor_data': ReliabilityPolicy.BEST_EFFORT,
                   'reliable': ReliabilityPolicy.RELIABLE,
                   'system_default': ReliabilityPolicy.SYSTEM_DEFAULT}[name]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def point_cloud(points: np.ndarray, frame_id: str, stamp) -> PointCloud2:
    """Return an (N, 3) array as an unorganized PointCloud2 of float32 x, y, z."""
    points = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
    msg = PointCloud2()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    msg.height, msg.width = 1, len(points)
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate('xyz')]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = 12, 12 * len(points)
    msg.is_dense = True
    msg.data = points.tobytes()
    return msg


class LocalizerNode(LifecycleNode):
    """Lifecycle node that localizes camera frames against a NeuMap (or feature) map."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        """Declare parameters and the always-on diagnostics; nothing is loaded yet."""
        super().__init__(node_name, **kwargs)
        declare_parameters(self, PARAMETERS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._cond = threading.Condition()        # guards sync, stats, priors, pending state
        self._localizer_lock = threading.Lock()   # held while localizing or swapping maps
        self._released = 0   # maps released (cleanup, shutdown): a load begun before is void
        self._start_map_loader()
        self._config: Optional[_Config] = None
        self._localizer = None
        self._map_path = ''
        self._state = 'unconfigured'
        self._configure_error = ''
        self._map_error = None           # (monotonic time, message) of a failed load_map
        self._tf_problem = None          # (monotonic time, message) of a failed TF lookup
        self._worker: Optional[threading.Thread] = None
        self._stop = False
        self._entities = []              # subscriptions, services and timers of the active state
        self._lifecycle_pubs = []
        self._sync = None
        self._stats = None
        self._tf = None
        self._reported_drops = 0
        self._lost_in_transport = 0
        self._last_pose = None           # (stamp_ns, T_map_camera) of the last success
        self._initial_prior = None       # PosePrior from initialpose, until the next success
        self._ignore_prior = False
        self._prior_failures = 0
        self._last_map_odom = None       # T_map_odom to republish between fixes
        self._last_tf_stamp_ns = 0
        self._camera_frame_seen = ''     # frame of the last decoded image (for initialpose)
        self._initial_base_pose = None   # (T_map_base, radius) of an initialpose before images
        self._warned = {}
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        period = self.get_parameter('diagnostics_period').value
        if value_problem('diagnostics_period', period) is not None:
            period = 1.0   # configure reports the bad value; diagnostics must still flow
        self._diagnostics_timer = self._diagnostics_timer_every(float(period))
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(seconds=-1.0),
                          on_clock_change=False),
            post_callback=self._on_time_jump)

    # --- parameters -------------------------------------------------------------------------

    def _diagnostics_timer_every(self, period: float):
        # A steady clock: diagnostics must keep coming when /clock stops (a stalled bag).
        return self.create_timer(period, self._publish_diagnostics,
                                 clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        # Immediate feedback for `ros2 param set`. Unconfigured, every value waits for
        # configure, which checks how they combine. Configured, LIVE_PARAMETERS apply at once
        # (see _after_set_parameters), the map's on ~/load_map, and the rest are refused
        # rather than accepted and silently ignored.
        for parameter in parameters:
            problem = value_problem(parameter.name, parameter.value)
            if problem is not None:
                return SetParametersResult(successful=False, reason=problem)
        config = self._config
        if config is None:
            return SetParametersResult(successful=True)
        values = dict(config.values)
        for parameter in parameters:
            if parameter.name not in PARAMETERS:
                continue
            value = coerce(parameter.value, PARAMETERS[parameter.name][0])
            if parameter.name not in LIVE_PARAMETERS + ON_LOAD_MAP_PARAMETERS and \
                    value != values[parameter.name]:
                return SetParametersResult(successful=False, reason=(
                    f'{parameter.name} is read on configure: deactivate and clean up the '
                    f'node, set it, then configure again'))
            values[parameter.name] = value
        try:
            _check_config(values)
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _set_diagnostics_period(self, period: float) -> None:
        if self._diagnostics_timer.timer_period_ns != int(round(period * NS_PER_S)):
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self._diagnostics_timer_every(period)

    def _after_set_parameters(self, parameters) -> None:
        config = self._config
        if config is None:
            return
        changed = {p.name: coerce(p.value, PARAMETERS[p.name][0]) for p in parameters
                   if p.name in PARAMETERS}
        self._config = _Config(dict(config.values, **changed))
        live = sorted(set(changed) & set(LIVE_PARAMETERS))
        if not live:
            return
        with self._localizer_lock:
            if self._localizer is not None:
                self._localizer.options = self._localizer_options()
        c = self._config
        with self._cond:
            self._thresholds = HealthThresholds(c.input_timeout, c.min_success_rate, 3,
                                                c.lost_after_failures, c.max_latency_ms)
        self._set_diagnostics_period(c.diagnostics_period)
        self.get_logger().info(
            'applied ' + ', '.join(f'{name}={changed[name]}' for name in live))

    def _read_config(self) -> _Config:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        _check_config(values)  # types too (value_problem)
        values = {name: coerce(value, PARAMETERS[name][0]) for name, value in values.items()}
        return _Config(values)

    def _localizer_options(self):
        from neumap_ros.core.localizer import LocalizerOptions
        c = self._config
        return LocalizerOptions(max_keypoints=c.max_keypoints, max_image_side=c.max_image_side,
                                top_voxels=c.top_voxels,
                                voting_keypoints=c.voting_keypoints,
                                min_inliers=c.min_inliers, min_inlier_ratio=c.min_inlier_ratio,
                                max_position_std_m=c.max_position_std,
                                point_std_m=c.point_std,
                                prior_radius_m=c.prior_radius, prior_angle_deg=c.prior_angle,
                                retry_without_prior=c.retry_without_prior)

    def _load(self, path: str):
        from neumap_ros.core.localizer import load_localizer
        return load_localizer(path, self._config.device, self._localizer_options(),
                              self._config.weights or None)

    # --- lifecycle --------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters, load the map and create the publishers."""
        started = time.monotonic()
        try:
            self._config = self._read_config()
            self._map_path = self._config.map_path
            self._localizer = self._load(self._map_path)
        except Exception as error:  # a bad map must never take the node down
            self._configure_error = f'configure failed: {error}'
            self.get_logger().error(self._configure_error)
            self._config = self._localizer = None
            return TransitionCallbackReturn.FAILURE
        c = self._config
        self._configure_error = ''
        self._set_diagnostics_period(c.diagnostics_period)
        self._tf = TransformBuffer(c.tf_cache_time)
        self._sync = StampSynchronizer(int(round(c.sync_tolerance * NS_PER_S)),
                                       latest_info=c.use_latest_camera_info,
                                       restart_after=STAMP_RESTART_NS)
        self._stats = LocalizationStats(c.stats_window, now=time.monotonic())
        self._thresholds = HealthThresholds(c.input_timeout, c.min_success_rate, 3,
                                            c.lost_after_failures, c.max_latency_ms)
        self._pose_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, '~/pose', 10)
        self._tf_pub = self.create_lifecycle_publisher(TFMessage, '/tf', TF_QOS)
        self._lifecycle_pubs = [self._pose_pub, self._tf_pub]
        self._debug_pub = self._cloud_pub = None
        if c.publish_debug_image:
            self._debug_pub = self.create_lifecycle_publisher(Image, '~/debug_image', 2)
            self._lifecycle_pubs.append(self._debug_pub)
        if c.publish_map_cloud:
            self._cloud_pub = self.create_lifecycle_publisher(PointCloud2, '~/map_cloud',
                                                              LATCHED_QOS)
            self._lifecycle_pubs.append(self._cloud_pub)
        self._state = 'inactive'
        self.get_logger().info(
            f'loaded {self._localizer.method} map {self._map_path} in '
            f'{time.monotonic() - started:.1f} s: {self._localizer.describe()}')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe, offer the services and start the worker thread."""
        c = self._config
        result = super().on_activate(state)  # activates the lifecycle publishers
        qos = image_qos_profile(c.image_qos, c.image_queue_depth)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos,
                                            message_lost=self._on_message_lost)
        if c.image_transport == 'compressed':
            # As image_transport does: remap the base topic, then append the transport.
            topic = self.resolve_topic_name('image') + '/compressed'
            image_sub = self.create_subscription(CompressedImage, topic, self._on_image, qos,
                                                 event_callbacks=events)
        else:
            image_sub = self.create_subscription(Image, 'image', self._on_image, qos,
                                                 event_callbacks=events)
        # camera_info keeps a few messages: they are small and may arrive before the image.
        info_qos = image_qos_profile(c.image_qos, max(c.image_queue_depth, 5))
        self._entities = [
            image_sub,
            self.create_subscription(
                CameraInfo, 'camera_info', self._on_camera_info, info_qos,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=self._on_incompatible_qos)),
            self.create_subscription(TFMessage, '/tf', self._on_tf, TF_QOS),
            self.create_subscription(TFMessage, '/tf_static', self._on_tf_static,
                                     TF_STATIC_QOS),
            self.create_subscription(PoseWithCovarianceStamped, 'initialpose',
                                     self._on_initial_pose, 10),
            self.create_service(Trigger, '~/relocalize', self._on_relocalize),
        ]
        self._load_service = self._loader_node.create_service(
            Trigger, f'{self.get_fully_qualified_name()}/load_map', self._on_load_map)
        if c.tf_broadcast and c.tf_mode == 'odom' and c.tf_republish_rate > 0:
            self._entities.append(self.create_timer(1.0 / c.tf_republish_rate,
                                                    self._republish_tf))
        with self._cond:
            self._sync.reset()
            self._stats.reset(time.monotonic())
            self._reported_drops = self._sync.counters.dropped
            self._stop = False
        self._worker = threading.Thread(target=self._work, name='localizer_worker', daemon=True)
        self._worker.start()
        self._state = 'active'
        self._publish_map_cloud()
        self.get_logger().info(f'active: localizing images from {image_sub.topic_name}')
        return result

    def _stop_worker(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()
        self._worker = None

    def _destroy_entities(self) -> None:
        for entity in self._entities:
            if hasattr(entity, 'cancel'):
                self.destroy_timer(entity)
            elif hasattr(entity, 'srv_type'):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._entities = []
        if self._load_service is not None:
            self._loader_node.destroy_service(self._load_service)
            self._load_service = None

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker and drop subscriptions and services; keep the map."""
        self._stop_worker()
        self._destroy_entities()
        self._last_map_odom = None
        self._state = 'inactive'
        self.get_logger().info('inactive')
        return super().on_deactivate(state)

    def _release(self) -> None:
        with self._localizer_lock:
            if self._localizer is not None:
                self._localizer.release()
            self._localizer = None
            self._released += 1
        for publisher in self._lifecycle_pubs:
            self.destroy_lifecycle_publisher(publisher)
        self._lifecycle_pubs = []

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the map and the publishers."""
        self._release()
        self._config = None
        self._last_pose = self._initial_prior = self._initial_base_pose = None
        self._state = 'unconfigured'
        self.get_logger().info('cleaned up')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything."""
        self._stop_worker()
        self._destroy_entities()
        self._release()
        self._state = 'finalized'
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Recover from a failed transition into unconfigured."""
        self.get_logger().error(f'error in state {state.label}; cleaning up')
        self._stop_worker()
        self._destroy_entities()
        self._release()
        self._config = None
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def _start_map_loader(self) -> None:
        # ~/load_map is served by a node of its own, spun by its own thread: reading a large
        # map takes seconds, during which this node's images, TF republishing and
        # diagnostics go on. (A multi-threaded executor for this node would do the same, but
        # it made every frame over twice as slow on 2 cores: see the README.)
        self._load_service = None
        self._loader_node = rclpy.create_node(
            f'{self.get_name()}_map_loader', namespace=self.get_namespace(),
            context=self.context, use_global_arguments=False, start_parameter_services=False)
        self._loader_executor = SingleThreadedExecutor(context=self.context)
        self._loader_executor.add_node(self._loader_node)

        def spin():
            try:
                self._loader_executor.spin()
            except ExternalShutdownException:
                pass
        threading.Thread(target=spin, name='map_loader', daemon=True).start()

    def destroy_node(self):
        """Stop the worker and the map loader before the node goes away."""
        if hasattr(self, '_cond'):   # not when the constructor itself failed
            self._stop_worker()
        if hasattr(self, '_loader_executor'):
            self._loader_executor.shutdown()
            self._loader_node.destroy_node()
        super().destroy_node()

    # --- inputs -----------------------------------------------------------------------------

    def _note_drops(self, now: float) -> None:
        dropped = self._sync.counters.dropped - self._reported_drops
        if dropped:
            self._stats.record_dropped(now, dropped)
            self._reported_drops = self._sync.counters.dropped

    def _on_image(self, msg) -> None:
        now = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        with self._cond:
            if self._sync is None:
                return
            self._stats.record_input(now)
            restarts = self._sync.counters.restarts
            if stamp == 0:
                # Pairing and TF need real stamps; name the cause instead of "out of order".
                self._stats.record_rejection(
                    now, 'stamp', 'image header.stamp is 0: the camera driver does not stamp '
                                  'its images')
            elif not self._sync.add_image(stamp, msg):
                self._stats.record_rejection(
                    now, 'stamp', f'image stamp {stamp} ns is not newer than the previous image '
                                  f'(out of order or duplicate)')
            self._after_input(now, restarts)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        now = time.monotonic()
        with self._cond:
            if self._sync is None:
                return
            restarts = self._sync.counters.restarts
            if not self._sync.add_info(stamp_to_ns(msg.header.stamp), msg):
                self._stats.record_rejection(now, 'stamp', 'camera_info stamp went backwards')
            self._after_input(now, restarts)

    def _after_input(self, now: float, restarts: int) -> None:
        # Called with the lock held, after the synchronizer took a message.
        if self._sync.counters.restarts != restarts:
            # Stamps went back by seconds without a clock jump (a bag looped on wall time,
            # a driver restarted): what was known about the old timeline no longer applies.
            self._forget_timeline()
            self._warn_throttled('stamp_restart', 'camera stamps went back by more than '
                                 f'{STAMP_RESTART_NS / NS_PER_S:.0f} s; cleared TF buffer, '
                                 'pending frames and pose prior')
        self._note_drops(now)
        self._cond.notify_all()

    def _on_incompatible_qos(self, info) -> None:
        # The classic silent failure: a reliable subscription never hears a best-effort
        # camera. Say so instead of only reporting "no image received".
        policy = getattr(info.last_policy_kind, 'name', str(info.last_policy_kind))
        message = (f'a publisher offers QoS incompatible with image_qos '
                   f'"{self._config.image_qos}" (policy {policy}); try image_qos sensor_data')
        with self._cond:
            self._stats.record_rejection(time.monotonic(), 'qos', message)
        self._warn_throttled('qos', message)

    def _on_message_lost(self, info) -> None:
        with self._cond:
            self._lost_in_transport = int(info.total_count)

    def _add_transforms(self, msg: TFMessage, static: bool) -> None:
        map_frame = self._config.map_frame if self._config is not None else None
        for transform in msg.transforms:
            if not static and transform.header.frame_id.lstrip('/') == map_frame:
                # What this node (or another localizer) publishes: never needed for the
                # lookups here, and taking our own map -> camera back in would replace the
                # camera's mount in this buffer.
                continue
            try:
                self._tf.set_matrix(transform.header.frame_id, transform.child_frame_id,
                                    stamp_to_ns(transform.header.stamp) / NS_PER_S,
                                    transform_to_matrix(transform.transform), static)
            except ValueError as error:
                self._warn_once('bad_tf', f'ignoring transform: {error}')

    def _on_tf(self, msg: TFMessage) -> None:
        if self._tf is not None:
            self._add_transforms(msg, False)

    def _on_tf_static(self, msg: TFMessage) -> None:
        if self._tf is not None:
            self._add_transforms(msg, True)

    def _on_time_jump(self, jump) -> None:
        # A bag restarted or simulation reset: old stamps and transforms no longer apply.
        with self._cond:
            self._forget_timeline()
        self.get_logger().warning(
            f'time jumped back by {-jump.delta.nanoseconds / 1e9:.2f} s; cleared TF buffer, '
            f'pending frames and pose prior')

    def _forget_timeline(self) -> None:
        # With the lock held. Static transforms stay (TransformBuffer.clear keeps them).
        if self._tf is not None:
            self._tf.clear()
        if self._sync is not None:
            self._sync.reset()
        self._last_pose = None
        self._last_map_odom = None
        self._last_tf_stamp_ns = 0

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        from neumap_ros.core.localizer import PosePrior
        c = self._config
        try:
            T = pose_to_matrix(msg.pose.pose)
            covariance = covariance_from_msg(msg.pose.covariance)
            frame = msg.header.frame_id.lstrip('/') or c.map_frame
            if frame != c.map_frame:
                raise ValueError(f'initialpose must be in {c.map_frame}, got frame "{frame}"')
        except ValueError as error:
            self.get_logger().warning(f'ignoring initialpose: {error}')
            return
        spread = float(np.sqrt(max(np.max(np.diag(covariance)[:3]), 0.0)))
        radius = max(3.0 * spread, 0.5) if spread > 0 else c.prior_radius
        camera_frame = c.camera_frame or self._camera_frame_seen
        with self._cond:
            self._ignore_prior = False
            if c.base_frame and not camera_frame:
                # No image yet, so no camera frame to reach through TF: the first frame
                # turns this base pose into a camera prior (see _prior).
                self._initial_prior, self._initial_base_pose = None, (T, radius)
            else:
                self._initial_prior = PosePrior(self._camera_pose_of_base(T, camera_frame),
                                                radius)
                self._initial_base_pose = None
        self.get_logger().info(f'initial pose received: searching within {radius:.1f} m of '
                               f'{np.round(T[:3, 3], 2).tolist()}')
        if c.tf_broadcast and c.tf_mode == 'odom' and c.base_frame:
            self._map_odom_from_initial_pose(T, stamp_to_ns(msg.header.stamp))

    def _map_odom_from_initial_pose(self, T_map_base: np.ndarray, stamp_ns: int) -> None:
        # As amcl does: the robot is where the user put it, through odometry, until the
        # first fix. Before, nav2 would wait for map -> odom while the camera sees nothing
        # it knows.
        c = self._config
        try:
            try:
                T_odom_base = self._tf.lookup(c.odom_frame, c.base_frame,
                                              stamp_ns / NS_PER_S if stamp_ns else None)
            except TransformError:
                T_odom_base = self._tf.lookup(c.odom_frame, c.base_frame)
        except TransformError as error:
            self._warn_throttled('initialpose_tf', f'initialpose: no {c.odom_frame} -> '
                                 f'{c.base_frame} yet, so {c.map_frame} -> {c.odom_frame} '
                                 f'waits for the first fix: {error}')
            return
        with self._cond:
            self._last_map_odom = T_map_base @ invert_transform(T_odom_base)
        self._republish_tf()

    def _camera_pose_of_base(self, T_map_base: np.ndarray, camera_frame: str) -> np.ndarray:
        # RViz's "2D Pose Estimate" gives the base pose; the localizer wants the camera's.
        c = self._config
        if not c.base_frame or camera_frame == c.base_frame:
            return T_map_base
        try:
            return T_map_base @ self._tf.lookup(c.base_frame, camera_frame)
        except TransformError:
            # Without the mount, a camera looking along the base's x axis (REP-103 optical
            # axes): the base's own axes would point the prior's view cone sideways.
            self._warn_throttled('initialpose', f'initialpose: no {c.base_frame} -> '
                                 f'{camera_frame} transform; assuming the camera looks '
                                 f'along {c.base_frame} x')
            return T_map_base @ BASE_TO_OPTICAL

    # --- services ---------------------------------------------------------------------------

    def _on_relocalize(self, request, response):
        with self._cond:
            self._ignore_prior = True
            self._initial_prior = self._initial_base_pose = None
            self._last_pose = None
        response.success = True
        response.message = 'the next frame is localized globally, without a pose prior'
        self.get_logger().info(response.message)
        return response

    def _on_load_map(self, request, response):
        # Runs in the map loader's thread, beside this node's callbacks: the old map localizes
        # until the new one is ready, then they are swapped under the localizer lock.
        path = self.get_parameter('map_path').value
        started = time.monotonic()
        released = self._released
        try:
            if not path:
                raise ConfigError('map_path is empty')
            localizer = self._load(path)
        except Exception as error:  # the old map stays in use
            message = f'load_map failed, keeping {self._map_path}: {error}'
            self._map_error = (time.monotonic(), message)
            self.get_logger().error(message)
            response.success, response.message = False, message
            return response
        with self._localizer_lock:
            # Deactivated, cleaned up or shut down while it loaded: the map is not wanted.
            stale = self._state != 'active' or self._released != released
            if not stale:
                old, self._localizer = self._localizer, localizer
                self._map_path = path
        if stale:
            localizer.release()
            response.success = False
            response.message = f'the node left the active state while {path} loaded; not used'
            self.get_logger().warning(response.message)
            return response
        if old is not None:
            old.release()
        with self._cond:
            self._last_pose = self._initial_prior = self._initial_base_pose = None
            self._last_map_odom = None
        self._map_error = None
        self._publish_map_cloud()
        response.success = True
        response.message = (f'loaded {localizer.method} map {path} in '
                            f'{time.monotonic() - started:.1f} s: {localizer.describe()}')
        self.get_logger().info(response.message)
        return response

    # --- processing -------------------------------------------------------------------------

    def _work(self) -> None:
        next_allowed = 0.0
        while True:
            with self._cond:
                while not self._stop and not self._sync.has_pair:
                    self._cond.wait(0.5)
                if self._stop:
                    return
                wait = next_allowed - time.monotonic()
                if wait > 0:
                    # Throttled: newer frames may replace the pending one while we wait.
                    self._cond.wait(wait)
                    continue
                pair = self._sync.take()
            started = time.monotonic()
            try:
                self._process(pair)
            except Exception:  # keep the worker alive whatever happens
                message = traceback.format_exc()
                now = time.monotonic()
                # A fault that repeats on every frame would flood the log: the traceback at
                # most every 5 s, each occurrence counted in the diagnostics.
                if now - self._warned.get('internal', -math.inf) >= 5.0:
                    self._warned['internal'] = now
                    self.get_logger().error(f'unexpected error while localizing:\n{message}')
                with self._cond:
                    self._stats.record_rejection(time.monotonic(), 'internal',
                                                 message.strip().splitlines()[-1])
            if self._config.max_rate_hz > 0:
                next_allowed = started + 1.0 / self._config.max_rate_hz

    def _reject(self, category: str, message: str) -> None:
        with self._cond:
            self._stats.record_rejection(time.monotonic(), category, message)
        self._warn_throttled(category, f'rejected input ({category}): {message}')

    def _decode(self, pair):
        c = self._config
        msg = pair.image
        if isinstance(msg, CompressedImage):
            pixels = compressed_to_numpy(msg)
        else:
            pixels = image_to_numpy(msg)
        camera = camera_info_to_camera(pair.info, c.rectified_input)
        check_size(pixels, camera)
        frame = (c.camera_frame or msg.header.frame_id or pair.info.header.frame_id).lstrip('/')
        if not frame:
            raise ValueError('the image has no header.frame_id and camera_frame is not set')
        image_frame = msg.header.frame_id.lstrip('/')
        info_frame = pair.info.header.frame_id.lstrip('/')
        if not c.camera_frame and image_frame and info_frame and image_frame != info_frame:
            # Usually a remapping that pairs one camera's images with another's calibration.
            self._warn_once('frame_mismatch', f'the images are in frame {image_frame!r} but '
                            f'their camera_info in {info_frame!r}: using {image_frame!r}; '
                            f'check the camera topics (or set camera_frame)')
        return pixels, camera, frame

    def _prior(self, stamp_ns: int, camera_frame: str):
        from neumap_ros.core.localizer import PosePrior
        c = self._config
        with self._cond:
            pending, self._initial_base_pose = self._initial_base_pose, None
        if pending is not None:   # an initialpose that came before any image
            prior = PosePrior(self._camera_pose_of_base(pending[0], camera_frame), pending[1])
            with self._cond:
                self._initial_prior = prior
        with self._cond:
            if self._ignore_prior:
                self._ignore_prior = False
                return None
            if self._initial_prior is not None:
                return self._initial_prior
            if c.use_pose_prior and self._last_pose is not None:
                last_stamp, T = self._last_pose
                if 0 <= stamp_ns - last_stamp <= c.prior_timeout * NS_PER_S:
                    return PosePrior(T, c.prior_radius)
        return None

    def _process(self, pair) -> None:
        c = self._config
        stamp_ns = pair.stamp
        if c.max_image_age > 0:
            age = (self.get_clock().now().nanoseconds - stamp_ns) / NS_PER_S
            if age > c.max_image_age:
                with self._cond:
                    self._stats.record_dropped(time.monotonic())
                self._warn_throttled('stale', f'skipping a frame {age:.2f} s old '
                                              f'(max_image_age {c.max_image_age} s)')
                return
        try:
            pixels, camera, camera_frame = self._decode(pair)
        except (ImageError, CameraError) as error:
            self._reject('image' if isinstance(error, ImageError) else 'camera_info', str(error))
            return
        except ValueError as error:
            self._reject('frame', str(error))
            return
        self._camera_frame_seen = camera_frame
        prior = self._prior(stamp_ns, camera_frame)
        try:
            with self._localizer_lock:
                if self._localizer is None:
                    return
                result = self._localizer.localize(pixels, camera, prior)
        except (ImageError, CameraError) as error:
            self._reject('image', str(error))
            return
        with self._cond:
            self._stats.record_result(time.monotonic(), result.success, result.status,
                                      result.timings_ms, result.message, result.prior_ignored,
                                      result.num_inliers, result.inlier_ratio,
                                      result.reprojection_error_px)
        if not result.success:
            self._after_failure(prior, result)
            return
        with self._cond:
            self._last_pose = (stamp_ns, result.T_world_camera)
            self._initial_prior = None
            self._prior_failures = 0
        self._publish_result(pair, result, camera_frame, pixels)

    def _after_failure(self, prior, result) -> None:
        self.get_logger().debug(f'localization failed: {result.status}: {result.message}')
        if prior is None:
            return
        with self._cond:
            self._prior_failures += 1
            if self._prior_failures >= self._config.relocalize_after_failures:
                # The prior may be what is wrong (kidnapped robot): search everywhere again.
                self._last_pose = self._initial_prior = None
                self._prior_failures = 0
                self.get_logger().warning(
                    'several failures near the pose prior; relocalizing globally')

    def _lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        # TF for the image stamp may still be on its way: wait a little, as tf2's
        # MessageFilter would, but never block on it for long.
        deadline = time.monotonic() + self._config.tf_lookup_timeout
        while True:
            try:
                return self._tf.lookup(target, source, stamp_ns / NS_PER_S)
            except TransformError:
                if time.monotonic() >= deadline or self._stop:
                    raise
            time.sleep(0.01)

    def _publish_result(self, pair, result, camera_frame: str, pixels) -> None:
        c = self._config
        stamp_ns = pair.stamp
        T_map_camera, covariance = result.T_world_camera, result.covariance
        pose, pose_cov = T_map_camera, covariance
        T_map_base = T_map_camera if c.base_frame == camera_frame else None
        if c.base_frame and c.base_frame != camera_frame:
            try:
                T_base_camera = self._lookup(c.base_frame, camera_frame, stamp_ns)
                T_camera_base = invert_transform(T_base_camera)
                T_map_base = T_map_camera @ T_camera_base
                pose_cov = pose_covariance_with_lever_arm(T_map_camera, covariance,
                                                          T_camera_base)
                pose = T_map_base
            except TransformError as error:
                # Never the camera pose in its place: ~/pose says nothing about which body it
                # describes, and a filter fusing base poses would take it for one.
                pose = None
                self._tf_warning(f'no {c.base_frame} -> {camera_frame} transform, so no pose '
                                 f'is published (base_frame:="" publishes camera poses): '
                                 f'{error}')
        if pose is not None:
            self._pose_pub.publish(make_pose_with_covariance(pose, pose_cov, c.map_frame,
                                                             stamp_ns))
        tf_ok = True
        if c.tf_broadcast:
            tf_ok = self._broadcast(T_map_camera, T_map_base, camera_frame, stamp_ns)
        if tf_ok and (T_map_base is not None or not c.base_frame):
            self._tf_problem = None
        if self._debug_pub is not None and self._debug_pub.get_subscription_count():
            self._publish_debug(pair.image.header, pixels, result)

    def _broadcast(self, T_map_camera, T_map_base, camera_frame: str, stamp_ns: int) -> bool:
        c = self._config
        # Only map -> odom is future-dated (as amcl does): odometry carries the motion until
        # the next fix. map -> base_link / camera is a measurement of the image's instant.
        stamp = stamp_ns
        if c.tf_mode == 'odom':
            stamp = stamp_ns + int(c.transform_tolerance * NS_PER_S)
            try:
                T_odom_camera = self._lookup(c.odom_frame, camera_frame, stamp_ns)
            except TransformError as error:
                self._tf_warning(f'cannot publish {c.map_frame} -> {c.odom_frame}: {error}')
                return False
            T_map_odom = T_map_camera @ invert_transform(T_odom_camera)
            with self._cond:
                self._last_map_odom = T_map_odom
                self._last_tf_stamp_ns = stamp
            transform = make_transform_stamped(T_map_odom, c.map_frame, c.odom_frame, stamp)
        elif c.tf_mode == 'base':
            if T_map_base is None:
                return False   # the missing base -> camera transform is reported already
            if self._has_other_parent(c.base_frame, 'odom'):
                return False
            transform = make_transform_stamped(T_map_base, c.map_frame, c.base_frame, stamp)
        else:
            if self._has_other_parent(camera_frame, 'base'):
                return False
            transform = make_transform_stamped(T_map_camera, c.map_frame, camera_frame, stamp)
        self._tf_pub.publish(TFMessage(transforms=[transform]))
        return True

    def _has_other_parent(self, child: str, better_mode: str) -> bool:
        # A TF frame has one parent: map -> child next to, say, the URDF's base_link -> camera
        # would make the tree flip between two parents for every listener.
        parent = self._tf.parent_of(child)
        if parent is None:
            return False
        self._tf_warning(f'not publishing {self._config.map_frame} -> {child}: {child} already '
                         f'has the parent {parent} in TF, and a frame has only one; use '
                         f'tf_mode {better_mode}')
        return True

    def _republish_tf(self) -> None:
        # Keep map -> odom alive between fixes, as amcl does, never moving its stamp backwards.
        c = self._config
        with self._cond:
            T_map_odom, last = self._last_map_odom, self._last_tf_stamp_ns
            if T_map_odom is None:
                return
            stamp = self.get_clock().now().nanoseconds + int(c.transform_tolerance * NS_PER_S)
            if stamp <= last:
                return
            self._last_tf_stamp_ns = stamp
        self._tf_pub.publish(TFMessage(transforms=[
            make_transform_stamped(T_map_odom, c.map_frame, c.odom_frame, stamp)]))

    def _publish_debug(self, header, pixels, result) -> None:
        import cv2
        canvas = pixels
        if canvas.dtype != np.uint8:
            canvas = (canvas.astype(np.float32) * (255.0 / max(float(canvas.max()), 1.0)))
            canvas = canvas.astype(np.uint8)
        if canvas.ndim == 2:
            canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
        else:
            canvas = canvas.copy()
        for u, v in result.inlier_pixels:
            cv2.circle(canvas, (int(round(u)), int(round(v))), 3, (0, 255, 0), 1)
        cv2.putText(canvas, f'{result.num_inliers} inliers', (10, 25), cv2.FONT_HERSHEY_SIMPLEX,
                    0.7, (0, 255, 0), 2)
        self._debug_pub.publish(numpy_to_image(canvas, 'bgr8', header))

    def _publish_map_cloud(self) -> None:
        if self._cloud_pub is None or self._localizer is None:
            return
        points = np.asarray(self._localizer.map_points(), dtype=np.float32)
        limit = self._config.map_cloud_max_points
        if len(points) > limit:
            points = points[np.random.default_rng(0).choice(len(points), limit, replace=False)]
        self._cloud_pub.publish(point_cloud(points, self._config.map_frame,
                                            self.get_clock().now().to_msg()))

    # --- diagnostics and logging ------------------------------------------------------------

    def _tf_warning(self, message: str) -> None:
        self._tf_problem = (time.monotonic(), message)
        self._warn_throttled('tf', message)

    def _warn_throttled(self, key: str, message: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -math.inf) >= period:
            self._warned[key] = now
            self.get_logger().warning(message)

    def _warn_once(self, key: str, message: str) -> None:
        self._warn_throttled(key, message, math.inf)

    def _status(self):
        now = time.monotonic()
        values = {'state': self._state, 'map_path': self._map_path}
        if self._state == 'unconfigured':
            if self._configure_error:
                return Level.ERROR, self._configure_error, values
            return Level.WARN, 'unconfigured: waiting for the configure transition', values
        if self._state == 'finalized':
            return Level.WARN, 'finalized: shut down, map released, nothing is localized', values
        localizer = self._localizer
        if localizer is not None:
            values.update({k if k.startswith('map') else f'map_{k}': str(v)
                           for k, v in localizer.describe().items()})
        if self._state != 'active':
            return Level.OK, f'{self._state}: map loaded, not processing images', values
        with self._cond:
            level, message = self._stats.assess(now, self._thresholds)
            values.update(self._stats.snapshot(now))
            counters = self._sync.counters
            values.update({'frames_lost_in_transport': str(self._lost_in_transport),
                           'sync_pairs': str(counters.pairs),
                           'sync_out_of_order': str(counters.out_of_order),
                           'sync_restarts': str(counters.restarts),
                           'sync_pending_images': str(self._sync.pending_images)})
        values['camera_frame'] = self._config.camera_frame or self._camera_frame_seen
        reasons = [message] if level != Level.OK else []
        for problem in (self._tf_problem, self._map_error):
            if problem is not None and now - problem[0] < self._config.stats_window:
                level = max(level, Level.WARN)
                reasons.append(problem[1])
        if self._tf_problem is not None:
            values['last_tf_problem'] = self._tf_problem[1]
        if self._map_error is not None:
            values['last_map_error'] = self._map_error[1]
        return level, '; '.join(reasons) if reasons else message, values

    def _publish_diagnostics(self) -> None:
        try:
            level, message, values = self._status()
        except Exception as error:  # diagnostics must never stop the node
            level, message, values = Level.ERROR, f'diagnostics failed: {error}', {}
        status = DiagnosticStatus()
        status.level = bytes([int(level)])
        status.name = f'{self.get_fully_qualified_name()}: localization'
        status.message = message
        status.hardware_id = 'neumap_ros'
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        array_msg.status = [status]
        self._diagnostics.publish(array_msg)


def main(args=None) -> None:
    """Run the localizer node (``ros2 run neumap_ros localizer_node``)."""
    try:
        with rclpy.init(args=args):
            node = LocalizerNode()
            if node.get_parameter('autostart').value:
                node.trigger_configure()
                if node._state == 'inactive':
                    node.trigger_activate()
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == '__main__':
    main()
