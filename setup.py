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

"""Packaging of neumap_ros (ament_python): colcon and pip both build it from this file."""

from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'neumap_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench', 'tools']),
    package_data={package_name: ['weights/*.safetensors', 'weights/*.json', 'weights/*.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', package_name, 'config'), glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='neumap_ros maintainers',
    maintainer_email='neumap-ros@users.noreply.github.com',
    description='NeuMap neural coordinate-map visual relocalization for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'localizer_node = neumap_ros.ros.localizer_node:main',
            'map_builder_node = neumap_ros.ros.map_builder_node:main',
            'bag_player = neumap_ros.ros.bag_player:main',
            'replay_evaluator = neumap_ros.ros.replay_evaluator:main',
            'neumap = neumap_ros.cli:main',
        ],
    },
)
