#!/usr/bin/env python3
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
Preview a generated scene: a contact sheet of colour and depth, timings, SIFT statistics.

Example::

    python tools/preview_synthetic.py --kind indoor --seed 3 --out /tmp/indoor3.png --sift
"""

import argparse
import pathlib
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from neumap_ros.core import synthetic  # noqa: E402
from neumap_ros.core.synthetic.quality import reprojection_consistency  # noqa: E402


def _depth_image(depth: np.ndarray, far: float) -> np.ndarray:
    scaled = np.clip(depth / far * 255.0, 0, 255).astype(np.uint8)
    image = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
    image[depth <= 0] = 0
    return image


def main(argv=None) -> int:
    """Render a few frames of one scene and write a contact sheet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--kind', choices=synthetic.layout.KINDS, default='indoor')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--frames', type=int, default=6, help='frames on the sheet')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--out', default='/tmp/synthetic_preview.png')
    parser.add_argument('--sift', action='store_true',
                        help='report SIFT keypoints and match / geometry consistency')
    args = parser.parse_args(argv)

    camera = synthetic.default_camera(args.width, args.height)
    start = time.perf_counter()
    scene = synthetic.generate_scene(args.seed, kind=args.kind)
    poses = synthetic.sample_trajectory(scene, 10 * args.frames, args.seed, camera)
    revisits = synthetic.sample_revisits(scene, poses, 2, args.seed, camera)
    print(f'{args.kind} scene {args.seed}: {len(scene.boxes)} solids, {len(scene)} faces, '
          f'layout and path {time.perf_counter() - start:.2f} s')
    far = 6.0 if args.kind == 'indoor' else 40.0
    tiles, results = [], []
    for i, pose in enumerate(poses[::10][:args.frames] + revisits):
        rng = np.random.default_rng([args.seed, i])
        start = time.perf_counter()
        result = synthetic.render(scene, camera, pose, synthetic.Photometric.sample(rng), rng)
        first = time.perf_counter() - start
        start = time.perf_counter()
        synthetic.render(scene, camera, pose)
        again = time.perf_counter() - start
        print(f'frame {i}: first render {first * 1000:.0f} ms (with texture / light map '
              f'generation), again {again * 1000:.0f} ms')
        tiles.append(np.vstack([result.color, _depth_image(result.depth, far)]))
        results.append((result, pose))
    cv2.imwrite(args.out, np.hstack(tiles))
    print(f'wrote {args.out} (top: colour, bottom: depth; the last two are revisits)')
    if args.sift:
        # Each sheet frame against the frame 4 steps later on the path (an overlapping view).
        for i, (a, pose_a) in enumerate(results[:args.frames]):
            pose_b = poses[10 * i + 4]
            rng = np.random.default_rng([args.seed, 1000 + i])
            b = synthetic.render(scene, camera, pose_b, synthetic.Photometric.sample(rng), rng)
            report = reprojection_consistency(a.color, a.depth, pose_a, b.color, pose_b, camera)
            print(f'SIFT frame {i}: {report.keypoints_a} keypoints, {report.matches} matches, '
                  f'{report.consistent_fraction:.2f} of {report.checked} checked within 2 px of '
                  f'the true reprojection')
    return 0


if __name__ == '__main__':
    sys.exit(main())
