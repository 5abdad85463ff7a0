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
The NeuMap map: a voxel grid whose voxels hold latent codes, plus a tiny retrieval index.

Only kept codes are written (pruned ones cost nothing), as fp16, int8 (one fp16 scale per code)
or fp32. The file records the decoder's hash: a map only works with the decoder it was built for.
"""

from dataclasses import dataclass, field

import numpy as np

from neumap_ros.core.decoder import DecoderConfig
from neumap_ros.core.features import descriptor_mismatch, FeatureConfig
from neumap_ros.core.map_io import info_of, MapFormatError, read_tensor_file, require, \
    write_tensor_file
from neumap_ros.core.retrieval import Vocabulary
from neumap_ros.core.voxels import VoxelGrid

MAP_KIND = 'neumap.neural_map'
FORMAT_VERSION = 1
CODE_PRECISIONS = ('fp32', 'fp16', 'int8')
# Bounds on what a map file may ask for when loaded (the largest real maps use a few hundred
# MB): a hostile file cannot make the loader allocate without limit.
MAX_CODES_PER_VOXEL = 4096
MAX_DENSE_BYTES = 4 * 1024 ** 3


def _stored_codes(packed: np.ndarray, precision: str) -> dict:
    """Return the tensors kept codes (M, L, C) are written as (int8: one fp16 scale per code)."""
    if precision == 'int8':
        scale = np.maximum(np.abs(packed).max(axis=2, keepdims=True), 1e-8) / 127.0
        return {'codes': np.clip(np.rint(packed / scale), -127, 127).astype(np.int8),
                'code_scales': scale[..., 0].astype(np.float16)}
    return {'codes': packed.astype(np.float16 if precision == 'fp16' else np.float32)}


def _codes_from_stored(codes: np.ndarray, scales=None) -> np.ndarray:
    """Inverse of :func:`_stored_codes`: float32 codes (M, L, C)."""
    codes = codes.astype(np.float32)
    if scales is not None:
        codes *= scales.astype(np.float32)[..., None]
    return codes


def as_stored(codes: np.ndarray, code_mask: np.ndarray, precision: str) -> np.ndarray:
    """
    Return codes (V, K, L, C) as a file of ``precision`` gives them back.

    Mapping hands these to its caller, so a map scores the same in memory as loaded from its
    file (int8 and fp16 rounding moves a few borderline queries).
    """
    if precision not in CODE_PRECISIONS:
        raise ValueError(f'code precision must be one of {CODE_PRECISIONS}')
    stored = _stored_codes(codes[code_mask], precision)
    rounded = np.zeros_like(codes, dtype=np.float32)
    rounded[code_mask] = _codes_from_stored(stored['codes'], stored.get('code_scales'))
    return rounded


@dataclass
class NeuralMap:
    """Codes of every voxel plus what localization needs around them."""

    grid: VoxelGrid
    codes: np.ndarray          # (V, K, L, C) float32 (zeros where masked)
    weights: np.ndarray        # (V, K, L) float32 importance weights
    code_mask: np.ndarray      # (V, K) bool, False for pruned/unused code slots
    positions: np.ndarray      # (V, K, 3) float32 code positions in voxel units
    vocabulary: Vocabulary
    voxel_histograms: np.ndarray  # (V, W) float32 tf-idf word histograms
    decoder_config: DecoderConfig
    decoder_hash: str
    feature_config: FeatureConfig
    info: dict = field(default_factory=dict)
    code_precision: str = 'fp16'

    @property
    def kept_codes(self) -> int:
        """Count stored code slots (each holds one code per layer and a position)."""
        return int(self.code_mask.sum())

    def save(self, path) -> int:
        """Write atomically; returns the file size in bytes."""
        if self.code_precision not in CODE_PRECISIONS:
            raise ValueError(f'code precision must be one of {CODE_PRECISIONS}')
        kept = self.code_mask
        for name, values in (('codes', self.codes[kept]),
                             ('importance weights', self.weights[kept]),
                             ('code positions', self.positions[kept])):
            if not np.all(np.isfinite(values)):
                # Never replace a good map by one that cannot load: optimisation diverged.
                raise ValueError(f'refusing to write {path}: its {name} are not finite '
                                 f'(mapping diverged; lower importance_l1 or learning_rate)')
        packed = self.codes[kept]                                   # (M, L, C)
        tensors = {
            'voxel_indices': self.grid.indices.astype(np.int32),
            'voxel_anchors': self.grid.anchors.astype(np.float32),
            'code_mask': np.packbits(kept.reshape(-1)),
            'code_weights': self.weights[kept].astype(np.float16),
            'code_positions': self.positions[kept].astype(np.float16),
            'vocabulary': self.vocabulary.words.astype(np.float16),
            'vocabulary_idf': self.vocabulary.idf.astype(np.float32),
            'voxel_histograms': self.voxel_histograms.astype(np.float16),
        }
        tensors.update(_stored_codes(packed, self.code_precision))
        metadata = {
            'kind': MAP_KIND, 'format_version': FORMAT_VERSION,
            'method': 'neural',
            'decoder': {'hash': self.decoder_hash, 'config': self.decoder_config.to_dict()},
            'features': self.feature_config.to_dict(),
            'grid': {'origin': [float(v) for v in self.grid.origin],
                     'voxel_size': float(self.grid.voxel_size), 'voxels': len(self.grid),
                     'codes_per_voxel': int(self.codes.shape[1])},
            'code_precision': self.code_precision,
            'info': self.info,
        }
        return write_tensor_file(path, tensors, metadata)

    @classmethod
    def load(cls, path) -> 'NeuralMap':
        """Read and validate a map file; raises MapFormatError with the reason."""
        tensors, meta = read_tensor_file(path, MAP_KIND, {FORMAT_VERSION})
        try:
            decoder_config = DecoderConfig.from_dict(meta['decoder']['config'])
            feature_config = FeatureConfig.from_dict(meta['features'])
            grid_meta = meta['grid']
            voxels = int(grid_meta['voxels'])
            per_voxel = int(grid_meta['codes_per_voxel'])
            voxel_size = float(grid_meta['voxel_size'])
            origin = np.array(grid_meta['origin'], dtype=np.float64).reshape(3)
            precision = meta['code_precision']
            decoder_hash = str(meta['decoder']['hash'])
        except (KeyError, TypeError, ValueError) as error:
            raise MapFormatError(f'{path}: incomplete map metadata ({error})')
        mismatch = descriptor_mismatch(feature_config.kind, decoder_config.descriptor_dim)
        if mismatch:
            raise MapFormatError(f'{path}: {mismatch}')
        if precision not in CODE_PRECISIONS or voxels <= 0 or per_voxel <= 0 or \
                not np.isfinite(voxel_size) or voxel_size <= 0 or not np.all(np.isfinite(origin)):
            raise MapFormatError(f'{path}: invalid grid or precision in metadata')
        layers, code_dim = decoder_config.layers, decoder_config.code_dim
        # The sizes come from the file: check what they would allocate before allocating it.
        dense_bytes = voxels * per_voxel * layers * (code_dim + 4) * 4
        if per_voxel > MAX_CODES_PER_VOXEL or dense_bytes > MAX_DENSE_BYTES:
            raise MapFormatError(f'{path}: {voxels} voxels x {per_voxel} codes would take '
                                 f'{dense_bytes / 1e9:.1f} GB in memory; not a map this '
                                 f'package wrote (limit {MAX_DENSE_BYTES / 1e9:.0f} GB)')
        indices = require(tensors, 'voxel_indices', (voxels, 3), [np.int32], path)
        anchors = require(tensors, 'voxel_anchors', (voxels, 3), [np.float32], path)
        bits = require(tensors, 'code_mask', (None,), [np.uint8], path)
        total = voxels * per_voxel
        if len(bits) != (total + 7) // 8:
            raise MapFormatError(f'{path}: code mask has the wrong size')
        mask = np.unpackbits(bits)[:total].astype(bool).reshape(voxels, per_voxel)
        kept = int(mask.sum())
        if not mask.any(axis=1).all():
            raise MapFormatError(f'{path}: a voxel has no codes left')
        stored_dtype = {'fp32': np.float32, 'fp16': np.float16, 'int8': np.int8}[precision]
        packed = require(tensors, 'codes', (kept, layers, code_dim), [stored_dtype], path)
        scales = None
        if precision == 'int8':
            scales = require(tensors, 'code_scales', (kept, layers), [np.float16], path)
        packed = _codes_from_stored(packed, scales)
        weights_packed = require(tensors, 'code_weights', (kept, layers), [np.float16], path)
        positions_packed = require(tensors, 'code_positions', (kept, 3), [np.float16], path)
        words = require(tensors, 'vocabulary', (None, decoder_config.descriptor_dim),
                        [np.float16], path)
        idf = require(tensors, 'vocabulary_idf', (len(words),), [np.float32], path)
        histograms = require(tensors, 'voxel_histograms', (voxels, len(words)), [np.float16],
                             path)
        codes = np.zeros((voxels, per_voxel, layers, code_dim), np.float32)
        codes[mask] = packed
        weights = np.zeros((voxels, per_voxel, layers), np.float32)
        weights[mask] = weights_packed.astype(np.float32)
        positions = np.zeros((voxels, per_voxel, 3), np.float32)
        positions[mask] = positions_packed.astype(np.float32)
        grid = VoxelGrid(origin, voxel_size, indices.copy(), anchors.copy())
        return cls(grid, codes, weights, mask, positions,
                   Vocabulary(words.astype(np.float32), idf.copy()),
                   histograms.astype(np.float32), decoder_config, decoder_hash,
                   feature_config, info_of(meta, path), precision)
