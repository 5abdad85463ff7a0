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
Keypoint detection and description.

SIFT (OpenCV) is the default: real, robust and free of downloadable weights. ORB is the fast
option. A learned detector plugs in by subclassing :class:`FeatureExtractor` and registering it in
``EXTRACTORS``; the decoder only sees :func:`descriptor_vectors`.
"""

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from neumap_ros.core.settings import check_settings


class ImageError(ValueError):
    """Raised for images that cannot be processed (empty, wrong type, non-finite...)."""


# More keypoints than any camera gives; a map file asking for more is not trusted.
MAX_KEYPOINTS = 100_000
# Smallest detection image: images below it give no keypoints (SIFT) or a cv2.error (ORB).
MIN_IMAGE_SIDE = 16


@dataclass(frozen=True)
class FeatureConfig:
    """Keypoint settings; they are stored in every map and must match at localization."""

    kind: str = 'sift'
    max_keypoints: int = 1024
    # SIFT only: OpenCV's default 0.04 drops too many keypoints on low-contrast indoor images.
    contrast_threshold: float = 0.02
    # Detect on an image whose longer side is at most this many pixels (0: full resolution).
    max_image_side: int = 0

    def __post_init__(self):
        """Refuse wrong types and sizes (from YAML, flags or a map file) now, by name."""
        check_settings(self, at_least={'max_keypoints': 1, 'max_image_side': 0,
                                       'contrast_threshold': 0.0},
                       at_most={'max_keypoints': MAX_KEYPOINTS, 'max_image_side': 65536})
        if 0 < self.max_image_side < MIN_IMAGE_SIDE:
            raise ValueError(f'FeatureConfig setting max_image_side must be 0 (full resolution) '
                             f'or >= {MIN_IMAGE_SIDE}, got {self.max_image_side}')

    def to_dict(self) -> dict:
        """JSON-friendly form for map metadata."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> 'FeatureConfig':
        """Inverse of :meth:`to_dict`, ignoring unknown keys from newer versions."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class Features:
    """Keypoints of one image: pixel positions in the input image and raw descriptors."""

    keypoints: np.ndarray      # (N, 2) float32, pixels of the full-resolution input image
    descriptors: np.ndarray    # (N, D) uint8: SIFT bins (D=128) or ORB bytes (D=32)
    scales: np.ndarray         # (N,) float32 keypoint size in input pixels
    kind: str

    def __len__(self) -> int:
        """Return the number of keypoints."""
        return len(self.keypoints)

    def subset(self, index) -> 'Features':
        """Features selected by a boolean mask or index array."""
        return Features(self.keypoints[index], self.descriptors[index], self.scales[index],
                        self.kind)


def uint16_to_uint8(image: np.ndarray) -> np.ndarray:
    """
    Scale a 16-bit image by its own range: 12-bit cameras in 16-bit words keep contrast.

    The alpha channel of a 4-channel image is dropped (BGR comes back): an opaque alpha of
    65535 would otherwise set the scale and darken the colour to almost black.
    """
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    top = float(image.max())
    return (image.astype(np.float32) * (255.0 / top if top > 0 else 0.0)).astype(np.uint8)


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Convert an image (gray, BGR, BGRA; uint8, uint16 or float) to 8-bit gray, validating it."""
    if image is None or not isinstance(image, np.ndarray):
        raise ImageError('image must be a numpy array')
    if image.size == 0 or image.ndim not in (2, 3):
        raise ImageError(f'image is empty or has an unsupported shape {image.shape}')
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ImageError(f'unsupported channel count {image.shape[2]}')
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageError(f'image too small for keypoints: {image.shape[1]}x{image.shape[0]}')
    if image.dtype == np.uint8:
        gray = image
    elif image.dtype == np.uint16:
        gray = uint16_to_uint8(image)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ImageError('image contains NaN or infinite values')
        scale = 255.0 if float(image.max()) <= 1.0 else 1.0
        gray = np.clip(image * scale, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f'unsupported image dtype {image.dtype}')
    if gray.ndim == 3:
        if gray.shape[2] == 1:
            gray = gray[:, :, 0]
        elif gray.shape[2] == 3:
            gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
        else:
            gray = cv2.cvtColor(gray, cv2.COLOR_BGRA2GRAY)
    return np.ascontiguousarray(gray)


class FeatureExtractor:
    """Base class: detect keypoints and compute descriptors on a gray image."""

    descriptor_bytes = 0

    def __init__(self, config: FeatureConfig):
        self.config = config

    def _detect(self, gray: np.ndarray):
        raise NotImplementedError

    def extract(self, image: np.ndarray) -> Features:
        """Detect and describe keypoints; coordinates refer to ``image``'s own pixel grid."""
        gray = to_gray_uint8(image)
        scale = 1.0
        side = max(gray.shape)
        if self.config.max_image_side and side > self.config.max_image_side:
            scale = self.config.max_image_side / side
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        keypoints, descriptors = self._detect(gray)
        if descriptors is None or len(keypoints) == 0:
            return Features(np.zeros((0, 2), np.float32),
                            np.zeros((0, self.descriptor_bytes), np.uint8),
                            np.zeros(0, np.float32), self.config.kind)
        points = np.array([k.pt for k in keypoints], dtype=np.float32)
        sizes = np.array([k.size for k in keypoints], dtype=np.float32)
        if scale != 1.0:
            # Map back to input pixels with OpenCV's pixel-centre convention.
            points = (points + 0.5) / scale - 0.5
            sizes = sizes / scale
        order = np.argsort([-k.response for k in keypoints], kind='stable')
        order = order[: self.config.max_keypoints]
        return Features(points[order], np.asarray(descriptors)[order].astype(np.uint8),
                        sizes[order], self.config.kind)


class SiftExtractor(FeatureExtractor):
    """OpenCV SIFT; descriptors are the 128 uint8 histogram bins."""

    descriptor_bytes = 128

    def __init__(self, config: FeatureConfig):
        super().__init__(config)
        # Detect a few more than needed so the strongest ``max_keypoints`` survive the cap.
        self._sift = cv2.SIFT_create(nfeatures=int(config.max_keypoints * 1.2),
                                     contrastThreshold=config.contrast_threshold)

    def _detect(self, gray):
        keypoints, descriptors = self._sift.detectAndCompute(gray, None)
        if descriptors is not None:
            descriptors = np.clip(np.rint(descriptors), 0, 255)
        return keypoints, descriptors


class OrbExtractor(FeatureExtractor):
    """OpenCV ORB (fast); descriptors are 32 bytes of binary tests."""

    descriptor_bytes = 32

    def __init__(self, config: FeatureConfig):
        super().__init__(config)
        self._orb = cv2.ORB_create(nfeatures=config.max_keypoints, fastThreshold=10)

    def _detect(self, gray):
        return self._orb.detectAndCompute(gray, None)


EXTRACTORS = {'sift': SiftExtractor, 'orb': OrbExtractor}

DESCRIPTOR_DIMS = {'sift': 128, 'orb': 256}


def descriptor_mismatch(kind: str, descriptor_dim: int) -> str:
    """Return why ``kind`` keypoints cannot feed a ``descriptor_dim``-d decoder ('' if fit)."""
    if DESCRIPTOR_DIMS.get(kind) == descriptor_dim:
        return ''
    fitting = sorted(k for k, dim in DESCRIPTOR_DIMS.items() if dim == descriptor_dim)
    return (f'{kind!r} keypoints do not fit a decoder of {descriptor_dim}-d descriptors '
            f'(it reads {" or ".join(map(repr, fitting)) or "no known"} keypoints)')


def create_extractor(config: FeatureConfig) -> FeatureExtractor:
    """Instantiate the extractor named by ``config.kind``."""
    try:
        return EXTRACTORS[config.kind](config)
    except KeyError:
        raise ValueError(f'unknown feature kind {config.kind!r}; known: {sorted(EXTRACTORS)}')


def descriptor_vectors(descriptors: np.ndarray, kind: str) -> np.ndarray:
    """
    Float vectors the decoder and matcher use: RootSIFT for SIFT, +-1 bits for ORB.

    Both are unit-length, so dot products are cosine similarities.
    """
    if kind == 'sift':
        d = descriptors.astype(np.float32)
        d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-6)
        return np.sqrt(d)
    if kind == 'orb':
        bits = np.unpackbits(descriptors, axis=1).astype(np.float32)
        # A float32 divisor: a NumPy float64 scalar would promote the vectors to float64.
        return (bits * 2.0 - 1.0) / np.float32(np.sqrt(bits.shape[1]))
    raise ValueError(f'unknown feature kind {kind!r}')
