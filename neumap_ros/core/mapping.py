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
Codes-only mapping: optimise a new scene's codes while the decoder stays frozen.

Steps: voxelise the mapping points, initialise each voxel's codes from clustered keypoint
statistics, optimise codes (and their importance weights, with an optional L1 penalty that
drives redundant codes to zero), prune codes whose weight fell below a threshold, fine-tune the
survivors, and build the retrieval index. Progress, a seed, an iteration/time budget and
resumable checkpoints are built in. A checkpoint records the identity of its run
(:func:`checkpoint_identity`) and is resumed only by the same run; a resumed run ends with the
codes an uninterrupted one would have (batches are drawn per step, optimiser state is saved).
"""

from dataclasses import asdict, dataclass
import hashlib
import io
import json
import logging
from pathlib import Path
import time
from typing import Callable, Optional

import numpy as np
import torch

from neumap_ros.core.checkpoints import check_identity, CheckpointError, \
    load_checkpoint, unreadable  # noqa: F401 - CheckpointError is part of this API
from neumap_ros.core.decoder import decoder_hash, NeuMapDecoder
from neumap_ros.core.features import descriptor_mismatch, FeatureConfig
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.neural_map import as_stored, CODE_PRECISIONS, NeuralMap
from neumap_ros.core.observations import Observations
from neumap_ros.core.progress import progress_bar
from neumap_ros.core.retrieval import document_histograms, train_vocabulary
from neumap_ros.core.settings import check_settings
from neumap_ros.core.track_points import TrackPointOptions, with_track_points
from neumap_ros.core.tracks import build_tracks
from neumap_ros.core.training import decoding_loss, landmark_samples, sample_batch, \
    VoxelSamples, without_masked_slots
from neumap_ros.core.voxels import build_voxel_grid, VoxelGrid

LOG = logging.getLogger(__name__)

CHECKPOINT_KIND = 'neumap.mapping'
CHECKPOINT_VERSION = 1
CHECKPOINT_EVERY = 250   # iterations between checkpoints of a stage
_STAGES = ('optimise', 'finetune', 'done')
_CHECKPOINT_KEYS = {'kind', 'version', 'identity', 'stage', 'codes_done', 'finetune_done',
                    'delta', 'positions', 'importance', 'mask', 'optimizer'}
# It decides when a run stops, never the codes a step computes: a resumed run may change it.
_NOT_IDENTITY = ('time_budget_s',)


@dataclass
class MappingConfig:
    """Settings of codes-only mapping (see README for how the defaults were chosen)."""

    voxel_size: float = 0.5           # metres: rooms (0.5 beat 1.0 on both kitchen splits)
    landmarks_per_voxel: int = 0      # code slots per voxel; 0: the decoder's default
    min_points_per_voxel: int = 100
    min_frames_per_voxel: int = 3
    iterations: int = 1500
    time_budget_s: float = 0.0        # 0: no limit; otherwise stop optimising after this long
    voxels_per_batch: int = 16
    positives_per_voxel: int = 96
    negatives_per_voxel: int = 64
    learning_rate: float = 3e-3
    importance_l1: float = 0.0        # L1 weight on code importances (enables pruning)
    prune_threshold: float = 0.0      # prune codes whose |weight| is below this (0: no pruning)
    finetune_iterations: int = 0
    code_precision: str = 'int8'       # half of fp16 at its recall; fp32 is a little better
    # Landmarks fitted to their keypoints' rays and depths instead of the depth mean: more
    # precise near the mapped views, less so from new ones (README), so off by default.
    refine_track_points: bool = False
    track_point_depth_sigma_m: float = 0.05
    vocabulary_size: int = 256
    seed: int = 0

    def __post_init__(self):
        """Refuse wrong types and ranges (from YAML, flags or presets) now, by name."""
        check_settings(
            self,
            at_least={'landmarks_per_voxel': 0, 'min_points_per_voxel': 1,
                      'min_frames_per_voxel': 1, 'iterations': 0, 'time_budget_s': 0.0,
                      'voxels_per_batch': 1, 'positives_per_voxel': 1, 'negatives_per_voxel': 0,
                      'importance_l1': 0.0, 'prune_threshold': 0.0, 'finetune_iterations': 0,
                      'vocabulary_size': 2},
            above={'voxel_size': 0.0, 'learning_rate': 0.0, 'track_point_depth_sigma_m': 0.0})

    def to_dict(self) -> dict:
        """JSON-friendly form (stored in the map's info)."""
        return asdict(self)


class CodeOptimizer:
    """
    Per-voxel code residuals, positions and importance weights, optimised with SparseAdam.

    Only the voxels of a batch get gradients; SparseAdam updates just those rows, so voxels
    that were not sampled are left exactly as they were.
    """

    def __init__(self, initial_codes: torch.Tensor, positions: torch.Tensor,
                 code_mask: torch.Tensor, lr: float):
        self.initial = initial_codes                     # (V, K, L, C)
        self.mask = code_mask                            # (V, K)
        voxels, slots, layers = initial_codes.shape[:3]
        self.delta = torch.nn.Embedding(voxels, initial_codes[0].numel(), sparse=True)
        torch.nn.init.zeros_(self.delta.weight)
        self.positions = torch.nn.Embedding.from_pretrained(
            positions.reshape(voxels, -1).clone(), freeze=False, sparse=True)
        self.importance = torch.nn.Embedding(voxels, slots * layers, sparse=True)
        torch.nn.init.ones_(self.importance.weight)
        self.optimizer = torch.optim.SparseAdam(
            [self.delta.weight, self.positions.weight, self.importance.weight], lr=lr)

    def codes(self, voxels: torch.Tensor) -> tuple:
        """Codes (B, K, L, C), weights (B, K, L) and positions (B, K, 3) of some voxels."""
        shape = self.initial.shape[1:]
        codes = self.initial[voxels] + self.delta(voxels).view(-1, *shape)
        weights = self.importance(voxels).view(-1, *shape[:2])
        positions = self.positions(voxels).view(-1, shape[0], 3)
        return codes, weights, positions

    def all_codes(self) -> tuple:
        """Return the codes, weights and positions of every voxel (numpy)."""
        with torch.no_grad():
            codes, weights, positions = self.codes(torch.arange(self.initial.shape[0]))
        return codes.numpy(), weights.numpy(), positions.numpy()

    def state_dict(self) -> dict:
        """Tensors and optimiser moments for a resumable checkpoint."""
        return {'delta': self.delta.weight.detach().clone(),
                'positions': self.positions.weight.detach().clone(),
                'importance': self.importance.weight.detach().clone(),
                'mask': self.mask.clone(), 'optimizer': self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """
        Restore from :meth:`state_dict`; ValueError when its shapes or types do not fit.

        Nothing is changed unless everything fits.
        """
        parameters = {'delta': self.delta.weight, 'positions': self.positions.weight,
                      'importance': self.importance.weight}
        for name, parameter in parameters.items():
            if state[name].shape != parameter.shape or not state[name].is_floating_point():
                raise ValueError(f'{name} has shape {tuple(state[name].shape)}, '
                                 f'not {tuple(parameter.shape)}')
        if state['mask'].shape != self.mask.shape or state['mask'].dtype != torch.bool:
            raise ValueError('the code mask does not fit')
        optimizer = state['optimizer']
        if not _moments_fit(optimizer, [p.shape for p in parameters.values()]):
            raise ValueError('the optimiser state does not fit')
        backup = self.optimizer.state_dict()
        try:
            self.optimizer.load_state_dict(optimizer)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
            self.optimizer.load_state_dict(backup)
            raise ValueError(f'the optimiser state does not fit ({error})') from None
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(state[name])
        self.mask = state['mask'].clone()


def _moments_fit(optimizer, shapes: list) -> bool:
    """Return whether a SparseAdam state dict holds moments of parameters of these shapes."""
    moments = optimizer.get('state') if isinstance(optimizer, dict) else None
    if not isinstance(moments, dict):
        return False
    for key, entry in moments.items():
        if type(key) is not int or not 0 <= key < len(shapes) or not isinstance(entry, dict) \
                or not isinstance(entry.get('step'), (int, float, torch.Tensor)):
            return False
        for name in ('exp_avg', 'exp_avg_sq'):
            value = entry.get(name)
            if not isinstance(value, torch.Tensor) or not value.is_floating_point() or \
                    value.shape != shapes[key]:
                return False
    return True


def _optimise(decoder: NeuMapDecoder, samples: VoxelSamples, codes: CodeOptimizer,
              config: MappingConfig, iterations: int, start: int, deadline: Optional[float],
              stage_key: int, progress: bool, label: str, checkpoint=None,
              history: Optional[list] = None, report=None) -> int:
    """Run iterations ``start`` .. ``iterations - 1``; return how many are done (all stages)."""
    voxels = len(samples.grid)
    bar = progress_bar(range(start, iterations), progress, desc=label, unit='it',
                       initial=start, total=iterations)
    step = start
    for step in bar:
        if deadline is not None and time.monotonic() > deadline:
            LOG.info('%s: time budget reached after %d iterations', label, step)
            break
        # One generator per step: a resumed run draws the batches an uninterrupted one would.
        rng = np.random.default_rng([config.seed, stage_key, step])
        chosen = rng.choice(voxels, min(config.voxels_per_batch, voxels), replace=False)
        batch = sample_batch(samples, chosen, config.positives_per_voxel,
                             config.negatives_per_voxel, rng)
        voxel_codes, weights, positions = codes.codes(batch.voxels)
        offsets, logits, attention = decoder(batch.vectors, voxel_codes, weights,
                                             codes.mask[batch.voxels], positions,
                                             return_attention=True)
        loss, parts = decoding_loss(offsets, logits, batch, attention)
        if config.importance_l1 > 0:
            loss = loss + config.importance_l1 * weights.abs().mean()
        codes.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        codes.optimizer.step()
        if step % 25 == 0:
            # refresh=False: the bar's own rate limit decides when to redraw.
            bar.set_postfix(coord=f'{parts["coordinate"]:.3f}', bce=f'{parts["membership"]:.3f}',
                            refresh=False)
            if history is not None:
                history.append([label, step, round(loss.item(), 5)])
            if report is not None:
                report(label, step)
        if checkpoint is not None and (step + 1) % CHECKPOINT_EVERY == 0:
            checkpoint(step + 1)   # iterations done: a resumed run starts with the next one
    else:
        step = iterations
    if report is not None:
        report(label, step)
    return step


def require_decoder_fits(decoder: NeuMapDecoder, feature_kind: str) -> None:
    """Raise ValueError, saying what to do, when the decoder cannot read these keypoints."""
    mismatch = descriptor_mismatch(feature_kind, decoder.config.descriptor_dim)
    if mismatch:
        raise ValueError(f'decoder {decoder_hash(decoder)[:12]}: {mismatch}; pass a decoder '
                         f'trained on {feature_kind!r} keypoints (--weights, trained with '
                         f'`neumap train`) or map with --method features')


def mapping_grid(observations: Observations, config: MappingConfig) -> VoxelGrid:
    """Return the voxels a map of these observations gets: those its 3D points support."""
    valid = observations.valid
    return build_voxel_grid(observations.xyz[valid], observations.frame_index[valid],
                            config.voxel_size, config.min_points_per_voxel,
                            config.min_frames_per_voxel)


def frames_digest(names, poses) -> str:
    """SHA-256 over the frame names and camera-to-world poses a map is built from."""
    digest = hashlib.sha256('\n'.join(str(name) for name in names).encode())
    digest.update(np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4).tobytes())
    return digest.hexdigest()


def observations_digest(observations: Observations) -> str:
    """SHA-256 over the keypoints, descriptors and 3D points the codes are fitted to."""
    digest = hashlib.sha256(observations.feature_kind.encode())
    for array in (observations.frame_index, observations.keypoints, observations.descriptors,
                  observations.xyz):
        array = np.ascontiguousarray(array)
        digest.update(f'{array.dtype.str}{array.shape};'.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def checkpoint_identity(decoder_digest: str, feature_config: FeatureConfig,
                        config: MappingConfig, names, poses,
                        observations: Optional[Observations] = None) -> dict:
    """
    Return what a checkpoint must match to be resumed: everything that decides the codes.

    That is the decoder's hash, the feature and mapping settings (not the time budget), the
    frames (names and poses) and, given ``observations``, the keypoints extracted from them.
    Without observations (before feature extraction) the rest can already be checked.
    """
    settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    identity = {'decoder': decoder_digest, 'features': feature_config.to_dict(),
                'mapping': settings, 'frames': frames_digest(names, poses)}
    if observations is not None:
        identity['observations'] = observations_digest(observations)
    # Through JSON: the stored copy must compare equal after a save/load round trip.
    return json.loads(json.dumps(identity, sort_keys=True))


def _valid_structure(state: dict) -> bool:
    counts = (state['codes_done'], state['finetune_done'])
    return (isinstance(state['stage'], str) and state['stage'] in _STAGES
            and all(type(count) is int and count >= 0 for count in counts)
            and all(isinstance(state[name], torch.Tensor) and state[name].dim() == 2
                    for name in ('delta', 'positions', 'importance', 'mask'))
            and isinstance(state['optimizer'], dict))


def read_checkpoint(path, identity: dict) -> Optional[dict]:
    """
    Read a mapping checkpoint and check that it belongs to this run; None when absent.

    ``identity`` (from :func:`checkpoint_identity`) is compared key by key, so a caller may
    check the decoder, settings and frames before extracting features. Any failure raises
    :class:`CheckpointError` in one line: a foreign checkpoint must never put its codes in a
    map of other frames or under another decoder's hash.
    """
    state = load_checkpoint(path, CHECKPOINT_KIND, CHECKPOINT_VERSION, _CHECKPOINT_KEYS,
                            'mapping', _valid_structure)
    if state is not None:
        check_identity(state['identity'], identity, path, 'mapping', ('features', 'mapping'),
                       {'decoder': 'decoder (--weights)', 'frames': 'frames or their poses',
                        'observations': 'keypoints or 3D points of the frames'})
    return state


def build_neural_map(observations: Observations, decoder: NeuMapDecoder,
                     feature_config: FeatureConfig, config: MappingConfig = MappingConfig(),
                     progress: bool = True, checkpoint_path=None,
                     info: Optional[dict] = None,
                     on_progress: Optional[Callable[[str, float], None]] = None) -> NeuralMap:
    """
    Map a scene with a frozen decoder. ``checkpoint_path`` makes the run resumable.

    The checkpoint ends holding the finished codes, so a run whose map could not be saved
    resumes at the end; delete it once the map is written. A checkpoint of another run
    (decoder, settings, frames) or an unreadable one raises :class:`CheckpointError`.

    ``config.time_budget_s`` counts from the start of the optimisation; the iterations done
    are in the map's info (``mapping_iterations``), with a warning when the budget cut them.
    The checkpoint of a cut run stays at the cut, so a run with more time goes on from there.

    ``on_progress(stage, fraction)`` follows the optimisation ('codes', then 'finetune'):
    ``fraction`` counts iterations of both stages and reaches 1.0 at the end.
    """
    started = time.monotonic()
    torch.manual_seed(config.seed)
    decoder = decoder.to('cpu').eval().requires_grad_(False)
    if config.code_precision not in CODE_PRECISIONS:
        raise ValueError(f'code precision must be one of {CODE_PRECISIONS}, '
                         f'got {config.code_precision!r}')
    if observations.feature_kind != feature_config.kind:
        raise ValueError('observations and feature settings disagree on the feature kind')
    require_decoder_fits(decoder, feature_config.kind)
    valid = observations.valid
    if valid.sum() < config.min_points_per_voxel:
        raise ValueError(f'only {int(valid.sum())} keypoints have 3D points: too few to map')
    digest = decoder_hash(decoder)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    identity = resume = None
    if checkpoint_path is not None:   # hashing every descriptor is only needed for one
        identity = checkpoint_identity(digest, feature_config, config,
                                       observations.frame_names, observations.poses,
                                       observations)
        # Before tracks and samples: a foreign or corrupt checkpoint ends the run now.
        resume = read_checkpoint(checkpoint_path, identity)
    grid = mapping_grid(observations, config)
    if len(grid) == 0:
        raise ValueError('no voxel has enough support; lower min_points_per_voxel or '
                         'increase voxel_size')
    tracks = build_tracks(observations)
    if config.refine_track_points:
        options = TrackPointOptions(depth_sigma_m=config.track_point_depth_sigma_m)
        observations = with_track_points(observations, tracks, options)
    slots = config.landmarks_per_voxel or decoder.config.codes_per_voxel
    samples = landmark_samples(observations, grid, slots, tracks, seed=config.seed)
    grid = samples.grid
    LOG.info('mapping %d voxels from %d points', len(grid), samples.num_points)
    with torch.no_grad():
        initial = decoder.initial_codes(samples.landmark_vectors, samples.landmark_offsets)
    codes = CodeOptimizer(initial, samples.landmark_offsets, samples.landmark_valid.clone(),
                          config.learning_rate)

    stage = 'optimise'
    done = {'codes': 0, 'finetune': 0}   # iterations of each stage, resumed ones included
    if resume is not None:
        try:
            codes.load_state_dict(resume)
        except ValueError:
            raise unreadable(checkpoint_path, 'mapping') from None
        stage = resume['stage']
        done = {'codes': resume['codes_done'], 'finetune': resume['finetune_done']}
        LOG.info('resuming mapping from %s (%s, step %d)', checkpoint_path, stage,
                 done['finetune' if stage == 'finetune' else 'codes'])

    def save_checkpoint(current_stage):
        if checkpoint_path is None:
            return
        buffer = io.BytesIO()
        torch.save(dict(codes.state_dict(), kind=CHECKPOINT_KIND, version=CHECKPOINT_VERSION,
                        identity=identity, stage=current_stage, codes_done=done['codes'],
                        finetune_done=done['finetune']), buffer)
        atomic_write_bytes(checkpoint_path, buffer.getvalue())

    def save_during(current_stage, key):
        def save(iterations_done):
            done[key] = iterations_done
            save_checkpoint(current_stage)
        return save

    # "Seconds of code optimisation": tracks, samples and the index do not count.
    deadline = time.monotonic() + config.time_budget_s if config.time_budget_s > 0 else None
    history = []
    total = max(config.iterations + config.finetune_iterations, 1)

    def report(label, progressed):
        if on_progress is not None:
            before = config.iterations if label == 'finetune' else 0
            on_progress(label, min((before + progressed) / total, 1.0))

    if stage == 'optimise':
        done['codes'] = _optimise(decoder, samples, codes, config, config.iterations,
                                  done['codes'], deadline, 0, progress, 'codes',
                                  save_during('optimise', 'codes'), history, report)
        if done['codes'] >= config.iterations:
            if config.prune_threshold > 0:
                _prune(codes, config.prune_threshold)
            stage = 'finetune'
        # A stage the budget cut stays current: a resumed run with more time goes on with it.
        save_checkpoint(stage)
    if stage == 'finetune':
        if config.finetune_iterations > 0:
            # Positives of pruned codes keep their labels but no longer aim at a slot.
            done['finetune'] = _optimise(decoder, without_masked_slots(samples, codes.mask),
                                         codes, config, config.finetune_iterations,
                                         done['finetune'], deadline, 1, progress, 'finetune',
                                         save_during('finetune', 'finetune'), history, report)
        if done['finetune'] >= config.finetune_iterations:
            stage = 'done'
        else:
            save_checkpoint(stage)
    if on_progress is not None:  # also when a time budget cut the optimisation short
        on_progress('finetune' if config.finetune_iterations else 'codes', 1.0)
    cut = stage != 'done'
    if stage == 'optimise' and config.prune_threshold > 0:
        _prune(codes, config.prune_threshold)   # the map is pruned, its checkpoint is not
    if cut:
        finetune = (f' and {done["finetune"]} of {config.finetune_iterations} fine-tuning ones'
                    if config.finetune_iterations else '')
        LOG.warning('the time budget ended optimisation after %d of %d code iterations%s: the '
                    'map is under-optimised (raise the budget)', done['codes'],
                    config.iterations, finetune)

    final_codes, final_weights, final_positions = codes.all_codes()
    final_codes = as_stored(final_codes, codes.mask.numpy(), config.code_precision)
    vocabulary, histograms = _retrieval_index(samples, config)
    details = dict(info or {})
    details.update({'mapping_config': config.to_dict(),
                    'mapping_seconds': round(time.monotonic() - started, 2),
                    'mapping_frames': len(observations.frame_names),
                    'mapping_points': samples.num_points,
                    'mapping_voxels': len(grid), 'kept_codes': int(codes.mask.sum()),
                    'landmarks': int(samples.landmark_valid.sum()),
                    'mapping_iterations': dict(done), 'time_budget_reached': cut,
                    'mapping_loss': history})
    if not cut:   # kept until the map is on disk (build_map removes it): no work is lost
        save_checkpoint('done')
    return NeuralMap(grid, final_codes, final_weights, codes.mask.numpy().copy(),
                     final_positions, vocabulary, histograms, decoder.config, digest,
                     feature_config, details, config.code_precision)


def _prune(codes: CodeOptimizer, threshold: float) -> None:
    """Drop code slots whose importance fell below ``threshold`` in every layer."""
    with torch.no_grad():
        weights = codes.importance.weight.view(*codes.mask.shape, -1).abs().amax(dim=2)
        keep = codes.mask & (weights >= threshold)
        strongest = torch.where(codes.mask, weights, torch.full_like(weights, -1)).argmax(dim=1)
        keep.scatter_(1, strongest.unsqueeze(1), True)
        before = int(codes.mask.sum())
        codes.mask = keep
    LOG.info('pruned %d of %d codes (threshold %.3g)', before - int(keep.sum()), before,
             threshold)


def _retrieval_index(samples: VoxelSamples, config: MappingConfig) -> tuple:
    """Vocabulary plus one tf-idf histogram per voxel, from the voxel's positives."""
    members = np.concatenate(samples.positives)
    owners = np.concatenate([np.full(len(p), v) for v, p in enumerate(samples.positives)])
    vectors = samples.vectors.numpy()[members]
    vocabulary = train_vocabulary(vectors, owners, config.vocabulary_size, seed=config.seed)
    histograms = document_histograms(vocabulary, vocabulary.assign(vectors), owners,
                                     len(samples.grid))
    return vocabulary, histograms
