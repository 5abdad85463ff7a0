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

"""Pinhole camera model with optional OpenCV (plumb-bob / rational) distortion."""

from dataclasses import dataclass, field
import math

import cv2
import numpy as np


# Iterations of the undistortion fixed point: converged to far below a pixel.
UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)


class CameraError(ValueError):
    """Raised for camera parameters that cannot describe a real camera."""


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of one camera; ``distortion`` holds OpenCV coefficients (k1, k2, p1, p2...)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple = field(default=())

    def __post_init__(self):
        """Reject parameters no real camera has (zero size, NaN or non-positive focal length)."""
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CameraError(f'camera size must be positive, got {self.width}x{self.height}')
        values = (self.fx, self.fy, self.cx, self.cy) + tuple(self.distortion)
        if not all(math.isfinite(float(v)) for v in values):
            raise CameraError(f'camera parameters must be finite, got {values}')
        if self.fx <= 0 or self.fy <= 0:
            raise CameraError(f'focal lengths must be positive, got fx={self.fx} fy={self.fy}')
        if len(self.distortion) not in (0, 4, 5, 8, 12, 14):
            raise CameraError(f'unsupported number of distortion terms: {len(self.distortion)}')

    @classmethod
    def from_matrix(cls, K, width: int, height: int, distortion=()) -> 'PinholeCamera':
        """Create from a 3x3 intrinsic matrix."""
        K = np.asarray(K, dtype=float).reshape(3, 3)
        return cls(int(width), int(height), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]),
                   float(K[1, 2]), tuple(float(d) for d in distortion))

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the conventional name of the intrinsic matrix
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        """Tell whether any distortion coefficient is non-zero."""
        return any(abs(d) > 0.0 for d in self.distortion)

    def undistorted(self) -> 'PinholeCamera':
        """Return this camera without distortion (the model of undistorted keypoints)."""
        return PinholeCamera(self.width, self.height, self.fx, self.fy, self.cx, self.cy)

    def scaled(self, factor: float) -> 'PinholeCamera':
        """Camera for an image resized by ``factor`` (pixel-centre convention of OpenCV)."""
        return PinholeCamera(
            max(1, int(round(self.width * factor))), max(1, int(round(self.height * factor))),
            self.fx * factor, self.fy * factor,
            (self.cx + 0.5) * factor - 0.5, (self.cy + 0.5) * factor - 0.5, self.distortion)

    def undistort_points(self, points: np.ndarray) -> np.ndarray:
        """Map distorted pixel coordinates (N, 2) to the undistorted pinhole image."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not self.has_distortion or len(points) == 0:
            return points.copy()
        # OpenCV's default stops after 5 iterations: up to 0.7 px off for strong distortion.
        points = points.reshape(-1, 1, 2)
        distortion = np.asarray(self.distortion, dtype=np.float64)
        if hasattr(cv2, 'undistortPointsIter'):   # OpenCV 4 (ROS); 5 merged it below
            undistorted = cv2.undistortPointsIter(points, self.K, distortion, None, self.K,
                                                  UNDISTORT_CRITERIA)
        else:
            undistorted = cv2.undistortPoints(points, self.K, distortion, P=self.K,
                                              criteria=UNDISTORT_CRITERIA)
        return undistorted.reshape(-1, 2)

    def project(self, points_camera: np.ndarray) -> np.ndarray:
        """Project (N, 3) points in the optical frame to undistorted pixels."""
        z = points_camera[:, 2:3]
        return points_camera[:, :2] / z * [self.fx, self.fy] + [self.cx, self.cy]

    def backproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Lift undistorted pixels (N, 2) with depths (N,) along the optical axis to 3D points."""
        x = (pixels[:, 0] - self.cx) / self.fx
        y = (pixels[:, 1] - self.cy) / self.fy
        return np.stack([x * depth, y * depth, depth], axis=1)

    def to_dict(self) -> dict:
        """JSON-friendly description (stored in map metadata)."""
        return {'model': 'pinhole', 'width': int(self.width), 'height': int(self.height),
                'fx': float(self.fx), 'fy': float(self.fy), 'cx': float(self.cx),
                'cy': float(self.cy), 'distortion': [float(d) for d in self.distortion]}

    @classmethod
    def from_dict(cls, data: dict) -> 'PinholeCamera':
        """Inverse of :meth:`to_dict`."""
        return cls(int(data['width']), int(data['height']), float(data['fx']), float(data['fy']),
                   float(data['cx']), float(data['cy']),
                   tuple(float(d) for d in data.get('distortion', ())))

    def poselib_dict(self) -> dict:
        """Camera description for poselib (pixels are undistorted before they reach PnP)."""
        return {'model': 'PINHOLE', 'width': int(self.width), 'height': int(self.height),
                'params': [float(self.fx), float(self.fy), float(self.cx), float(self.cy)]}


def projection_jacobian(points_camera: np.ndarray, fx, fy) -> np.ndarray:
    """
    Return (N, 2, 3) derivatives of pinhole pixels with respect to camera-frame points.

    ``fx``/``fy`` are scalars or one per point; depths must already be positive.
    """
    x, y, z = points_camera[:, 0], points_camera[:, 1], points_camera[:, 2]
    jacobian = np.zeros((len(points_camera), 2, 3))
    jacobian[:, 0, 0] = fx / z
    jacobian[:, 0, 2] = -fx * x / z ** 2
    jacobian[:, 1, 1] = fy / z
    jacobian[:, 1, 2] = -fy * y / z ** 2
    return jacobian
