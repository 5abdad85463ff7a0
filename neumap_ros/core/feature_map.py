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
The feature-matching baseline map: every mapped keypoint's descriptor and 3D point.

This is the classic structure-based localization map (retrieve similar mapping images, match
descriptors with the ratio test, PnP); the neural map is measured against it.
"""

from dataclasses import dataclass, field
import time

import numpy as np

from neumap_ros.core.features import DESCRIPTOR_DIMS, EXTRACTORS, FeatureConfig
from neumap_ros.core.map_io import info_of, MapFormatError, read_tensor_file, require, \
    write_tensor_file
from neumap_ros.core.observations import Observations
from neumap_ros.core.retrieval import document_histograms, train_vocabulary, Vocabulary

MAP_KIND = 'neumap.feature_map'
FORMAT_VERSION = 1


@dataclass
class FeatureMap:
    """Descriptors and 3D points grouped by mapping frame, plus per-frame retrieval vectors."""

    feature_config: FeatureConfig
    frame_index: np.ndarray       # (M,) int32
    descriptors: np.ndarray       # (M, B) uint8 raw descriptors
    xyz: np.ndarray               # (M, 3) float32
    frame_centres: np.ndarray     # (F, 3) float32 camera centres (used with a pose prior)
    vocabulary: Vocabulary
    frame_histograms: np.ndarray  # (F, W) float32
    info: dict = field(default_factory=dict)

    def save(self, path) -> int:
        """Write atomically; returns the file size in bytes."""
        tensors = {'frame_index': self.frame_index.astype(np.int32),
                   'descriptors': self.descriptors.astype(np.uint8),
                   'xyz': self.xyz.astype(np.float32),
                   'frame_centres': self.frame_centres.astype(np.float32),
                   'vocabulary': self.vocabulary.words.astype(np.float16),
                   'vocabulary_idf': self.vocabulary.idf.astype(np.float32),
                   'frame_histograms': self.frame_histograms.astype(np.float16)}
        metadata = {'kind': MAP_KIND, 'format_version': FORMAT_VERSION, 'method': 'features',
                    'features': self.feature_config.to_dict(), 'info': self.info}
        return write_tensor_file(path, tensors, metadata)

    @classmethod
    def load(cls, path) -> 'FeatureMap':
        """Read and validate; raises MapFormatError with the reason."""
        tensors, meta = read_tensor_file(path, MAP_KIND, {FORMAT_VERSION})
        try:
            config = FeatureConfig.from_dict(meta['features'])
            dim = DESCRIPTOR_DIMS[config.kind]
            width = EXTRACTORS[config.kind].descriptor_bytes
        except (KeyError, TypeError, ValueError) as error:
            raise MapFormatError(f'{path}: invalid feature settings ({error})')
        frame_index = require(tensors, 'frame_index', (None,), [np.int32], path)
        count = len(frame_index)
        # Raw descriptors must be as wide as the extractor's (else localization fails later).
        descriptors = require(tensors, 'descriptors', (count, width), [np.uint8], path)
        xyz = require(tensors, 'xyz', (count, 3), [np.float32], path)
        centres = require(tensors, 'frame_centres', (None, 3), [np.float32], path)
        words = require(tensors, 'vocabulary', (None, dim), [np.float16], path)
        idf = require(tensors, 'vocabulary_idf', (len(words),), [np.float32], path)
        histograms = require(tensors, 'frame_histograms', (len(centres), len(words)),
                             [np.float16], path)
        if count and (frame_index.min() < 0 or frame_index.max() >= len(centres)):
            raise MapFormatError(f'{path}: frame index out of range')
        return cls(config, frame_index, descriptors, xyz, centres,
                   Vocabulary(words.astype(np.float32), idf), histograms.astype(np.float32),
                   info_of(meta, path))


def build_feature_map(observations: Observations, feature_config: FeatureConfig,
                      vocabulary_size: int = 1024, seed: int = 0, info: dict = None) -> FeatureMap:
    """Keep every keypoint with a 3D point, and index the frames for retrieval."""
    started = time.monotonic()
    valid = observations.valid
    kept = observations.subset(valid)
    vectors = kept.vectors()
    vocabulary = train_vocabulary(vectors, kept.frame_index, vocabulary_size, seed=seed)
    histograms = document_histograms(vocabulary, vocabulary.assign(vectors), kept.frame_index,
                                     len(observations.frame_names))
    details = dict(info or {})
    details.update({'mapping_frames': len(observations.frame_names),
                    'mapping_points': int(valid.sum()),
                    'mapping_seconds': round(time.monotonic() - started, 2)})
    return FeatureMap(feature_config, kept.frame_index.astype(np.int32), kept.descriptors,
                      kept.xyz.astype(np.float32),
                      observations.poses[:, :3, 3].astype(np.float32), vocabulary, histograms,
                      details)
