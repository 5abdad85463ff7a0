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

"""Saving and loading decoder weights (safetensors + JSON metadata, never pickle)."""

from pathlib import Path

import numpy as np
import torch

from neumap_ros.core.decoder import decoder_hash, DecoderConfig, NeuMapDecoder
from neumap_ros.core.map_io import MapFormatError, read_tensor_file, write_tensor_file

WEIGHTS_KIND = 'neumap.decoder'
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / 'weights'
SHIPPED_WEIGHTS = WEIGHTS_DIR / 'decoder.safetensors'
# One shipped decoder per keypoint kind: a decoder reads one kind of descriptor only.
SHIPPED_BY_FEATURE = {'sift': SHIPPED_WEIGHTS, 'orb': WEIGHTS_DIR / 'decoder_orb.safetensors'}


def save_decoder(path, decoder: NeuMapDecoder, info: dict = None) -> str:
    """Write fp32 weights atomically; returns the decoder hash recorded in the file."""
    tensors = {name: t.detach().to('cpu', torch.float32).numpy()
               for name, t in decoder.state_dict().items()}
    identity = decoder_hash(decoder)
    write_tensor_file(path, tensors, {'kind': WEIGHTS_KIND, 'format_version': FORMAT_VERSION,
                                      'config': decoder.config.to_dict(), 'hash': identity,
                                      'info': info or {}})
    return identity


def load_decoder(path=None, device='cpu', feature_kind: str = 'sift') -> tuple:
    """
    Load ``(decoder, metadata)``.

    Without ``path``, the decoder shipped with the package for ``feature_kind`` keypoints.
    """
    if path:
        path = Path(path)
    elif feature_kind in SHIPPED_BY_FEATURE:
        path = SHIPPED_BY_FEATURE[feature_kind]
    else:
        raise ValueError(f'no decoder ships for {feature_kind!r} keypoints; known: '
                         f'{sorted(SHIPPED_BY_FEATURE)}')
    tensors, meta = read_tensor_file(path, WEIGHTS_KIND, {FORMAT_VERSION})
    try:
        config = DecoderConfig.from_dict(meta['config'])
    except (KeyError, TypeError, ValueError) as error:
        raise MapFormatError(f'{path}: invalid decoder configuration ({error})')
    decoder = NeuMapDecoder(config)
    expected = decoder.state_dict()
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        raise MapFormatError(f'{path}: weights do not fit the decoder (missing {missing[:3]}, '
                             f'unexpected {extra[:3]})')
    state = {}
    for name, reference in expected.items():
        array = tensors[name]
        if tuple(array.shape) != tuple(reference.shape) or array.dtype != np.float32 or \
                not np.all(np.isfinite(array)):
            raise MapFormatError(f'{path}: tensor {name} has shape {array.shape}/{array.dtype},'
                                 f' expected {tuple(reference.shape)} float32 and finite')
        state[name] = torch.from_numpy(array.copy())
    decoder.load_state_dict(state)
    if meta.get('hash') and meta['hash'] != decoder_hash(decoder):
        raise MapFormatError(f'{path}: weights do not match their recorded hash (corrupt file)')
    decoder.eval().requires_grad_(False)
    return decoder.to(device), meta


def default_model_card(weights_path) -> Path:
    """
    Return where the model card of ``weights_path`` goes unless one is named.

    Beside the weights, named after them as the shipped pairs are (``decoder.safetensors`` ->
    ``MODEL_CARD.md``, ``decoder_orb.safetensors`` -> ``MODEL_CARD_orb.md``, ``x.safetensors``
    -> ``MODEL_CARD_x.md``), so training a second decoder in the same folder keeps the first
    one's card.
    """
    weights_path = Path(weights_path)
    stem = weights_path.name.split('.')[0]
    suffix = stem[len('decoder'):] if stem.startswith('decoder') else f'_{stem}'
    if suffix and not suffix.startswith(('_', '-')):
        suffix = f'_{suffix}'
    return weights_path.with_name(f'MODEL_CARD{suffix}.md')


def write_model_card(path, weights_name: str, digest: str, info: dict,
                     recipe: str = 'neumap train --config config/pretrain.yaml --out '
                     'neumap_ros/weights/decoder.safetensors') -> None:
    """Write the Markdown model card that ships next to a decoder's weights."""
    import json
    import re

    from neumap_ros.core.map_io import atomic_write_bytes
    training = info.get('training', {})
    parent = info.get('initialised_from')
    if parent and not re.search(r'(^|\s)--init(\s|=)', recipe):
        recipe += ' --init PARENT.safetensors'   # the parent's file is named by its hash below
    lines = [
        '# NeuMap decoder: model card', '',
        f'- weights: `{weights_name}` (safetensors, fp32)',
        f'- decoder hash (SHA-256 of config and weights, recorded in every map): `{digest}`',
        f'- architecture: {json.dumps(training.get("decoder", {}))}',
        f'- training processes: {info.get("processes", 1)}; data preparation '
        f'{info.get("data_seconds", "?")} s; training {info.get("train_seconds", "?")} s '
        'on the CPU this recipe was run on',
        f'- final loss (step, coordinate [voxel units], membership BCE): '
        f'{info.get("final_loss")}', '',
        '## Data', '',
        "Procedural scenes rendered by `neumap_ros.core.synthetic` (this project's own ray "
        'caster; textures are procedural or derived from the photographs scikit-image ships). '
        'No real dataset was used, so every real scene is unseen by this decoder.', '',
        f'- scenes: {json.dumps(info.get("scenes", {}))}',
        f'- generator settings: {json.dumps(info.get("data", {}))}',
        f'- keypoints: {json.dumps(info.get("features", {}))}',
        '- photographs used as textures (as shipped inside the scikit-image wheel): astronaut, '
        'hubble_deep_field, rocket (NASA / SpaceX, public domain); camera, chelsea, coffee, '
        'horse, retina, brick, grass, gravel (CC0); coins, immunohistochemistry, text, '
        'clock_motion (no known copyright restrictions); logo, page, moon (scikit-image, BSD); '
        'motorcycle_left (Middlebury 2014 stereo benchmark, as distributed by scikit-image). '
        'They are cropped, warped and recoloured into surface materials; no image is shipped '
        'with this package.', '',
        '## Recipe', '',
        '```', recipe, '```', '',
        *([f'Fine-tuned from decoder `{parent}` (the `--init` weights above).']
          if parent else []),
        '', f'Training settings: `{json.dumps(training)}`', '',
        '## Intended use and limits', '',
        'Scene-agnostic decoder for codes-only NeuMap mapping of new scenes with '
        f'{str(info.get("features", {}).get("kind", "sift")).upper()} keypoints (the feature '
        'kind above). Maps built with it record its hash and are refused by any other '
        'decoder.', '']
    atomic_write_bytes(path, '\n'.join(lines).encode())
