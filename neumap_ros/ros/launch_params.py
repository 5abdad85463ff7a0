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
One source for the launch files' arguments and what they turn into (rclpy and launch free).

The launch files in ``launch/`` declare the arguments listed here and build their node
parameters and remappings with these functions; the tests, which run without the launch
package, start the same executables with :func:`ros_arguments` from the same functions, so a
default changed here changes both.
"""

import os
from pathlib import Path
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

PACKAGE = 'neumap_ros'
LOCALIZER_NODE = 'localizer_node'
MAP_BUILDER_NODE = 'map_builder_node'
BAG_PLAYER_NODE = 'bag_player'
REPLAY_EVALUATOR_NODE = 'replay_evaluator'

DEFAULT_IMAGE_TOPIC = '/camera/color/image_raw'
DEFAULT_CAMERA_INFO_TOPIC = '/camera/color/camera_info'
DEFAULT_GT_TOPIC = '/ground_truth/camera_pose'
DEFAULT_GT_FRAME = 'camera_color_optical_frame'

# (name, default, description) of localize.launch.py's arguments.
LOCALIZE_ARGUMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('map', '', 'map file (.safetensors) to localize against; overrides map_path of the '
                'parameter file when set'),
    ('params_file', '', 'parameter YAML (default: config/localizer.yaml of this package)'),
    ('use_sim_time', 'false', 'use /clock (true when replaying a bag)'),
    ('namespace', '', 'namespace of the localizer node'),
    # Relative, so a namespaced robot's camera (/robot1/camera/...) is found; without a
    # namespace they are DEFAULT_IMAGE_TOPIC and DEFAULT_CAMERA_INFO_TOPIC.
    ('image_topic', DEFAULT_IMAGE_TOPIC.lstrip('/'),
     'camera image topic (remaps "image"; relative names resolve in the namespace)'),
    ('camera_info_topic', DEFAULT_CAMERA_INFO_TOPIC.lstrip('/'),
     'camera calibration topic (remaps "camera_info")'),
    ('log_level', 'info', 'logging level: debug, info, warn, error'),
    ('autostart', 'true', 'configure and activate the lifecycle node after start'),
    ('image_qos', '', 'sensor_data, reliable or system_default (empty: from the parameter '
                      'file)'),
)

# build_map.launch.py's arguments.
BUILD_MAP_ARGUMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('output', '', 'map file to write (.safetensors); required'),
    ('bag', '', 'build from this rosbag2 instead of live topics'),
    ('params_file', '', 'parameter YAML (default: config/map_builder.yaml of this package)'),
    ('method', '', 'neural or features (empty: as the parameter file says; neural in the '
                   'shipped one)'),
    ('use_sim_time', 'false', 'use /clock'),
    ('namespace', '', 'namespace of the map builder node'),
    ('image_topic', '', f'camera image topic (live: remaps "image", empty: '
                        f'{DEFAULT_IMAGE_TOPIC.lstrip("/")} in the namespace; bag: the topic '
                        f'to read, empty: the only one)'),
    ('camera_info_topic', '', f'camera calibration topic (live: remaps "camera_info", empty: '
                              f'{DEFAULT_CAMERA_INFO_TOPIC.lstrip("/")} in the namespace; bag: '
                              f'empty = the only one)'),
    ('depth_topic', '', 'registered depth images (16UC1 mm or 32FC1 m); empty: triangulate'),
    ('log_level', 'info', 'logging level'),
)

# replay_eval.launch.py's arguments.
REPLAY_EVAL_ARGUMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('map', '', 'map file to localize against; required'),
    ('bag', '', 'rosbag2 folder to replay; required'),
    ('output_dir', 'replay_eval', 'where the report, TUM trajectories and plot go'),
    ('rate', '1.0', 'playback rate'),
    ('params_file', '', 'localizer parameter YAML (default: config/localizer.yaml)'),
    ('image_topic', DEFAULT_IMAGE_TOPIC, 'image topic in the bag'),
    ('camera_info_topic', DEFAULT_CAMERA_INFO_TOPIC, 'camera_info topic in the bag'),
    ('gt_topic', DEFAULT_GT_TOPIC, 'ground-truth PoseStamped topic in the bag'),
    ('gt_frame', DEFAULT_GT_FRAME, 'frame whose pose the ground truth gives (the '
                                   "localizer's base_frame, from params_file, is converted "
                                   'to it through TF)'),
    ('player', 'neumap', "neumap (this package's bag_player) or ros2bag (ros2 bag play)"),
    ('drain', '10.0', 'seconds without a frame, pose or ground truth after which the '
                      'evaluator writes its report and the replay ends'),
    ('log_level', 'info', 'logging level'),
)


def defaults(arguments: Iterable[Tuple[str, str, str]]) -> Dict[str, str]:
    """Return {argument: default} of an argument table."""
    return {name: default for name, default, _ in arguments}


def config_path(name: str) -> str:
    """
    Return the path of a file in the package's config folder.

    The installed share folder when the package is registered in the ament index, else the
    source tree (a checkout used without colcon, as in the tests).
    """
    try:
        from ament_index_python.packages import get_package_share_directory, \
            PackageNotFoundError
        try:
            installed = Path(get_package_share_directory(PACKAGE)) / 'config' / name
            if installed.is_file():
                return str(installed)
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return str(Path(__file__).resolve().parents[2] / 'config' / name)


def as_bool(value) -> bool:
    """Interpret a launch argument string ('true', 'False', '1'...) as a boolean."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes', 'on'):
        return True
    if text in ('false', '0', 'no', 'off', ''):
        return False
    raise ValueError(f'not a boolean: {value!r}')


# TF follows the node's namespace, as nav2's bringup remaps it: a robot in /robot1 has its
# tree on /robot1/tf. Without a namespace "tf" is /tf again.
TF_REMAPPINGS = [('/tf', 'tf'), ('/tf_static', 'tf_static')]


def localizer_remappings(image_topic: str, camera_info_topic: str) -> List[Tuple[str, str]]:
    """Return the localizer's remappings: the camera topics, and TF into the namespace."""
    return [('image', image_topic), ('camera_info', camera_info_topic)] + TF_REMAPPINGS


def localizer_overrides(map_path: str = '', use_sim_time=False,
                        image_qos: str = '') -> Dict[str, object]:
    """Return parameters that launch arguments override on top of the parameter file."""
    overrides: Dict[str, object] = {'use_sim_time': as_bool(use_sim_time)}
    if map_path:
        overrides['map_path'] = os.path.abspath(os.path.expanduser(map_path))
    if image_qos:
        overrides['image_qos'] = image_qos
    return overrides


# Replays use reliable image delivery end to end: a bag holds every frame, and best-effort
# samples of about 1 MB are easily lost between processes (Fast DDS shared memory under CPU
# load), which would make the score depend on the machine rather than on the localizer.
REPLAY_IMAGE_QOS = 'reliable'


def bag_player_parameters(bag: str, rate='1.0', image_topic: str = DEFAULT_IMAGE_TOPIC,
                          gt_topic: str = DEFAULT_GT_TOPIC,
                          camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC
                          ) -> Dict[str, object]:
    """Return the bag_player parameters of a replay evaluation."""
    return {'bag_path': os.path.abspath(os.path.expanduser(bag)), 'rate': float(rate),
            'clock': True, 'qos_reliability': REPLAY_IMAGE_QOS,
            # The localizer subscribes on activation, the evaluator at start: samples sent
            # before a subscriber is matched never reach it, so wait for both. camera_info
            # has two subscribers (localizer and evaluator): one is not enough.
            'wait_for_subscribers': [image_topic, gt_topic, f'{camera_info_topic}:2'],
            # The evaluator subscribes only once it sees the player (to take its QoS), so
            # both discover each other at once: on a busy machine the subscriber's side of
            # that takes more than the default half second, and a first sample sent before
            # it is lost.
            'settle_time': 2.0}


def map_builder_overrides(output: str = '', bag: str = '', method: str = '',
                          use_sim_time=False, depth_topic: str = '', image_topic: str = '',
                          camera_info_topic: str = '') -> Dict[str, object]:
    """
    Return the map builder parameters that launch arguments set.

    Empty arguments leave the parameter file's values alone. With a bag, the topics name what
    to read from it; live, they are remappings (:func:`map_builder_remappings`).
    """
    overrides: Dict[str, object] = {'use_sim_time': as_bool(use_sim_time)}
    if method:
        overrides['method'] = method
    if output:
        overrides['output_path'] = os.path.abspath(os.path.expanduser(output))
    if bag:
        overrides['bag_path'] = os.path.abspath(os.path.expanduser(bag))
        for name, topic in (('depth_topic', depth_topic), ('bag_image_topic', image_topic),
                            ('bag_camera_info_topic', camera_info_topic)):
            if topic:
                overrides[name] = topic
    elif depth_topic:
        overrides['use_depth'] = True
    return overrides


def map_builder_remappings(image_topic: str = '', camera_info_topic: str = '',
                           depth_topic: str = '') -> List[Tuple[str, str]]:
    """Return the map builder's remappings for live topics (empty: the default topics)."""
    # Relative defaults, as the localizer's: a namespaced robot's camera is in its namespace.
    remappings = localizer_remappings(image_topic or DEFAULT_IMAGE_TOPIC.lstrip('/'),
                                      camera_info_topic or DEFAULT_CAMERA_INFO_TOPIC.lstrip('/'))
    if depth_topic:
        remappings.append(('depth', depth_topic))
    return remappings


def replay_paths(output_dir: str) -> Dict[str, str]:
    """Return where a replay evaluation writes its report, trajectories and plot."""
    root = os.path.abspath(os.path.expanduser(output_dir))
    return {'json_path': os.path.join(root, 'report.json'),
            'tum_path': os.path.join(root, 'estimate.tum'),
            'gt_tum_path': os.path.join(root, 'ground_truth.tum'),
            'plot_path': os.path.join(root, 'report.png')}


def node_key_matches(key: str, node: str, namespace: str = '') -> bool:
    """
    Tell whether a parameter-file node key applies to ``node`` in ``namespace``, as in rcl.

    A key is a fully qualified node name (a leading ``/`` is implied) whose tokens may be
    ``*`` (any one token) or ``**`` (any number of tokens, none included).
    """
    tokens = [t for t in str(key).strip().split('/') if t]
    pattern = ''.join('(?:/[^/]+)*' if t == '**' else '/[^/]+' if t == '*' else
                      '/' + re.escape(t) for t in tokens)
    name = '/'.join([''] + [t for t in namespace.split('/') if t] + [node])
    return re.fullmatch(pattern, name) is not None


def node_parameter(params_file: str, node: str, name: str, default=None, namespace: str = ''):
    """
    Return what a ROS 2 parameter file sets ``name`` to for ``node`` in ``namespace``.

    Entries are read in file order and the last match wins, as rcl applies them; which keys
    match is :func:`node_key_matches`.
    """
    import yaml
    with open(params_file, encoding='utf-8') as stream:
        content = yaml.safe_load(stream) or {}
    if not isinstance(content, dict):
        raise ValueError(f'{params_file}: not a ROS 2 parameter file (no node keys)')
    value = default
    for key, entry in content.items():
        if node_key_matches(str(key), node, namespace):
            parameters = (entry or {}).get('ros__parameters') if isinstance(entry, dict) \
                else None
            if isinstance(parameters, dict) and name in parameters:
                value = parameters[name]
    return value


def replay_evaluator_parameters(output_dir: str, map_path: str, localizer_params: str = '',
                                gt_topic: str = DEFAULT_GT_TOPIC,
                                camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC,
                                gt_frame: str = DEFAULT_GT_FRAME, drain='10.0',
                                pose_topic: str = f'/{LOCALIZER_NODE}/pose'
                                ) -> Dict[str, object]:
    """
    Return the replay_evaluator parameters that score the localizer of a replay.

    The evaluator compares the pose of the localizer's ``base_frame`` (read from the
    localizer's parameter file, so that a localizer publishing camera poses with
    ``base_frame: ''`` is scored as such) with the ground truth's ``gt_frame``.
    """
    params_file = localizer_params or config_path('localizer.yaml')
    base_frame = node_parameter(params_file, LOCALIZER_NODE, 'base_frame', 'base_link')
    return dict(replay_paths(output_dir), use_sim_time=True, pose_topic=pose_topic,
                gt_topic=gt_topic, camera_info_topic=camera_info_topic,
                estimate_frame=str(base_frame or ''), gt_frame=gt_frame,
                idle_timeout=float(drain),
                map_path=os.path.abspath(os.path.expanduser(map_path)))


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        # Quoted so that paths or words like "on" stay strings.
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_yaml_value(v) for v in value) + ']'
    return repr(value)


def ros_arguments(params_file: Optional[str] = None, overrides: Optional[dict] = None,
                  remappings: Sequence[Tuple[str, str]] = (), log_level: Optional[str] = None,
                  namespace: Optional[str] = None) -> List[str]:
    """
    Return the ``--ros-args`` tail that gives a process what a launch file would.

    Later sources win, as in launch: the parameter file, then the overrides.
    """
    args: List[str] = []
    if params_file:
        args += ['--params-file', str(params_file)]
    for name, value in (overrides or {}).items():
        args += ['-p', f'{name}:={_yaml_value(value)}']
    for source, target in remappings:
        args += ['-r', f'{source}:={target}']
    if namespace:
        args += ['-r', f'__ns:={namespace}']
    if log_level:
        args += ['--log-level', log_level]
    return args
