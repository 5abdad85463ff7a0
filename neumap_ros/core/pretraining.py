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
Auto-decoder pretraining: one shared decoder, per-scene codes, learned jointly.

Every step draws a global batch of voxels (from all scenes) with a seeded generator, so the
same run gives the same batches on one process or on N DistributedDataParallel ranks (rank r
takes slots r, r+N, ...). Decoder gradients are averaged by DDP; the sparse gradients of the
per-scene code residuals are gathered and averaged by hand so every rank keeps identical codes.
A checkpoint records the identity of its run (:func:`checkpoint_identity`) and is resumed only
by the same run.
"""

from dataclasses import asdict, dataclass, field
import hashlib
import io
import json
import logging
import math
from pathlib import Path
import time
from typing import Optional

import numpy as np
import torch
from torch import distributed as dist

from neumap_ros.core.checkpoints import check_identity, CheckpointError, \
    load_checkpoint, unreadable  # noqa: F401 - CheckpointError is part of this API
from neumap_ros.core.decoder import decoder_hash, DecoderConfig, NeuMapDecoder
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.progress import progress_bar
from neumap_ros.core.settings import check_settings
from neumap_ros.core.training import Batch, decoding_loss, sample_batch

LOG = logging.getLogger(__name__)

CHECKPOINT_KIND = 'neumap.pretraining'
CHECKPOINT_VERSION = 1
_CHECKPOINT_KEYS = {'kind', 'version', 'identity', 'model', 'decoder_optimizer',
                    'code_optimizer', 'step', 'history'}
# They decide when a run stops or saves, never the weights it ends with.
_NOT_IDENTITY = ('time_budget_s', 'checkpoint_every')


@dataclass
class PretrainConfig:
    """Optimisation settings of ``neumap train``."""

    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    iterations: int = 20000
    time_budget_s: float = 0.0
    voxels_per_batch: int = 16
    positives_per_voxel: int = 96
    negatives_per_voxel: int = 64
    decoder_lr: float = 1e-3
    code_lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_iterations: int = 500
    final_lr_ratio: float = 0.1       # cosine decay from decoder_lr to this fraction of it
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    # Per-scene code residuals (a true auto-decoder). Off by default: codes then come from the
    # initialiser alone, which forces it to produce good codes for any new scene.
    code_residuals: bool = False
    seed: int = 0

    def __post_init__(self):
        """Refuse wrong types and ranges now, not after an hour of rendering."""
        check_settings(
            self,
            at_least={'iterations': 0, 'time_budget_s': 0.0, 'voxels_per_batch': 1,
                      'positives_per_voxel': 1, 'negatives_per_voxel': 0, 'weight_decay': 0.0,
                      'warmup_iterations': 0, 'final_lr_ratio': 0.0, 'checkpoint_every': 1},
            above={'decoder_lr': 0.0, 'code_lr': 0.0, 'grad_clip': 0.0})

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        data = asdict(self)
        data['decoder'] = self.decoder.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> 'PretrainConfig':
        """From a parsed config file; unknown keys are an error (typos must not pass)."""
        data = dict(data)
        decoder = DecoderConfig.from_dict(data.pop('decoder', {}))
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f'unknown training settings {sorted(unknown)}')
        return cls(decoder=decoder, **data)


class TrainingModel(torch.nn.Module):
    """Decoder plus the code residuals of all scenes: what one training step differentiates."""

    def __init__(self, decoder: NeuMapDecoder, statistics: tuple, use_residuals: bool = True):
        super().__init__()
        self.decoder = decoder
        self.use_residuals = use_residuals
        vectors, offsets, valid = statistics
        self.register_buffer('centroid_vectors', vectors)
        self.register_buffer('centroid_offsets', offsets)
        self.register_buffer('code_mask', valid.clone())
        config = decoder.config
        self.residuals = torch.nn.Embedding(
            len(vectors), config.codes_per_voxel * config.layers * config.code_dim, sparse=True)
        torch.nn.init.zeros_(self.residuals.weight)
        self.residuals.weight.requires_grad_(use_residuals)

    def forward(self, voxels, vectors):
        """Offsets and logits of keypoint vectors (B, N, D) against global voxel ids (B,)."""
        config = self.decoder.config
        codes = self.decoder.initial_codes(self.centroid_vectors[voxels],
                                           self.centroid_offsets[voxels])
        if self.use_residuals:
            codes = codes + self.residuals(voxels).view(
                -1, config.codes_per_voxel, config.layers, config.code_dim)
        weights = torch.ones(codes.shape[:3], dtype=codes.dtype, device=codes.device)
        return self.decoder(vectors, codes, weights, self.code_mask[voxels],
                            self.centroid_offsets[voxels], return_attention=True)


def scene_statistics(scenes: list) -> tuple:
    """Code-initialiser inputs (landmarks) of every voxel of every scene, concatenated."""
    return (torch.cat([s.landmark_vectors for s in scenes]),
            torch.cat([s.landmark_offsets for s in scenes]),
            torch.cat([s.landmark_valid for s in scenes]))


class _GlobalSampler:
    """Deterministic batches over (scene, voxel) pairs, independent of the process layout."""

    def __init__(self, scenes: list, config: PretrainConfig):
        self.scenes = scenes
        self.config = config
        self.scene_of = np.concatenate([np.full(len(s.grid), i) for i, s in enumerate(scenes)])
        self.local_of = np.concatenate([np.arange(len(s.grid)) for s in scenes])

    def batch(self, step: int, rank: int, world: int):
        rng = np.random.default_rng([self.config.seed, step])
        # pretrain() ensures a full batch: every rank then gets the same number of voxels.
        chosen = rng.choice(len(self.scene_of), self.config.voxels_per_batch, replace=False)
        mine = chosen[rank::world]
        vectors, offsets, slots, labels = [], [], [], []
        for slot, voxel in zip(range(rank, len(chosen), world), mine):
            scene = self.scenes[self.scene_of[voxel]]
            slot_rng = np.random.default_rng([self.config.seed, step, int(slot)])
            part = sample_batch(scene, np.array([self.local_of[voxel]]),
                                self.config.positives_per_voxel,
                                self.config.negatives_per_voxel, slot_rng)
            vectors.append(part.vectors)
            offsets.append(part.target_offsets)
            slots.append(part.target_slots)
            labels.append(part.labels)
        return Batch(torch.from_numpy(mine.astype(np.int64)), torch.cat(vectors),
                     torch.cat(offsets), torch.cat(slots), torch.cat(labels),
                     self.config.positives_per_voxel)


def _average_sparse_grad(parameter: torch.nn.Parameter, world: int) -> None:
    """All-gather a sparse embedding gradient so every rank applies the same update."""
    grad = parameter.grad.coalesce()
    indices, values = grad.indices()[0], grad.values()
    gathered_indices = [torch.empty_like(indices) for _ in range(world)]
    gathered_values = [torch.empty_like(values) for _ in range(world)]
    dist.all_gather(gathered_indices, indices)
    dist.all_gather(gathered_values, values)
    merged = torch.sparse_coo_tensor(torch.cat(gathered_indices).unsqueeze(0),
                                     torch.cat(gathered_values) / world, grad.shape)
    parameter.grad = merged.coalesce()


def checkpoint_identity(config: PretrainConfig, parent: Optional[str] = None,
                        data=None) -> dict:
    """
    Return what a checkpoint must match to be resumed: everything that decides the weights.

    That is the training settings (not the time budget or the checkpoint interval), the hash
    of the decoder training starts from (``parent``; None: a fresh one from ``config.seed``)
    and ``data``, the caller's JSON-friendly description of the training data. The number of
    processes is left out: one process and N ranks run the same global batches.
    """
    training = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    # Through JSON: the stored copy must compare equal after a save/load round trip.
    return json.loads(json.dumps({'training': training, 'parent': parent, 'data': data},
                                 sort_keys=True, default=str))


def scenes_digest(scenes: list) -> str:
    """SHA-256 over the voxels and landmarks of every scene (what the codes start from)."""
    digest = hashlib.sha256()
    for scene in scenes:
        digest.update(f'{len(scene.grid)} {scene.num_points};'.encode())
        for tensor in (scene.landmark_vectors, scene.landmark_offsets, scene.landmark_valid):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _valid_structure(state: dict) -> bool:
    step, history = state['step'], state['history']
    return (isinstance(state['model'], dict)
            and all(isinstance(t, torch.Tensor) for t in state['model'].values())
            and isinstance(state['decoder_optimizer'], dict)
            and isinstance(state['code_optimizer'], dict)
            and type(step) is int and step >= 0 and isinstance(history, list)
            and all(isinstance(row, list) and len(row) == 3
                    and all(type(v) in (int, float) and math.isfinite(v) for v in row)
                    for row in history))


def read_checkpoint(path, identity: dict) -> Optional[dict]:
    """
    Read a pretraining checkpoint and check that it belongs to this run; None when absent.

    ``identity`` (from :func:`checkpoint_identity`, possibly with ``'scenes'`` added) is
    compared key by key, so a caller may check the settings before the scenes exist. Any
    failure raises :class:`CheckpointError` in one line: a foreign checkpoint must never
    replace the weights a run was asked to start from.
    """
    state = load_checkpoint(path, CHECKPOINT_KIND, CHECKPOINT_VERSION, _CHECKPOINT_KEYS,
                            'pretraining', _valid_structure)
    if state is None:
        return None
    iterations = identity.get('training', {}).get('iterations')
    if iterations is not None and state['step'] > iterations:
        raise unreadable(path, 'pretraining')
    _check_identity(state, identity, path)
    return state


def _check_identity(state: dict, identity: dict, path) -> None:
    check_identity(state['identity'], identity, path, 'training', ('training',),
                   {'parent': 'initial decoder (--init)', 'data': 'training data',
                    'scenes': 'training scenes'})


def pretrain(scenes: list, config: PretrainConfig, checkpoint_path=None, progress: bool = True,
             decoder: Optional[NeuMapDecoder] = None, log_every: int = 50,
             stop_after: int = 0, data_identity=None, resume: Optional[dict] = None) -> tuple:
    """
    Train decoder and per-scene codes jointly; returns ``(decoder, history, finished)``.

    Runs under ``torchrun`` too: when a process group is initialised, the batch is split over
    ranks. ``checkpoint_path`` makes the run resumable (all ranks read, rank 0 writes); it is
    resumed only when its identity (:func:`checkpoint_identity` of ``config``, ``decoder``,
    ``data_identity`` and the scenes) is this run's, else :class:`CheckpointError`.
    ``resume`` is its state when the caller already read it (:func:`read_checkpoint`).
    ``stop_after`` ends this run after that many iterations (a later run resumes), and
    ``finished`` is then False: the decoder is only part-trained. A time budget that runs
    out finishes the run.
    """
    if not scenes or any(len(s.grid) == 0 for s in scenes):
        raise ValueError('pretraining needs scenes with at least one voxel each')
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    check_batch_split(config, world)
    voxels = sum(len(s.grid) for s in scenes)
    # A smaller batch would leave ranks without voxels and DDP's average unlike one process's.
    if voxels < config.voxels_per_batch:
        raise ValueError(f'the training scenes hold {voxels} voxels, fewer than '
                         f'voxels_per_batch ({config.voxels_per_batch}): lower voxels_per_batch '
                         'or add scenes')
    identity = checkpoint_identity(
        config, decoder_hash(decoder) if decoder is not None else None, data_identity)
    identity['scenes'] = scenes_digest(scenes)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    if resume is None:
        resume = read_checkpoint(checkpoint_path, identity)
    else:   # read before the scenes existed: now their digest can be checked too
        _check_identity(resume, identity, checkpoint_path)
    torch.manual_seed(config.seed)
    decoder = decoder if decoder is not None else NeuMapDecoder(config.decoder)
    model = TrainingModel(decoder.train(), scene_statistics(scenes), config.code_residuals)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    dense = [p for n, p in model.named_parameters() if not n.startswith('residuals')]
    decoder_optimizer = torch.optim.AdamW(dense, lr=config.decoder_lr,
                                          weight_decay=config.weight_decay, foreach=True)
    code_optimizer = torch.optim.SparseAdam([model.residuals.weight], lr=config.code_lr)
    sampler = _GlobalSampler(scenes, config)
    history, start = [], 0

    if resume is not None:
        try:
            model.load_state_dict(resume['model'])
            decoder_optimizer.load_state_dict(resume['decoder_optimizer'])
            code_optimizer.load_state_dict(resume['code_optimizer'])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError):
            raise unreadable(checkpoint_path, 'pretraining') from None
        start, history = resume['step'], list(resume['history'])
        LOG.info('resumed pretraining at step %d from %s', start, checkpoint_path)

    def save(step):
        if checkpoint_path is None or rank != 0:
            return
        buffer = io.BytesIO()
        torch.save({'kind': CHECKPOINT_KIND, 'version': CHECKPOINT_VERSION,
                    'identity': identity, 'model': model.state_dict(),
                    'decoder_optimizer': decoder_optimizer.state_dict(),
                    'code_optimizer': code_optimizer.state_dict(), 'step': step,
                    'history': history}, buffer)
        atomic_write_bytes(checkpoint_path, buffer.getvalue())

    deadline = time.monotonic() + config.time_budget_s if config.time_budget_s > 0 else None
    bar = progress_bar(range(start, config.iterations), progress and rank == 0,
                       desc='pretrain', unit='it', initial=start, total=config.iterations)
    step = start
    running = []
    finished = True
    for step in bar:
        if deadline is not None and _stop_agreed(time.monotonic() > deadline, distributed):
            break
        if stop_after and step - start >= stop_after:
            finished = False
            break
        scale = learning_rate_scale(step, config)
        for group in decoder_optimizer.param_groups:
            group['lr'] = config.decoder_lr * scale
        batch = sampler.batch(step, rank, world)
        voxels_per_rank = len(batch.voxels)
        rows = config.positives_per_voxel + config.negatives_per_voxel
        offsets, logits, attention = wrapped(batch.voxels,
                                             batch.vectors.view(voxels_per_rank, rows, -1))
        loss, parts = decoding_loss(offsets, logits, batch, attention)
        # Before the step: a diverged run must stop, not go on to save garbage weights.
        if _any_rank(not bool(torch.isfinite(loss)), distributed):
            raise RuntimeError(f'the training loss became non-finite at iteration {step + 1}: '
                               'no weights written (lower decoder_lr or code_lr)')
        decoder_optimizer.zero_grad(set_to_none=True)
        code_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if distributed and model.use_residuals:
            _average_sparse_grad(model.residuals.weight, world)
        torch.nn.utils.clip_grad_norm_(dense, config.grad_clip)
        decoder_optimizer.step()
        if model.use_residuals:
            code_optimizer.step()
        running.append([parts['coordinate'], parts['membership']])
        if (step + 1) % log_every == 0:
            mean = np.mean(running, axis=0)
            history.append([step + 1, float(mean[0]), float(mean[1])])
            running = []
            bar.set_postfix(coord=f'{mean[0]:.3f}', bce=f'{mean[1]:.3f}',
                            refresh=False)
            if not progress and rank == 0:
                LOG.info('step %d: coordinate %.4f membership %.4f', step + 1, mean[0], mean[1])
        if (step + 1) % config.checkpoint_every == 0:
            save(step + 1)
    else:
        step = config.iterations
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise RuntimeError(f'the weights became non-finite by iteration {step}: no weights '
                           'written (lower decoder_lr or code_lr)')
    save(step)
    return decoder.eval(), history, finished


def check_batch_split(config: PretrainConfig, world: int) -> None:
    """Refuse a batch that ``world`` processes cannot share evenly (before any rendering)."""
    if config.voxels_per_batch % world:
        raise ValueError(f'voxels_per_batch ({config.voxels_per_batch}) must be divisible by '
                         f'the number of processes ({world})')


def learning_rate_scale(step: int, config: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_ratio`` at the last iteration."""
    if step < config.warmup_iterations:
        return (step + 1) / config.warmup_iterations
    span = max(config.iterations - config.warmup_iterations, 1)
    progress = min((step - config.warmup_iterations) / span, 1.0)
    # A Python float: numpy scalars in the optimiser state would not reload safely.
    return float(config.final_lr_ratio + (1 - config.final_lr_ratio) * 0.5 * (
        1 + np.cos(np.pi * progress)))


def _stop_agreed(local_stop: bool, distributed: bool) -> bool:
    """Every rank stops at the same step (rank 0's clock decides)."""
    if not distributed:
        return local_stop
    flag = torch.tensor([1 if local_stop else 0])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _any_rank(local: bool, distributed: bool) -> bool:
    """Whether ``local`` holds on any rank: all ranks then stop together, none waits alone."""
    if not distributed:
        return local
    flag = torch.tensor([1 if local else 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def samples_fingerprint(scenes: list) -> str:
    """Short description of the training data for the model card."""
    voxels = sum(len(s.grid) for s in scenes)
    points = sum(s.num_points for s in scenes)
    return f'{len(scenes)} scenes, {voxels} voxels, {points} keypoints with 3D points'
