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
NeuMap neural coordinate-map visual relocalization for ROS 2.

The ROS-free engine lives in :mod:`neumap_ros.core` (it never imports rclpy); the ROS 2 nodes in
:mod:`neumap_ros.ros` are thin adapters on top of it.
"""

__version__ = '0.1.0'
