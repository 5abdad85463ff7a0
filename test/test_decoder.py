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

"""The scene-agnostic decoder: shapes, devices, masking, importance weights, cascade scores."""

import numpy as np
import pytest
import torch

from neumap_ros.core.decoder import decoder_hash, DecoderConfig, NeuMapDecoder, resolve_device
from neumap_ros.core.decoder_weights import load_decoder, SHIPPED_BY_FEATURE, \
    SHIPPED_WEIGHTS
from neumap_ros.core.features import DESCRIPTOR_DIMS
from neumap_ros.core.localizer import decode_pairs, decoding_pairs, similar_size_batches

CONFIG = DecoderConfig(width=32, layers=2, heads=4, ffn_dim=64, code_dim=16, codes_per_voxel=8)


def _inputs(voxels=3, keypoints=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.nn.functional.normalize(
        torch.rand(voxels, keypoints, CONFIG.descriptor_dim, generator=generator), dim=-1)
    codes = torch.randn(voxels, CONFIG.codes_per_voxel, CONFIG.layers, CONFIG.code_dim,
                        generator=generator)
    weights = torch.ones(voxels, CONFIG.codes_per_voxel, CONFIG.layers)
    mask = torch.ones(voxels, CONFIG.codes_per_voxel, dtype=torch.bool)
    positions = torch.rand(voxels, CONFIG.codes_per_voxel, 3, generator=generator) - 0.5
    return vectors, codes, weights, mask, positions


def test_output_shapes_and_attention():
    """Offsets are (V, N, 3), logits (V, N) and first-layer attention (V, N, K)."""
    torch.manual_seed(0)
    decoder = NeuMapDecoder(CONFIG).eval()
    vectors, codes, weights, mask, positions = _inputs()
    offsets, logits, attention = decoder(vectors, codes, weights, mask, positions,
                                         return_attention=True)
    assert offsets.shape == (3, 5, 3)
    assert logits.shape == (3, 5)
    assert attention.shape == (3, 5, CONFIG.codes_per_voxel)
    assert torch.isfinite(offsets).all() and torch.isfinite(logits).all()


def test_masked_codes_are_never_attended():
    """Changing a masked code, or its position, leaves every output unchanged."""
    torch.manual_seed(0)
    decoder = NeuMapDecoder(CONFIG).eval()
    vectors, codes, weights, mask, positions = _inputs()
    mask[:, 3] = False
    with torch.no_grad():
        before = decoder(vectors, codes, weights, mask, positions)
        codes[:, 3] += 100.0
        positions[:, 3] += 50.0
        after = decoder(vectors, codes, weights, mask, positions)
    assert torch.allclose(before[0], after[0]) and torch.allclose(before[1], after[1])


def test_zero_importance_acts_like_pruning():
    """A code whose importance weight is ~0 contributes (almost) nothing, as if masked."""
    torch.manual_seed(0)
    decoder = NeuMapDecoder(CONFIG).eval()
    vectors, codes, weights, mask, positions = _inputs()
    weights[:, 2, :] = 0.0
    masked = mask.clone()
    masked[:, 2] = False
    with torch.no_grad():
        weighted = decoder(vectors, codes, weights, mask, positions)
        pruned = decoder(vectors, codes, torch.ones_like(weights), masked, positions)
    assert torch.allclose(weighted[0], pruned[0], atol=1e-2)
    assert torch.allclose(weighted[1], pruned[1], atol=1e-2)


def test_match_scores_are_the_best_head_averaged_logits():
    """The cascade's cheap scores equal the max of the first layer's head-averaged logits."""
    torch.manual_seed(0)
    decoder = NeuMapDecoder(CONFIG).eval()
    vectors, codes, weights, mask, positions = _inputs(voxels=4, keypoints=6)
    mask[1, :4] = False
    shared = vectors[0]
    with torch.no_grad():
        cache = decoder.code_cache(codes, weights, mask, positions)
        queries = decoder.embed_queries(shared)
        scores = decoder.match_scores(queries, cache)
        _, _, attention = decoder.decode(queries.unsqueeze(0).expand(4, -1, -1), cache,
                                         return_attention=True)
    assert scores.shape == (4, 6)
    assert torch.allclose(scores, attention.amax(dim=-1), atol=1e-4)


def test_cache_selection_matches_full_decoding():
    """Decoding a voxel through a selected cache equals decoding it in the full batch."""
    torch.manual_seed(0)
    decoder = NeuMapDecoder(CONFIG).eval()
    vectors, codes, weights, mask, positions = _inputs(voxels=3)
    with torch.no_grad():
        cache = decoder.code_cache(codes, weights, mask, positions)
        queries = decoder.embed_queries(vectors)
        full = decoder.decode(queries, cache)
        one = decoder.decode(queries[2:3], cache.select(torch.tensor([2])))
    assert torch.allclose(full[0][2], one[0][0], atol=1e-6)


def test_batched_pair_decoding_equals_one_voxel_at_a_time():
    """Padded, batched decoding of (voxel, keypoint) pairs gives each pair's own result."""
    torch.manual_seed(0)
    decoder = NeuMapDecoder(CONFIG).eval()
    voxels, keypoints = 7, 40
    _, codes, weights, mask, positions = _inputs(voxels=voxels)
    mask[3, 5:] = False                       # a voxel with fewer valid codes
    vectors = torch.nn.functional.normalize(torch.rand(keypoints, CONFIG.descriptor_dim), dim=-1)
    rng = np.random.default_rng(0)
    # Very uneven pair counts per voxel (one voxel gets none), two hypotheses per keypoint.
    first = rng.choice(voxels - 1, keypoints, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    best = np.stack([first, (first + 1 + rng.integers(0, voxels - 2, keypoints)) % (voxels - 1)])
    rows, keypoint_ids = decoding_pairs(best)
    assert np.all(np.diff(rows) >= 0) and len(rows) == 2 * keypoints
    assert set(zip(rows.tolist(), keypoint_ids.tolist())) == \
        {(int(best[h, k]), k) for h in range(2) for k in range(keypoints)}
    with torch.no_grad():
        cache = decoder.code_cache(codes, weights, mask, positions)
        queries = decoder.embed_queries(vectors)
        offsets, probabilities = decode_pairs(decoder, queries, cache, rows, keypoint_ids)
        for row in range(voxels):
            ids = keypoint_ids[rows == row]
            if len(ids) == 0:
                continue
            one, logits = decoder.decode(queries[torch.from_numpy(ids)].unsqueeze(0),
                                         cache.select(torch.tensor([row])))
            np.testing.assert_allclose(offsets[rows == row], one[0].numpy(), atol=1e-5)
            np.testing.assert_allclose(probabilities[rows == row],
                                       torch.sigmoid(logits[0]).numpy(), atol=1e-6)


def test_similar_size_batches_bound_the_padding():
    """Every non-empty row is in exactly one batch, and no batch pads a row below min_fill."""
    counts = np.array([0, 100, 7, 61, 59, 3, 0, 40, 100, 2])
    batches = similar_size_batches(counts, min_fill=0.6)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == [1, 2, 3, 4, 5, 7, 8, 9]
    for batch in batches:
        assert counts[batch].min() >= 0.6 * counts[batch].max()
    assert len(similar_size_batches(np.zeros(4, np.int64))) == 0
    assert len(similar_size_batches(np.full(5, 9), min_fill=0.6)) == 1


def test_hash_changes_with_any_weight():
    """The decoder hash identifies the exact weights."""
    torch.manual_seed(0)
    decoder = NeuMapDecoder(CONFIG)
    first = decoder_hash(decoder)
    assert first == decoder_hash(decoder)
    with torch.no_grad():
        decoder.head.bias[0] += 1e-3
    assert decoder_hash(decoder) != first


def test_device_resolution():
    """'auto' falls back to the CPU; CUDA without a GPU and unknown names are errors."""
    assert resolve_device('cpu').type == 'cpu'
    assert resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='CUDA'):
            resolve_device('cuda')
    with pytest.raises(ValueError):
        resolve_device('tpu')


def test_shipped_decoder_loads_and_matches_its_hash():
    """The package ships decoder weights that load, validate and decode."""
    assert SHIPPED_WEIGHTS.is_file(), 'the package must ship neumap_ros/weights/'
    decoder, metadata = load_decoder()
    assert metadata['hash'] == decoder_hash(decoder)
    assert not any(p.requires_grad for p in decoder.parameters())
    assert (SHIPPED_WEIGHTS.parent / 'MODEL_CARD.md').is_file()
    assert SHIPPED_WEIGHTS.stat().st_size < 8 * 1024 * 1024


def test_model_cards_are_named_after_their_weights(tmp_path):
    """Each shipped decoder's card is its default card; other weights get a card of their own."""
    from neumap_ros.core.decoder_weights import default_model_card
    for path in SHIPPED_BY_FEATURE.values():
        assert default_model_card(path).is_file(), path
    assert default_model_card(SHIPPED_BY_FEATURE['orb']).name == 'MODEL_CARD_orb.md'
    assert default_model_card(tmp_path / 'decoder.safetensors') == tmp_path / 'MODEL_CARD.md'
    assert default_model_card(tmp_path / 'run2.safetensors') == tmp_path / 'MODEL_CARD_run2.md'
    assert default_model_card('decoderv2.safetensors').name == 'MODEL_CARD_v2.md'


def test_a_decoder_ships_for_each_keypoint_kind():
    """SIFT and ORB each have their own shipped decoder, chosen by the keypoint kind."""
    for kind, path in SHIPPED_BY_FEATURE.items():
        assert path.is_file() and path.stat().st_size < 8 * 1024 * 1024, path
        decoder, metadata = load_decoder(feature_kind=kind)
        assert decoder.config.descriptor_dim == DESCRIPTOR_DIMS[kind]
        assert metadata['info']['features']['kind'] == kind
        assert metadata['hash'] == decoder_hash(decoder)
    orb_card = (SHIPPED_BY_FEATURE['orb'].parent / 'MODEL_CARD_orb.md').read_text()
    assert load_decoder(feature_kind='orb')[1]['hash'] in orb_card
    assert 'config/pretrain_orb.yaml' in orb_card
    with pytest.raises(ValueError, match="no decoder ships for 'surf'"):
        load_decoder(feature_kind='surf')
