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
Replay a bag into the localizer on simulated time and score it against the bag's ground truth.

    ros2 launch neumap_ros replay_eval.launch.py map:=/path/map.safetensors bag:=/path/bag \
        output_dir:=/tmp/replay

The bag is played with /clock (neumap_ros's bag_player, or ``ros2 bag play --clock`` with
player:=ros2bag on a ROS 2 distro), the localizer runs with use_sim_time (localize.launch.py),
and replay_evaluator pairs its poses with the ground truth. When nothing has arrived for
``drain`` seconds after the bag (the localizer's last answers included), the evaluator writes
report.json (the ``neumap evaluate`` report), estimate.tum and ground_truth.tum (for evo) and
report.png into output_dir, and the launch shuts down with it.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, \
    IncludeLaunchDescription, LogInfo, OpaqueFunction, RegisterEventHandler, TimerAction
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from neumap_ros.ros import launch_params

# After the bag ended, the longest the launch waits for the evaluator to finish by itself
# (it ends drain seconds after the last message it received).
SAFETY_SECONDS = 120.0


def _replay(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    for required in ('map', 'bag'):
        if not arg(required):
            raise RuntimeError(f'replay_eval.launch.py needs {required}:=<path>')
    localizer = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(os.path.dirname(os.path.abspath(__file__)), 'localize.launch.py')),
        launch_arguments={'map': arg('map'), 'params_file': arg('params_file'),
                          'use_sim_time': 'true', 'image_topic': arg('image_topic'),
                          'camera_info_topic': arg('camera_info_topic'),
                          'log_level': arg('log_level'), 'autostart': 'true',
                          'image_qos': launch_params.REPLAY_IMAGE_QOS}.items())
    evaluator = Node(
        package=launch_params.PACKAGE, executable=launch_params.REPLAY_EVALUATOR_NODE,
        name=launch_params.REPLAY_EVALUATOR_NODE, output='screen',
        parameters=[launch_params.replay_evaluator_parameters(
            arg('output_dir'), arg('map'), arg('params_file'), arg('gt_topic'),
            arg('camera_info_topic'), arg('gt_frame'), arg('drain'))])
    if arg('player') == 'ros2bag':
        player = ExecuteProcess(cmd=['ros2', 'bag', 'play', arg('bag'), '--clock', '--rate',
                                     arg('rate')], output='screen')
    else:
        player = Node(
            package=launch_params.PACKAGE, executable=launch_params.BAG_PLAYER_NODE,
            name=launch_params.BAG_PLAYER_NODE, output='screen',
            parameters=[launch_params.bag_player_parameters(
                arg('bag'), arg('rate'), arg('image_topic'), arg('gt_topic'),
                arg('camera_info_topic'))])

    def player_exited(event, _):
        if event.returncode != 0:
            # A bag that cannot be played (missing, empty, damaged) ends the replay now,
            # rather than after the evaluator's safety wait with nothing to score.
            return [LogInfo(msg=f'the bag player failed (exit {event.returncode}); stopping'),
                    EmitEvent(event=Shutdown(reason='bag player failed'))]
        return [LogInfo(msg='bag finished; the evaluator reports once the last frames are '
                            'answered'),
                TimerAction(period=SAFETY_SECONDS, actions=[
                    EmitEvent(event=Shutdown(reason='evaluator did not finish'))])]

    bag_done = RegisterEventHandler(OnProcessExit(target_action=player, on_exit=player_exited))
    evaluated = RegisterEventHandler(OnProcessExit(target_action=evaluator, on_exit=[
        EmitEvent(event=Shutdown(reason='evaluation written'))]))
    return [localizer, evaluator, player, bag_done, evaluated]


def generate_launch_description():
    """Declare the arguments of launch_params.REPLAY_EVAL_ARGUMENTS and run the replay."""
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in launch_params.REPLAY_EVAL_ARGUMENTS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_replay)])
