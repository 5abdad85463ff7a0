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
Checks that rendered views are good SIFT training data: keypoints agree with the geometry.

SIFT is run on two views of a scene, matches pass Lowe's ratio test, and each match's keypoint
in view A is lifted with A's exact depth and pose and projected into view B. A match agrees
with the geometry when it lands within ``threshold_px`` of its partner.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from neumap_ros.core.camera import PinholeCamera


@dataclass(frozen=True)
class ConsistencyReport:
    """SIFT matches between two views measured against the true geometry."""

    keypoints_a: int
    keypoints_b: int
    matches: int               # ratio-test matches
    checked: int               # matches whose keypoint in A has depth and no depth edge nearby
    consistent: int            # checked matches within the threshold of their reprojection
    median_error_px: float     # over the checked matches

    @property
    def consistent_fraction(self) -> float:
        """Share of the checked matches that are consistent (nan without checked ones)."""
        return self.consistent / self.checked if self.checked else float('nan')


def _depth_edge(depth: np.ndarray, radius: int = 3, ratio: float = 1.05) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood holds no depth or depths differing by > ratio."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    valid = depth > 0
    far = cv2.dilate(np.where(valid, depth, 0.0).astype(np.float32), kernel)
    near = cv2.erode(np.where(valid, depth, np.inf).astype(np.float32), kernel)
    holes = cv2.erode(valid.astype(np.uint8), kernel) == 0
    with np.errstate(over='ignore', invalid='ignore'):
        return holes | (far > ratio * near)


def reprojection_consistency(color_a: np.ndarray, depth_a: np.ndarray,
                             T_world_a: np.ndarray, color_b: np.ndarray,
                             T_world_b: np.ndarray, camera: PinholeCamera,
                             ratio: float = 0.8, threshold_px: float = 2.0,
                             sift=None) -> ConsistencyReport:
    """
    Match SIFT between two views and compare the matches with the exact reprojection.

    Keypoints of A at depth edges or without depth are matched but not checked: their depth is
    ambiguous, not their match.
    """
    sift = sift or cv2.SIFT_create()
    gray_a = cv2.cvtColor(color_a, cv2.COLOR_BGR2GRAY)
    gray_b = cv2.cvtColor(color_b, cv2.COLOR_BGR2GRAY)
    kp_a, desc_a = sift.detectAndCompute(gray_a, None)
    kp_b, desc_b = sift.detectAndCompute(gray_b, None)
    if desc_a is None or desc_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return ConsistencyReport(len(kp_a), len(kp_b), 0, 0, 0, float('nan'))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if not good:
        return ConsistencyReport(len(kp_a), len(kp_b), 0, 0, 0, float('nan'))
    pa = np.array([kp_a[m.queryIdx].pt for m in good])
    pb = np.array([kp_b[m.trainIdx].pt for m in good])
    cols = np.clip(np.round(pa[:, 0]).astype(int), 0, camera.width - 1)
    rows = np.clip(np.round(pa[:, 1]).astype(int), 0, camera.height - 1)
    checked = ~_depth_edge(depth_a)[rows, cols]
    z = depth_a[rows, cols].astype(np.float64)
    points_a = np.stack([(pa[:, 0] - camera.cx) / camera.fx * z,
                         (pa[:, 1] - camera.cy) / camera.fy * z, z], axis=1)
    world = points_a @ T_world_a[:3, :3].T + T_world_a[:3, 3]
    points_b = (world - T_world_b[:3, 3]) @ T_world_b[:3, :3]
    checked &= points_b[:, 2] > 1e-6
    with np.errstate(divide='ignore', invalid='ignore'):
        proj = points_b[:, :2] / points_b[:, 2:3] * [camera.fx, camera.fy] + [camera.cx,
                                                                              camera.cy]
    error = np.linalg.norm(proj - pb, axis=1)
    n_checked = int(checked.sum())
    return ConsistencyReport(
        len(kp_a), len(kp_b), len(good), n_checked,
        int(np.sum(error[checked] < threshold_px)),
        float(np.median(error[checked])) if n_checked else float('nan'))
