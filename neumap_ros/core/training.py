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
Training samples, code initialisation and losses shared by mapping and pretraining.

A voxel's codes start from its landmarks (its longest feature tracks). Its positives are the
keypoints of those landmarks; its negatives are the other keypoints of frames that observe the
voxel, clearly away from every landmark (so near-duplicates never get contradictory labels).
These are exactly the keypoints the voxel will be asked about at localization time.
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from neumap_ros.core.observations import Observations
from neumap_ros.core.voxels import VoxelGrid


@dataclass
class VoxelSamples:
    """Training pools of every voxel of one scene, plus the points its codes start from."""

    grid: VoxelGrid
    vectors: torch.Tensor      # (M, D) unit descriptor vectors of keypoints with 3D points
    targets: torch.Tensor      # (M, 3) offset of the keypoint's landmark from its voxel anchor
    slots: torch.Tensor        # (M,) index of that landmark among its voxel's codes (-1: none)
    positives: list            # per voxel: keypoint indices that observe a selected landmark
    negatives: list            # per voxel: keypoint indices clearly not on a selected landmark
    landmark_vectors: torch.Tensor  # (V, K, D) mean descriptor vector of selected landmarks
    landmark_offsets: torch.Tensor  # (V, K, 3) their offsets in voxel units
    landmark_valid: torch.Tensor    # (V, K) bool

    @property
    def num_points(self) -> int:
        """Keypoints with a 3D point."""
        return len(self.vectors)


@dataclass
class Batch:
    """Keypoints to decode against a batch of voxels; positives come first in each row."""

    voxels: torch.Tensor         # (B,) voxel ids
    vectors: torch.Tensor        # (B, P + N, D)
    target_offsets: torch.Tensor  # (B, P, 3)
    target_slots: torch.Tensor   # (B, P) landmark code each positive should attend to
    labels: torch.Tensor         # (B, P + N) 1 inside, 0 outside
    positives: int


def prepare_samples(observations: Observations, grid: VoxelGrid, landmarks_per_voxel: int,
                    tracks: np.ndarray, min_track_frames: int = 2,
                    negative_distance: float = 0.04, max_negatives: int = 20000,
                    min_frame_points: int = 5, seed: int = 0) -> VoxelSamples:
    """
    Choose each voxel's landmarks and index its positive and negative keypoints.

    Landmarks are feature tracks (see :mod:`tracks`): one scene point with a consistent
    appearance. Each voxel keeps the ``landmarks_per_voxel`` tracks seen from most frames (the
    points a compact map can afford to remember, and those queries are likely to see again).
    Positives of a voxel are the keypoints of its landmarks (target: the landmark's mean
    position); negatives are keypoints of frames observing the voxel that lie more than
    ``negative_distance`` (voxel units) from all of its landmarks, inside the voxel or not.
    """
    rng = np.random.default_rng(seed)
    valid = observations.valid
    xyz = observations.xyz[valid].astype(np.float64)
    frames = observations.frame_index[valid]
    track_of = tracks[valid]
    vectors = torch.from_numpy(observations.vectors()[valid])
    dim = vectors.shape[1]
    voxel_ids = grid.lookup(xyz)

    tracked = np.flatnonzero(track_of >= 0)
    track_count = int(track_of.max()) + 1 if len(tracked) else 0
    frame_pairs = np.unique(track_of[tracked] * (int(frames.max()) + 1) + frames[tracked])
    track_frames = np.bincount(frame_pairs // (int(frames.max()) + 1), minlength=track_count)
    track_size = np.bincount(track_of[tracked], minlength=track_count)
    track_xyz = np.zeros((track_count, 3))
    np.add.at(track_xyz, track_of[tracked], xyz[tracked])
    track_xyz /= np.maximum(track_size, 1)[:, None]
    track_vector = torch.zeros(track_count, dim).index_add_(
        0, torch.from_numpy(track_of[tracked]), vectors[tracked])
    track_vector = F.normalize(track_vector, dim=1)
    track_voxel = grid.lookup(track_xyz) if track_count else np.zeros(0, np.int64)

    targets = np.zeros_like(xyz, dtype=np.float32)
    slots = np.full(len(xyz), -1, np.int64)
    frame_order = np.argsort(frames, kind='stable')
    frame_starts = np.searchsorted(frames[frame_order], np.arange(len(observations.poses) + 1))
    count = len(grid)
    landmark_vectors = torch.zeros(count, landmarks_per_voxel, dim)
    landmark_offsets = torch.zeros(count, landmarks_per_voxel, 3)
    landmark_valid = torch.zeros(count, landmarks_per_voxel, dtype=torch.bool)
    slot_of_track = np.full(track_count, -1, np.int64)
    positives, negatives = [], []
    for voxel in range(count):
        candidates = np.flatnonzero((track_voxel == voxel) &
                                    (track_frames >= min_track_frames))
        chosen = candidates[np.argsort(-track_frames[candidates], kind='stable')]
        chosen = chosen[:landmarks_per_voxel]
        offsets = grid.normalized_offsets(track_xyz[chosen], np.full(len(chosen), voxel))
        landmark_vectors[voxel, :len(chosen)] = track_vector[chosen]
        landmark_offsets[voxel, :len(chosen)] = torch.from_numpy(offsets)
        landmark_valid[voxel, :len(chosen)] = True
        slot_of_track[chosen] = np.arange(len(chosen))

        members = np.flatnonzero(voxel_ids == voxel)
        on_landmark = members[(track_of[members] >= 0) &
                              (track_voxel[np.maximum(track_of[members], 0)] == voxel)]
        on_landmark = on_landmark[slot_of_track[track_of[on_landmark]] >= 0]
        slots[on_landmark] = slot_of_track[track_of[on_landmark]]
        targets[on_landmark] = offsets[slots[on_landmark]]
        positives.append(on_landmark)
        slot_of_track[chosen] = -1

        seen_by, counts = np.unique(frames[members], return_counts=True)
        seen_by = seen_by[counts >= min_frame_points]
        pool = np.concatenate([frame_order[frame_starts[f]:frame_starts[f + 1]]
                               for f in seen_by]) if len(seen_by) else members
        if len(chosen):
            distance, _ = cKDTree(track_xyz[chosen]).query(xyz[pool], k=1)
        else:
            distance = np.full(len(pool), np.inf)
        far = pool[distance > negative_distance * grid.voxel_size]
        # Keypoints inside the voxel but off its landmarks are the hard negatives: sample them
        # as often as the easy ones from elsewhere in view.
        inside = voxel_ids[far] == voxel
        hard, easy = far[inside], far[~inside]
        half = max_negatives // 2
        if len(hard) > half:
            hard = rng.choice(hard, half, replace=False)
        if len(easy) > max_negatives - len(hard):
            easy = rng.choice(easy, max_negatives - len(hard), replace=False)
        if len(hard) and len(easy):
            hard = np.tile(hard, max(1, len(easy) // len(hard)))
        negatives.append(np.concatenate([hard, easy]))
    return VoxelSamples(grid, vectors, torch.from_numpy(targets), torch.from_numpy(slots),
                        positives, negatives, landmark_vectors, landmark_offsets,
                        landmark_valid)


def sample_batch(samples: VoxelSamples, voxels: np.ndarray, positives: int, negatives: int,
                 rng: np.random.Generator) -> Batch:
    """Draw ``positives`` + ``negatives`` keypoints for each voxel (with replacement)."""
    rows = []
    labels = []
    for voxel in voxels:
        pos_pool, neg_pool = samples.positives[voxel], samples.negatives[voxel]
        # A voxel lacking one kind fills the row with the other, labelled as it truly is.
        pos = rng.choice(pos_pool if len(pos_pool) else neg_pool, positives)
        neg = rng.choice(neg_pool if len(neg_pool) else pos_pool, negatives)
        label = np.r_[np.full(positives, 1.0 if len(pos_pool) else 0.0),
                      np.full(negatives, 0.0 if len(neg_pool) else 1.0)]
        rows.append(np.r_[pos, neg])
        labels.append(label)
    index = torch.from_numpy(np.stack(rows))
    labels = torch.from_numpy(np.stack(labels).astype(np.float32))
    return Batch(torch.from_numpy(np.asarray(voxels, dtype=np.int64)),
                 samples.vectors[index], samples.targets[index[:, :positives]],
                 samples.slots[index[:, :positives]], labels, positives)


def robust_distance(predicted: torch.Tensor, target: torch.Tensor,
                    threshold: float = 1.0) -> torch.Tensor:
    """Euclidean error, growing as a square root beyond ``threshold`` (outlier-tolerant)."""
    distance = torch.linalg.vector_norm(predicted - target, dim=-1)
    return torch.where(distance <= threshold, distance,
                       torch.sqrt(threshold * distance.clamp(min=threshold)))


def decoding_loss(offsets: torch.Tensor, logits: torch.Tensor, batch: Batch,
                  attention: torch.Tensor = None, membership_weight: float = 1.0,
                  attention_weight: float = 0.5) -> tuple:
    """
    Coordinate loss on positives plus membership BCE on all; returns (total, parts).

    With the first layer's ``attention`` logits, positives are also taught to attend to their
    own landmark's code: a direct signal that makes the lookup emerge in few steps.
    """
    # Rows whose voxel had no positives carry label 0 there and no coordinate target.
    has_target = batch.labels[:, :batch.positives]
    distance = robust_distance(offsets[:, :batch.positives], batch.target_offsets)
    coordinate = (distance * has_target).sum() / has_target.sum().clamp(min=1.0)
    membership = F.binary_cross_entropy_with_logits(logits, batch.labels)
    total = coordinate + membership_weight * membership
    parts = {'coordinate': coordinate.item(), 'membership': membership.item()}
    if attention is not None:
        slots = torch.where(has_target > 0, batch.target_slots, -1).reshape(-1)
        positive_attention = attention[:, :batch.positives].reshape(-1, attention.shape[-1])
        # A masked code has a -inf logit: ignore the rows aiming at one, not the whole batch.
        aimed = positive_attention.detach().gather(1, slots.clamp(min=0).unsqueeze(1))
        slots = torch.where(torch.isfinite(aimed.squeeze(1)), slots, -1)
        lookup = F.cross_entropy(positive_attention, slots, ignore_index=-1)
        if torch.isfinite(lookup):
            total = total + attention_weight * lookup
            parts['attention'] = lookup.item()
    return total, parts


def without_masked_slots(samples: VoxelSamples, code_mask: torch.Tensor) -> VoxelSamples:
    """
    Return ``samples`` whose positives no longer aim at code slots ``code_mask`` removed.

    Such keypoints stay positives (they lie in the voxel, at their landmark's position), but
    no code is left for them to attend to, so their slot becomes -1.
    """
    members = np.concatenate(samples.positives).astype(np.int64)
    owners = np.concatenate([np.full(len(p), v) for v, p in enumerate(samples.positives)])
    members = torch.from_numpy(members)
    slots = samples.slots.clone()
    removed = ~code_mask[torch.from_numpy(owners).long(), slots[members]]
    slots[members[removed]] = -1
    return replace(samples, slots=slots)


def landmark_samples(observations: Observations, grid: VoxelGrid, landmarks_per_voxel: int,
                     tracks: np.ndarray, seed: int = 0) -> VoxelSamples:
    """
    :func:`prepare_samples`, after dropping voxels that have no landmark at all.

    A voxel without a single multi-view track has nothing a query could be matched against.
    """
    samples = prepare_samples(observations, grid, landmarks_per_voxel, tracks, seed=seed)
    keep = samples.landmark_valid.any(dim=1).numpy()
    if keep.all():
        return samples
    if not keep.any():
        raise ValueError('no voxel has a keypoint seen from several frames: cannot map')
    subset = VoxelGrid(grid.origin, grid.voxel_size, grid.indices[keep], grid.anchors[keep])
    return prepare_samples(observations, subset, landmarks_per_voxel, tracks, seed=seed)
