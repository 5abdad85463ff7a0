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
Build a map with the map builder node, from a rosbag2 or from live topics.

    ros2 launch neumap_ros build_map.launch.py bag:=/path/bag output:=/path/map.safetensors
    ros2 launch neumap_ros build_map.launch.py output:=/path/map.safetensors  # live; then
    ros2 service call /map_builder_node/build std_srvs/srv/Trigger

With a bag the launch ends when the map is written (or the build failed).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, \
    RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from neumap_ros.ros import launch_params


def _map_builder(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    if not arg('output'):
        raise RuntimeError('build_map.launch.py needs output:=<map file>')
    params_file = arg('params_file') or launch_params.config_path('map_builder.yaml')
    node = Node(
        package=launch_params.PACKAGE, executable=launch_params.MAP_BUILDER_NODE,
        name=launch_params.MAP_BUILDER_NODE, namespace=arg('namespace'), output='screen',
        parameters=[params_file, launch_params.map_builder_overrides(
            arg('output'), arg('bag'), arg('method'), arg('use_sim_time'), arg('depth_topic'),
            arg('image_topic'), arg('camera_info_topic'))],
        remappings=launch_params.map_builder_remappings(
            arg('image_topic'), arg('camera_info_topic'), arg('depth_topic')),
        arguments=['--ros-args', '--log-level', arg('log_level')])
    actions = [node]
    if arg('bag'):
        actions.append(RegisterEventHandler(OnProcessExit(target_action=node,
                                                          on_exit=_shutdown_saying_how)))
    return actions


def _shutdown_saying_how(event, context):
    # The launch ends with the builder either way; the reason says whether a map came out.
    if event.returncode == 0:
        return [EmitEvent(event=Shutdown(reason='map built'))]
    reason = f'map build failed (map_builder_node exit code {event.returncode})'
    return [LogInfo(msg=reason), EmitEvent(event=Shutdown(reason=reason))]


def generate_launch_description():
    """Declare the arguments of launch_params.BUILD_MAP_ARGUMENTS and start the builder."""
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in launch_params.BUILD_MAP_ARGUMENTS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_map_builder)])
