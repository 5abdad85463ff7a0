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
The scene-agnostic NeuMap decoder, in one file.

Queries are keypoint descriptors; each of ``layers`` pre-LayerNorm blocks cross-attends from the
queries to that layer's latent codes of one voxel, then applies a feed-forward layer. A linear
head reads the 3D offset of the keypoint from the voxel anchor (in voxel-size units, so one
decoder serves rooms and streets) and a logit for "this keypoint lies in this voxel".

Codes live in the map, not here. Each code has an importance weight that scales its share of
attention (pruning drops codes whose weight fell to ~0) and a validity mask. A small code
initialiser turns a voxel's landmarks (mean descriptor and position of its longest feature
tracks) into starting codes, so mapping a new scene starts near a solution and only has to
refine the codes.
"""

from dataclasses import asdict, dataclass, fields
import hashlib
import math

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from neumap_ros.core.settings import check_settings


@dataclass(frozen=True)
class DecoderConfig:
    """Architecture; stored with the weights and in every map."""

    descriptor_dim: int = 128
    width: int = 128
    layers: int = 3
    heads: int = 4
    ffn_dim: int = 256
    code_dim: int = 64
    codes_per_voxel: int = 64
    offset_frequencies: int = 4

    def __post_init__(self):
        """Refuse sizes no decoder has: they come from weight and map files."""
        at_least = {f.name: 1 for f in fields(self)}
        at_least['offset_frequencies'] = 0
        check_settings(self, at_least=at_least,
                       at_most={'descriptor_dim': 1024, 'width': 4096, 'layers': 64,
                                'heads': 64, 'ffn_dim': 16384, 'code_dim': 4096,
                                'codes_per_voxel': 4096, 'offset_frequencies': 32})

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> 'DecoderConfig':
        """Inverse of :meth:`to_dict`; unknown keys are an error (they change the model)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f'unknown decoder settings {sorted(unknown)}')
        return cls(**{k: int(v) for k, v in data.items()})


def fourier_features(offsets: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Sin/cos encoding of normalised offsets so the initialiser sees fine position detail."""
    scales = 2.0 ** torch.arange(frequencies, device=offsets.device, dtype=offsets.dtype)
    angles = offsets.unsqueeze(-1) * scales * math.pi
    encoded = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)
    return torch.cat([offsets, encoded], dim=-1)


class CrossAttentionBlock(nn.Module):
    """
    Pre-LN cross-attention from keypoint queries to one voxel's codes, then a feed-forward.

    Attention logits are cosine similarities times a learned per-head temperature, so a query
    can pick out the one code describing its landmark from the start of training. Besides the
    attended values, each head reports the log-sum-exp of its logits: how well the keypoint
    matched any code of this voxel, the evidence the membership head needs.
    """

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.heads = config.heads
        self.norm_attention = nn.LayerNorm(config.width)
        self.query = nn.Linear(config.width, config.width)
        self.key = nn.Linear(config.code_dim, config.width)
        self.value = nn.Linear(config.code_dim, config.width)
        self.log_temperature = nn.Parameter(torch.full((config.heads, 1, 1), math.log(10.0)))
        self.project = nn.Linear(config.width + config.heads, config.width)
        self.norm_ffn = nn.LayerNorm(config.width)
        self.ffn = nn.Sequential(nn.Linear(config.width, config.ffn_dim), nn.GELU(),
                                 nn.Linear(config.ffn_dim, config.width))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, count, width = x.shape
        return x.view(batch, count, self.heads, width // self.heads).transpose(1, 2)

    def keys_values(self, codes: torch.Tensor) -> tuple:
        """Compute unit keys and values per head of codes (V, K, code_dim), once per map."""
        return (F.normalize(self._split_heads(self.key(codes)), dim=-1),
                self._split_heads(self.value(codes)))

    def match_scores(self, x, keys, bias):
        """
        Best head-averaged attention logit of each query against each voxel's codes.

        ``x`` is (N, width), ``keys`` (V, H, K, d), ``bias`` (V, 1, 1, K); returns (V, N). The
        head average is one matrix product over concatenated heads, so scoring every voxel of
        a map costs little more than a single attention layer; no values, no feed-forward.
        """
        heads, count = self.heads, x.shape[0]
        query = F.normalize(self.query(self.norm_attention(x)).view(count, heads, -1), dim=-1)
        temperature = self.log_temperature.clamp(max=math.log(100.0)).exp().view(1, heads, 1)
        query = (query * temperature / heads).reshape(count, -1)
        voxels, _, codes, _ = keys.shape
        flat_keys = keys.permute(0, 2, 1, 3).reshape(voxels, codes, -1)
        logits = torch.matmul(query, flat_keys.transpose(1, 2)) + bias[:, 0].to(query.dtype)
        return logits.amax(dim=-1)

    def forward(self, x, keys, values, bias, return_logits: bool = False):
        """
        Update queries x (V, N, width) from keys/values (V, H, K, d); bias masks codes.

        With ``return_logits`` also return the head-averaged attention logits (V, N, K).
        """
        query = F.normalize(self._split_heads(self.query(self.norm_attention(x))), dim=-1)
        temperature = self.log_temperature.clamp(max=math.log(100.0)).exp()
        logits = temperature * (query @ keys.transpose(-1, -2)) + bias.to(query.dtype)
        strength = torch.logsumexp(logits, dim=-1)                    # (V, H, N)
        attended = torch.softmax(logits, dim=-1) @ values              # (V, H, N, d)
        batch, _, count, _ = attended.shape
        merged = torch.cat([attended.transpose(1, 2).reshape(batch, count, -1),
                            strength.transpose(1, 2) / 10.0], dim=-1)
        x = x + self.project(merged)
        x = x + self.ffn(self.norm_ffn(x))
        return (x, logits.mean(dim=1)) if return_logits else x


@dataclass
class CodeCache:
    """What decoding needs from a set of voxels, computed once per map load."""

    layers: list             # per layer (keys, values, bias): (V, H, K, d) x2, (V, 1, 1, K)
    positions: torch.Tensor  # (V, K, 3) code positions in voxel units

    def select(self, voxels: torch.Tensor) -> 'CodeCache':
        """Return the cache of a subset of voxels (rows in ``voxels`` order)."""
        return CodeCache([(k[voxels], v[voxels], b[voxels]) for k, v, b in self.layers],
                         self.positions[voxels])

    def select_for_scoring(self, voxels: torch.Tensor) -> 'CodeCache':
        """Return a subset with the first layer only: all :meth:`match_scores` reads."""
        keys, values, bias = self.layers[0]
        return CodeCache([(keys[voxels], values[:0], bias[voxels])], self.positions[voxels])


class NeuMapDecoder(nn.Module):
    """
    Decode keypoint descriptors against voxel codes into offsets and membership logits.

    Every code slot of a voxel has a position (where its landmark is, in voxel units) and one
    latent code per layer. The predicted offset is the position read out with the first
    layer's attention plus a regressed correction, so a sharp match yields a precise point.
    """

    def __init__(self, config: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.config = config
        self.embed = nn.Sequential(nn.Linear(config.descriptor_dim, config.width), nn.GELU(),
                                   nn.Linear(config.width, config.width))
        self.blocks = nn.ModuleList(CrossAttentionBlock(config) for _ in range(config.layers))
        self.norm_out = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, 4)
        init_inputs = config.descriptor_dim + 3 * (1 + 2 * config.offset_frequencies)
        self.code_initializer = nn.Sequential(
            nn.Linear(init_inputs, config.width), nn.GELU(),
            nn.Linear(config.width, config.layers * config.code_dim))

    def initial_codes(self, landmark_vectors: torch.Tensor, landmark_offsets: torch.Tensor):
        """Codes (..., K, layers, code_dim) from landmark descriptors and offsets."""
        features = torch.cat([landmark_vectors,
                              fourier_features(landmark_offsets,
                                               self.config.offset_frequencies)], dim=-1)
        codes = self.code_initializer(features)
        return codes.view(*codes.shape[:-1], self.config.layers, self.config.code_dim)

    def code_cache(self, codes: torch.Tensor, weights: torch.Tensor, code_mask: torch.Tensor,
                   positions: torch.Tensor) -> CodeCache:
        """
        Keys, values and attention biases of codes (V, K, L, C).

        A code's importance weight (V, K, L) scales its share of attention (a log-prior on
        its logit), so a weight driven to zero by the L1 penalty removes the code exactly as
        pruning does. Masked slots (V, K) get -inf. ``positions`` is (V, K, 3).
        """
        prior = torch.log(weights.abs().clamp(min=1e-4))
        prior = prior.masked_fill(~code_mask.unsqueeze(-1), float('-inf'))
        layers = []
        for layer, block in enumerate(self.blocks):
            keys, values = block.keys_values(codes[:, :, layer])
            layers.append((keys, values, prior[:, None, None, :, layer].to(keys.dtype)))
        return CodeCache(layers, positions)

    def embed_queries(self, vectors: torch.Tensor) -> torch.Tensor:
        """Query embeddings of descriptor vectors (..., descriptor_dim)."""
        return self.embed(vectors)

    def match_scores(self, queries: torch.Tensor, cache: CodeCache) -> torch.Tensor:
        """First-layer match scores (V, N) of embedded queries (N, width) against V voxels."""
        keys, _, bias = cache.layers[0]
        return self.blocks[0].match_scores(queries, keys, bias)

    def decode(self, queries: torch.Tensor, cache: CodeCache, return_attention: bool = False):
        """
        Offsets (V, N, 3) and logits (V, N) for embedded queries (V, N, width).

        With ``return_attention`` also return the first layer's attention logits (V, N, K),
        which training supervises to point at the keypoint's own landmark code.
        """
        x, attention = self.blocks[0](queries, *cache.layers[0], return_logits=True)
        for block, (keys, values, bias) in zip(self.blocks[1:], cache.layers[1:]):
            x = block(x, keys, values, bias)
        read = torch.softmax(attention, dim=-1) @ cache.positions.to(attention.dtype)
        out = self.head(self.norm_out(x))
        offsets = read + out[..., :3]
        if return_attention:
            return offsets, out[..., 3], attention
        return offsets, out[..., 3]

    def forward(self, vectors, codes, weights, code_mask, positions,
                return_attention: bool = False):
        """Training path: descriptor vectors (V, N, D) against codes (V, K, L, C) of V voxels."""
        return self.decode(self.embed_queries(vectors),
                           self.code_cache(codes, weights, code_mask, positions),
                           return_attention)


def decoder_hash(decoder: NeuMapDecoder) -> str:
    """SHA-256 over the configuration and parameter values: the identity maps refer to."""
    digest = hashlib.sha256(repr(sorted(decoder.config.to_dict().items())).encode())
    for name, tensor in sorted(decoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to('cpu', torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is an error."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError('device "cuda" requested but CUDA is not available')
    if device != 'cpu' and not device.startswith('cuda'):
        raise ValueError(f'device must be auto, cpu or cuda[:N], got {device!r}')
    return torch.device(device)
