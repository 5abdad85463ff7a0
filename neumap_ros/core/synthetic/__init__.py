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
Procedural scene generator and renderer for pretraining without downloads.

Scenes are indoor rooms or outdoor plazas made of textured rectangles (procedural materials and
photographs shipped inside scikit-image), rendered by a numpy ray caster with exact depth.
Typical use::

    scene = generate_scene(seed=3, config=SceneConfig(kind='indoor'))
    camera = default_camera(640, 480)
    poses = sample_trajectory(scene, 100, seed=3, camera=camera)
    frame = render(scene, camera, poses[0])              # frame.color, frame.depth

    generate_dataset('out/synthetic-3', seed=3, n_map=200, n_query=40)   # 7-Scenes layout
    for color, depth, K, T_world_camera in iter_scene_frames(seed=3, n_frames=64):
        ...
"""

from neumap_ros.core.synthetic.dataset import (generate_dataset, interleaved_split,
                                               iter_scene_frames, scene_kind_for_seed,
                                               SyntheticFrame)
from neumap_ros.core.synthetic.layout import (Box, generate_scene, Lighting, Quad, Scene,
                                              SceneConfig)
from neumap_ros.core.synthetic.quality import ConsistencyReport, reprojection_consistency
from neumap_ros.core.synthetic.raster import rasterize, render_depth
from neumap_ros.core.synthetic.renderer import Photometric, render, RenderResult
from neumap_ros.core.synthetic.trajectory import (default_camera, look_pose, sample_revisits,
                                                  sample_trajectory, TrajectoryConfig,
                                                  view_overlap, view_stats, ViewStats)
from neumap_ros.core.synthetic.writer import write_sevenscenes_layout

__all__ = [
    'Box', 'ConsistencyReport', 'default_camera', 'generate_dataset', 'generate_scene',
    'interleaved_split', 'iter_scene_frames', 'Lighting', 'look_pose', 'Photometric', 'Quad',
    'rasterize', 'render', 'render_depth', 'RenderResult', 'reprojection_consistency',
    'sample_revisits', 'sample_trajectory', 'Scene', 'scene_kind_for_seed', 'SceneConfig',
    'SyntheticFrame', 'TrajectoryConfig', 'view_overlap', 'view_stats', 'ViewStats',
    'write_sevenscenes_layout',
]
