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
Start the NeuMap localizer as a lifecycle node and bring it to active.

    ros2 launch neumap_ros localize.launch.py map:=/path/map.safetensors \
        image_topic:=camera/color/image_raw camera_info_topic:=camera/color/camera_info

The arguments, their defaults and how they become parameters and remappings live in
neumap_ros.ros.launch_params, which the tests use too. With autostart (default) the node is
configured and, once inactive, activated through launch_ros lifecycle events; a failed
configure (e.g. a missing map) leaves it unconfigured and alive, reporting the reason on
/diagnostics.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, \
    RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from neumap_ros.ros import launch_params


def _localizer(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    params_file = arg('params_file') or launch_params.config_path('localizer.yaml')
    node = LifecycleNode(
        package=launch_params.PACKAGE, executable=launch_params.LOCALIZER_NODE,
        name=launch_params.LOCALIZER_NODE, namespace=arg('namespace'), output='screen',
        parameters=[params_file,
                    launch_params.localizer_overrides(arg('map'), arg('use_sim_time'),
                                                      arg('image_qos'))],
        remappings=launch_params.localizer_remappings(arg('image_topic'),
                                                      arg('camera_info_topic')),
        arguments=['--ros-args', '--log-level', arg('log_level')])
    actions = [node]
    if launch_params.as_bool(arg('autostart')):
        activate = EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=Transition.TRANSITION_ACTIVATE))
        actions += [
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
                entities=[activate])),
            EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                        transition_id=Transition.TRANSITION_CONFIGURE)),
        ]
    return actions


def generate_launch_description():
    """Declare the arguments of launch_params.LOCALIZE_ARGUMENTS and start the localizer."""
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in launch_params.LOCALIZE_ARGUMENTS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_localizer)])
