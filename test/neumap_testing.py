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
Shared pieces of the localizer, bag and map-builder tests (no rclpy at import time).

Small real maps are built once per test session and kept under pytest's base temporary
folder, so every test module that asks for one after the first gets it from disk.
"""

import fcntl
import json
import pathlib

import numpy as np

SCENE = '7scenes-redkitchen'
# Mapping frames: every 15th of the first 600 (40 frames, about 15 s to build).
MAP_FRAMES = [f'frame-{i:06d}' for i in range(0, 600, 15)]
# A second, tiny map of another stretch of the sequence (for switching maps at run time).
OTHER_MAP_FRAMES = [f'frame-{i:06d}' for i in range(600, 700, 10)]
# Query frames between mapping frames, never mapped themselves.
QUERY_FRAMES = [f'frame-{i:06d}' for i in range(7, 600, 30)]


def write_split(path: pathlib.Path, names) -> pathlib.Path:
    """Write a split list file and return its path."""
    path.write_text('\n'.join(names) + '\n')
    return path


def read_report(path) -> dict:
    """Read a JSON report strictly: NaN or Infinity (not JSON, refused by most parsers) fail."""
    def refuse(constant):
        raise ValueError(f'{path} holds {constant}, which is not JSON')
    return json.loads(pathlib.Path(path).read_text(), parse_constant=refuse)


def cached_map(tmp_path_factory, shared_data_dir, name: str = 'kitchen',
               frames=MAP_FRAMES, method: str = 'features') -> pathlib.Path:
    """
    Return a map of ``frames`` of the kitchen, built once per session.

    The map lives in the session's base temporary folder; a lock file makes concurrent
    requests (several test modules) wait for one build instead of racing. ``method`` picks
    the feature-matching map or the neural one (shipped decoder, short codes-only mapping).
    """
    from neumap_ros.core.features import FeatureConfig
    from neumap_ros.core.map_building import build_map, BuildRequest
    from neumap_ros.core.mapping import MappingConfig
    root = tmp_path_factory.getbasetemp() / 'neumap_maps'
    root.mkdir(exist_ok=True)
    path = root / f'{name}-{method}.safetensors'
    with open(root / f'{name}-{method}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            split = write_split(root / f'{name}-split.txt', frames)
            build_map(BuildRequest(shared_data_dir / SCENE, str(split), path, method,
                                   FeatureConfig(), MappingConfig(iterations=300),
                                   progress=False))
    return path


def pose_error(T_estimate: np.ndarray, T_truth: np.ndarray):
    """Return (metres, degrees) between two 4x4 poses."""
    from neumap_ros.core.geometry import pose_errors
    return pose_errors(T_estimate, T_truth)


def change_state(ros, node_name: str, transition_id: int, timeout: float = 30.0) -> bool:
    """Request a lifecycle transition of ``node_name`` from the test node; return success."""
    from lifecycle_msgs.srv import ChangeState
    request = ChangeState.Request()
    request.transition.id = transition_id
    return call(ros, ChangeState, f'/{node_name}/change_state', request, timeout).success


def get_state(ros, node_name: str, timeout: float = 10.0):
    """Return (id, label) of the lifecycle state of ``node_name``."""
    from lifecycle_msgs.srv import GetState
    state = call(ros, GetState, f'/{node_name}/get_state', GetState.Request(),
                 timeout, idempotent=True).current_state
    return state.id, state.label


def call(ros, srv_type, name: str, request, timeout: float = 15.0, watch=(),
         idempotent: bool = False):
    """
    Call a service from the test's context and return the response (fail on timeout).

    A server can see a new client's request before its reply path is matched; Fast DDS then
    drops the response ("failed to send response (timeout)"). Idempotent requests are sent
    again in that case; the others wait for their one response.
    """
    client = ros.node.create_client(srv_type, name)
    try:
        ros.spin_until(lambda: client.service_is_ready(), timeout, watch=watch,
                       what=f'service {name}')
        attempts = 3 if idempotent else 1
        for attempt in range(attempts):
            future = client.call_async(request)
            try:
                ros.spin_until(future.done, timeout / attempts, watch=watch,
                               what=f'response of {name}')
                return future.result()
            except AssertionError:
                if attempt == attempts - 1:
                    raise
    finally:
        ros.node.destroy_client(client)


def set_parameters(ros, node_name: str, values: dict, timeout: float = 10.0):
    """Set parameters of a remote node through its set_parameters service; return results."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    request = SetParameters.Request()
    request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
    return call(ros, SetParameters, f'/{node_name}/set_parameters', request, timeout,
                idempotent=True).results


def diagnostic_values(status) -> dict:
    """Return the key-value pairs of a diagnostic_msgs/DiagnosticStatus as a dict."""
    return {kv.key: kv.value for kv in status.values}


def start_localizer(ros_process, map_path, overrides=None, image_topic=None,
                    camera_info_topic=None, use_sim_time=False, name='localizer',
                    namespace=None):
    """
    Start localizer_node as a process with what localize.launch.py passes it.

    The parameter file, the overrides from the launch arguments and the remappings all come
    from neumap_ros.ros.launch_params; ``overrides`` adds test-specific parameters on top.
    """
    from neumap_ros.ros import launch_params
    defaults = launch_params.defaults(launch_params.LOCALIZE_ARGUMENTS)
    parameters = launch_params.localizer_overrides(str(map_path), use_sim_time)
    parameters.update(overrides or {})
    args = launch_params.ros_arguments(
        params_file=launch_params.config_path('localizer.yaml'), overrides=parameters,
        remappings=launch_params.localizer_remappings(
            image_topic or defaults['image_topic'],
            camera_info_topic or defaults['camera_info_topic']), namespace=namespace)
    return ros_process('neumap_ros.ros.localizer_node', ros_args=args, name=name)


class DiagnosticsWatcher:
    """Keep the latest DiagnosticStatus of one node from /diagnostics."""

    def __init__(self, ros, name_prefix: str):
        """Subscribe in the test's context to statuses whose name starts with the prefix."""
        from diagnostic_msgs.msg import DiagnosticArray
        self.ros = ros
        self.prefix = name_prefix
        self.latest = None
        self.history = []
        ros.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_array, 50)

    def _on_array(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.prefix):
                self.latest = status
                self.history.append(status)

    def values(self) -> dict:
        """Return the key-values of the latest status ({} before the first)."""
        return diagnostic_values(self.latest) if self.latest is not None else {}

    def level(self) -> int:
        """Return the level of the latest status as an int (-1 before the first)."""
        return self.latest.level[0] if self.latest is not None else -1
