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
Localization of one image against a map: keypoints -> 2D-3D matches -> PnP -> checked pose.

:class:`NeuralLocalizer` decodes keypoints against the map's voxel codes; the
:class:`FeatureMatchingLocalizer` baseline matches descriptors against stored ones. Both share
the same front end (features, undistortion) and back end (PnP, covariance, acceptance tests),
and report per-stage timings and a clear status instead of a wrong pose when evidence is weak.
"""

from dataclasses import dataclass, field, replace
import json
from pathlib import Path
import time
from typing import Optional

import numpy as np
import torch

from neumap_ros.core.camera import CameraError, PinholeCamera
from neumap_ros.core.decoder import decoder_hash, resolve_device
from neumap_ros.core.decoder_weights import load_decoder
from neumap_ros.core.feature_map import FeatureMap
from neumap_ros.core.features import create_extractor, descriptor_vectors, FeatureConfig, \
    ImageError, MIN_IMAGE_SIDE
from neumap_ros.core.map_io import MapFormatError
from neumap_ros.core.matching import match_descriptors
from neumap_ros.core.neural_map import NeuralMap
from neumap_ros.core.pnp import PnPOptions, solve_pnp
from neumap_ros.core.retrieval import rank
from neumap_ros.core.settings import check_settings
from neumap_ros.core.voxels import voxels_in_view


MAP_KINDS = {'neumap.neural_map': 'neural', 'neumap.feature_map': 'features'}
# Errors of the matched 3D points for the pose covariance, measured on the kitchen's
# interleaved queries (README, "Pose covariance", bench/covariance_calibration.py): with them
# position errors match the covariance there. Maps from depth carry the depth's errors;
# outdoors, triangulated maps are more consistent, and these make the covariance cautious.
NEURAL_POINT_STD_M = 0.035
FEATURE_POINT_STD_M = 0.02


class DecoderMismatchError(MapFormatError):
    """The map was built for another decoder than the one supplied."""


@dataclass(frozen=True)
class LocalizerOptions:
    """Run-time settings; keypoint settings come from the map unless overridden."""

    max_keypoints: int = 0            # 0: as in the map's feature settings
    max_image_side: int = -1          # detect on images downscaled to this side (-1: as map)
    top_voxels: int = 24              # neural: voxels decoded per image (most votes)
    voting_keypoints: int = 256       # neural: strongest keypoints that vote for voxels
    max_candidate_voxels: int = 64    # neural: voxels scored at all (retrieval pre-filter)
    min_membership: float = 0.5       # neural: keep predictions whose in-voxel prob. exceeds
    matches_per_keypoint: int = 2     # neural: keep this many voxel hypotheses per keypoint
    top_frames: int = 10              # baseline: mapping frames matched per image
    ratio: float = 0.8                # baseline: Lowe ratio
    min_inliers: int = 15
    min_inlier_ratio: float = 0.0
    max_position_std_m: float = 0.0   # reject poses less certain than this (0: no check)
    prior_radius_m: float = 3.0       # with a pose prior: its position error (m)
    prior_angle_deg: float = 30.0     # with a pose prior: its rotation error (deg)
    retry_without_prior: bool = True  # a prior that leads nowhere gets one global retry
    point_std_m: float = -1.0         # 3D error of the map's points in the covariance (<0: map)
    pnp: PnPOptions = field(default_factory=PnPOptions)

    def __post_init__(self):
        """Refuse values that would decode nothing, or everything, by name."""
        check_settings(
            self,
            at_least={'max_keypoints': 0, 'max_image_side': -1, 'top_voxels': 1,
                      'point_std_m': -1.0,
                      'voting_keypoints': 1, 'max_candidate_voxels': 1, 'min_membership': 0.0,
                      'matches_per_keypoint': 1, 'top_frames': 1, 'min_inliers': 1,
                      'min_inlier_ratio': 0.0, 'max_position_std_m': 0.0,
                      'prior_angle_deg': 0.0},
            above={'ratio': 0.0, 'prior_radius_m': 0.0},
            at_most={'min_membership': 1.0, 'ratio': 1.0, 'min_inlier_ratio': 1.0,
                     'prior_angle_deg': 180.0})
        if 0 < self.max_image_side < MIN_IMAGE_SIDE:   # refused now, not at the first image
            raise ValueError(f'LocalizerOptions setting max_image_side must be -1 (as the '
                             f'map), 0 (full resolution) or >= {MIN_IMAGE_SIDE}, got '
                             f'{self.max_image_side}')


@dataclass
class PosePrior:
    """Approximate camera pose (e.g. from odometry or ``initialpose``) that narrows the search."""

    T_world_camera: np.ndarray
    radius_m: Optional[float] = None


@dataclass
class LocalizationResult:
    """Pose (or the reason there is none) and the evidence behind it."""

    success: bool
    status: str
    message: str = ''
    T_world_camera: Optional[np.ndarray] = None
    covariance: Optional[np.ndarray] = None
    num_keypoints: int = 0
    num_matches: int = 0
    num_inliers: int = 0
    inlier_ratio: float = 0.0
    reprojection_error_px: float = float('nan')
    timings_ms: dict = field(default_factory=dict)
    inlier_pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    inlier_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # world, m
    candidates: list = field(default_factory=list)
    prior_ignored: bool = False       # a prior was given, failed, and the global retry ran


class _StageTimer:
    """Milliseconds spent per pipeline stage, plus the total."""

    def __init__(self):
        self.timings = {}
        self.start = self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        # Accumulates: a global retry adds to the stages of the first attempt.
        self.timings[stage] = round(self.timings.get(stage, 0.0)
                                    + (now - self._last) * 1000.0, 3)
        self._last = now

    def finish(self) -> dict:
        return dict(self.timings, total=round((time.perf_counter() - self.start) * 1000.0, 3))


class _QueryKeypoints:
    """
    Keypoints of the image being localized and what is derived from them.

    Derived values (descriptor vectors, retrieval histogram, decoder queries) are computed on
    first use only, so a global retry after a failing prior does not compute them again.
    """

    def __init__(self, features, pixels):
        self.features = features
        self.pixels = pixels
        self._derived = {}

    def derived(self, name: str, make):
        """Return ``make()``'s value, computed once per image."""
        if name not in self._derived:
            self._derived[name] = make()
        return self._derived[name]

    def vectors(self) -> np.ndarray:
        """Return the keypoints' unit descriptor vectors."""
        return self.derived('vectors', lambda: descriptor_vectors(self.features.descriptors,
                                                                  self.features.kind))


class Localizer:
    """Shared pipeline; subclasses provide :meth:`_correspondences`."""

    method = 'base'

    def __init__(self, feature_config: FeatureConfig, options: LocalizerOptions):
        if options.max_keypoints:
            feature_config = replace(feature_config, max_keypoints=options.max_keypoints)
        if options.max_image_side >= 0:
            feature_config = replace(feature_config, max_image_side=options.max_image_side)
        self.feature_config = feature_config
        self.options = options
        self.extractor = create_extractor(feature_config)

    def localize(self, image: np.ndarray, camera: PinholeCamera,
                 prior: Optional[PosePrior] = None) -> LocalizationResult:
        """Localize one image taken by ``camera``; raises ImageError/CameraError on bad input."""
        if not isinstance(image, np.ndarray) or image.ndim < 2:
            raise ImageError('image must be a 2D or 3D array')
        if (image.shape[1], image.shape[0]) != (camera.width, camera.height):
            raise CameraError(f'image is {image.shape[1]}x{image.shape[0]} but the camera '
                              f'is {camera.width}x{camera.height}')
        timer = _StageTimer()
        features = self.extractor.extract(image)
        pixels = camera.undistort_points(features.keypoints)
        timer.mark('features')
        result = LocalizationResult(False, 'too_few_keypoints', num_keypoints=len(features))
        if len(features) < self.options.min_inliers:
            result.message = f'only {len(features)} keypoints (image without texture?)'
            return self._finish(result, timer)
        keypoints = _QueryKeypoints(features, pixels)
        result = self._solve(keypoints, camera, prior, timer)
        if not result.success and prior is not None and self.options.retry_without_prior \
                and self._prior_selection(prior, camera) is not None:
            # A stale or wrong prior must not cost the fix: the same keypoints, searched
            # globally (the first attempt's timings stay in the stages they belong to).
            result = self._solve(keypoints, camera, None, timer)
            result.prior_ignored = True
        return self._finish(result, timer)

    def _solve(self, keypoints: _QueryKeypoints, camera, prior, timer) -> LocalizationResult:
        """Correspondences and PnP for extracted keypoints; the result before timings."""
        result = LocalizationResult(False, 'too_few_matches',
                                    num_keypoints=len(keypoints.features))
        points2d, points3d, candidates = self._correspondences(keypoints, camera, prior, timer)
        result.candidates = candidates
        result.num_matches = len(points2d)
        if len(points2d) < self.options.min_inliers:
            result.message = f'{len(points2d)} 2D-3D matches, need {self.options.min_inliers}'
            return result
        point_std = self.options.point_std_m if self.options.point_std_m >= 0 else \
            self.map_point_std()
        pnp = solve_pnp(points2d, points3d, camera.undistorted(),
                        replace(self.options.pnp, point_std_m=point_std))
        timer.mark('pnp')
        result.num_inliers = pnp.num_inliers
        # Over distinct keypoints, as the inliers are (a keypoint may have two matches).
        result.inlier_ratio = pnp.num_inliers / max(len(np.unique(points2d, axis=0)), 1)
        result.reprojection_error_px = pnp.reprojection_error_px
        result.inlier_pixels = points2d[pnp.inliers].astype(np.float32)
        result.inlier_points = points3d[pnp.inliers]
        if not pnp.success:
            result.status, result.message = 'pnp_failed', 'PnP-RANSAC found no pose'
        elif pnp.num_inliers < self.options.min_inliers:
            result.status = 'too_few_inliers'
            result.message = f'{pnp.num_inliers} inliers, need {self.options.min_inliers}'
        elif result.inlier_ratio < self.options.min_inlier_ratio:
            result.status = 'low_inlier_ratio'
            result.message = (f'inlier ratio {result.inlier_ratio:.2f} below '
                              f'{self.options.min_inlier_ratio:.2f}')
        elif pnp.covariance is None:
            result.status = 'degenerate'
            result.message = 'pose covariance is singular (inliers nearly on a line?)'
        elif self.options.max_position_std_m > 0 and \
                np.sqrt(np.trace(pnp.covariance[:3, :3])) > self.options.max_position_std_m:
            result.status = 'uncertain'
            result.message = 'position uncertainty above max_position_std_m'
        else:
            result.success, result.status = True, 'ok'
            result.T_world_camera = pnp.T_world_camera
            result.covariance = pnp.covariance
        return result

    @staticmethod
    def _finish(result, timer):
        result.timings_ms = timer.finish()
        return result

    def _correspondences(self, keypoints: _QueryKeypoints, camera, prior, timer):
        raise NotImplementedError

    def _prior_selection(self, prior: PosePrior, camera) -> Optional[np.ndarray]:
        """
        Return the map parts (voxels, frames) a pose prior leaves to search, in map order.

        None when it leaves all of them or none (then the search is global anyway, and a
        global retry after a failure would repeat it).
        """
        raise NotImplementedError

    def _prior_radius(self, prior: PosePrior) -> float:
        # An explicit 0 is a prior without position error, not "use the default".
        return prior.radius_m if prior.radius_m is not None else self.options.prior_radius_m

    def describe(self) -> dict:
        """Facts about the loaded map for diagnostics."""
        raise NotImplementedError

    def map_points(self) -> np.ndarray:
        """Return (N, 3) world points that picture the map (for RViz)."""
        raise NotImplementedError

    def map_point_std(self) -> float:
        """Return the typical 3D error (m) of this map's matched points."""
        raise NotImplementedError


class NeuralLocalizer(Localizer):
    """Decode keypoints against the codes of retrieved voxels."""

    method = 'neural'

    def __init__(self, neural_map: NeuralMap, decoder, device: str = 'auto',
                 options: LocalizerOptions = LocalizerOptions(), map_bytes: int = 0):
        super().__init__(neural_map.feature_config, options)
        if decoder_hash(decoder) != neural_map.decoder_hash:
            raise DecoderMismatchError(
                'this map was built for decoder %s..., but decoder %s... is loaded; rebuild the'
                ' map with this decoder or pass the decoder it was built with (--weights)'
                % (neural_map.decoder_hash[:12], decoder_hash(decoder)[:12]))
        self.map = neural_map
        self.map_bytes = map_bytes
        self.device = resolve_device(device)
        self.decoder = decoder.to(self.device).eval()
        with torch.no_grad():
            self.cache = self.decoder.code_cache(
                torch.from_numpy(neural_map.codes).to(self.device),
                torch.from_numpy(neural_map.weights).to(self.device),
                torch.from_numpy(neural_map.code_mask).to(self.device),
                torch.from_numpy(neural_map.positions).to(self.device))
        self.anchors = neural_map.grid.anchors.astype(np.float64)
        self.voxel_size = neural_map.grid.voxel_size

    def release(self) -> None:
        """Free the decoder and the code cache (GPU memory on deactivate/cleanup)."""
        self.cache = None
        self.decoder = None
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()

    def map_point_std(self) -> float:
        """Return the decoded points' typical error."""
        return NEURAL_POINT_STD_M

    def map_points(self) -> np.ndarray:
        """Return the world positions of the map's code slots (its remembered landmarks)."""
        grid, mask = self.map.grid, self.map.code_mask
        voxel_ids = np.nonzero(mask)[0]
        return grid.anchors[voxel_ids] + self.map.positions[mask] * grid.voxel_size

    def describe(self) -> dict:
        """Facts about the loaded map for diagnostics."""
        return {'method': 'neural', 'voxels': len(self.map.grid),
                'codes': self.map.kept_codes, 'voxel_size_m': self.voxel_size,
                'code_precision': self.map.code_precision, 'map_bytes': self.map_bytes,
                'device': str(self.device), 'decoder': self.map.decoder_hash[:12]}

    def _candidate_voxels(self, keypoints: _QueryKeypoints, prior, camera):
        """Voxels worth scoring: in view of the prior if any, and the best by retrieval."""
        candidates = np.arange(len(self.anchors))
        selection = self._prior_selection(prior, camera) if prior is not None else None
        if selection is not None:
            candidates = selection
        if len(candidates) > self.options.max_candidate_voxels:
            histogram = keypoints.derived('histogram', lambda: self.map.vocabulary.histogram(
                self.map.vocabulary.assign(keypoints.vectors())))
            best = rank(histogram, self.map.voxel_histograms[candidates],
                        self.options.max_candidate_voxels)
            candidates = candidates[best]
        return candidates

    def _prior_selection(self, prior: PosePrior, camera) -> Optional[np.ndarray]:
        """Return the voxels in the prior's widened view cone (None: all or none)."""
        in_view = voxels_in_view(self.anchors, self.voxel_size, prior.T_world_camera,
                                 camera.width, camera.height, min(camera.fx, camera.fy),
                                 self._prior_radius(prior), self.options.prior_angle_deg)
        return np.sort(in_view) if 0 < len(in_view) < len(self.anchors) else None

    def _correspondences(self, keypoints: _QueryKeypoints, camera, prior, timer):
        candidates = self._candidate_voxels(keypoints, prior, camera)
        timer.mark('retrieval')
        options = self.options
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.device.type == 'cuda'):
            queries = keypoints.derived('embeddings', lambda: self.decoder.embed_queries(
                torch.from_numpy(keypoints.vectors()).to(self.device)))
            # Voxel selection by the decoder itself: the strongest keypoints (extractors sort
            # them by response) vote for the voxel whose codes they match best.
            voting = options.voting_keypoints
            scoring = self.cache.select_for_scoring(torch.from_numpy(candidates).to(self.device))
            voter_scores = self.decoder.match_scores(queries[:voting], scoring)
            votes = np.bincount(voter_scores.argmax(dim=0).cpu().numpy(),
                                minlength=len(candidates))
            chosen = np.argsort(-votes, kind='stable')[:options.top_voxels]
            voxels = candidates[chosen]
            cache = self.cache.select(torch.from_numpy(voxels).to(self.device))
            # Cascade: every keypoint is fully decoded only against its best few voxels. The
            # voters' scores against the chosen voxels are already known.
            per_keypoint = min(options.matches_per_keypoint, len(voxels))
            scores = voter_scores[torch.from_numpy(chosen).to(self.device)]
            if len(queries) > voting:
                scores = torch.cat([scores, self.decoder.match_scores(queries[voting:], cache)],
                                   dim=1)
            best = scores.topk(per_keypoint, dim=0).indices.cpu().numpy()
            rows, keypoint_ids = decoding_pairs(best)
            offsets, probabilities = decode_pairs(self.decoder, queries, cache, rows,
                                                  keypoint_ids)
        timer.mark('decode')
        pixels = keypoints.pixels
        if len(rows) == 0:
            return pixels[:0], np.zeros((0, 3)), voxels.tolist()
        keep = probabilities > options.min_membership
        # Most confident first: PnP samples progressively from the front (PROSAC).
        order = np.flatnonzero(keep)[np.argsort(-probabilities[keep], kind='stable')]
        voxel_ids = voxels[rows[order]]
        points3d = self.anchors[voxel_ids] + offsets[order].astype(np.float64) * self.voxel_size
        timer.mark('matches')
        return pixels[keypoint_ids[order]], points3d, voxels.tolist()


def decoding_pairs(best: np.ndarray) -> tuple:
    """
    Return (voxel rows, keypoint ids) to decode, sorted by row then keypoint.

    ``best`` is (hypotheses, keypoints): the voxel rows each keypoint is decoded against.
    """
    rows = best.ravel()
    keypoints = np.tile(np.arange(best.shape[1]), best.shape[0])
    order = np.lexsort((keypoints, rows))
    return rows[order], keypoints[order]


def decode_pairs(decoder, queries: torch.Tensor, cache, rows: np.ndarray,
                 keypoint_ids: np.ndarray) -> tuple:
    """
    Decode (voxel row, keypoint) pairs sorted by row; return offsets (P, 3), probabilities (P,).

    ``queries`` are the embedded keypoints (N, width), ``cache`` the rows' codes. Voxels of
    similar pair counts share one padded decoder call: a call per voxel costs ~1 ms of fixed
    overhead on a CPU, and queries never attend to each other, so padding changes no result.
    """
    counts = np.bincount(rows, minlength=len(cache.positions))
    starts = np.r_[0, np.cumsum(counts)]
    offsets = np.empty((len(rows), 3), np.float32)
    probabilities = np.empty(len(rows), np.float32)
    for batch in similar_size_batches(counts):
        index = np.zeros((len(batch), int(counts[batch].max())), np.int64)
        for i, row in enumerate(batch):
            index[i, :counts[row]] = keypoint_ids[starts[row]:starts[row + 1]]
        index = torch.from_numpy(index).to(queries.device)
        decoded, logits = decoder.decode(queries[index],
                                         cache.select(torch.from_numpy(batch).to(queries.device)))
        decoded = decoded.float().cpu().numpy()
        logits = torch.sigmoid(logits.float()).cpu().numpy()
        for i, row in enumerate(batch):
            offsets[starts[row]:starts[row + 1]] = decoded[i, :counts[row]]
            probabilities[starts[row]:starts[row + 1]] = logits[i, :counts[row]]
    return offsets, probabilities


def similar_size_batches(counts: np.ndarray, min_fill: float = 0.6) -> list:
    """
    Group rows with a non-zero count into batches of similar counts (largest first).

    Every count in a batch is >= ``min_fill`` times the batch's largest, so padding each row
    to the largest wastes little.
    """
    order = np.argsort(-counts, kind='stable')
    order = order[counts[order] > 0]
    batches, current = [], []
    for row in order:
        if current and counts[row] < min_fill * counts[current[0]]:
            batches.append(np.array(current))
            current = []
        current.append(row)
    if current:
        batches.append(np.array(current))
    return batches


class FeatureMatchingLocalizer(Localizer):
    """Baseline: retrieve mapping frames, ratio-test match their descriptors, PnP."""

    method = 'features'

    def __init__(self, feature_map: FeatureMap, options: LocalizerOptions = LocalizerOptions(),
                 map_bytes: int = 0):
        super().__init__(feature_map.feature_config, options)
        self.map = feature_map
        self.map_bytes = map_bytes
        order = np.argsort(feature_map.frame_index, kind='stable')
        self._order = order
        self._starts = np.searchsorted(feature_map.frame_index[order],
                                       np.arange(len(feature_map.frame_centres) + 1))
        self._vectors = descriptor_vectors(feature_map.descriptors,
                                           feature_map.feature_config.kind)

    def release(self) -> None:
        """Nothing to free beyond Python objects."""

    def map_point_std(self) -> float:
        """Return the stored points' typical error."""
        return FEATURE_POINT_STD_M

    def map_points(self) -> np.ndarray:
        """Return the stored 3D points."""
        return self.map.xyz

    def describe(self) -> dict:
        """Facts about the loaded map for diagnostics."""
        return {'method': 'features', 'points': int(len(self.map.xyz)),
                'frames': int(len(self.map.frame_centres)), 'map_bytes': self.map_bytes}

    def _prior_selection(self, prior: PosePrior, camera) -> Optional[np.ndarray]:
        """Return the mapping frames within the prior's radius (None: all or none)."""
        distance = np.linalg.norm(self.map.frame_centres - prior.T_world_camera[:3, 3], axis=1)
        near = np.flatnonzero(distance <= self._prior_radius(prior))
        return near if 0 < len(near) < len(distance) else None

    def _correspondences(self, keypoints: _QueryKeypoints, camera, prior, timer):
        vectors = keypoints.vectors()
        frames = np.arange(len(self.map.frame_centres))
        selection = self._prior_selection(prior, camera) if prior is not None else None
        if selection is not None:
            frames = selection
        histogram = keypoints.derived('histogram', lambda: self.map.vocabulary.histogram(
            self.map.vocabulary.assign(vectors)))
        chosen = frames[rank(histogram, self.map.frame_histograms[frames],
                             self.options.top_frames)]
        points = np.concatenate([self._order[self._starts[f]:self._starts[f + 1]]
                                 for f in chosen])
        timer.mark('retrieval')
        matches = match_descriptors(vectors, self._vectors[points], self.options.ratio)
        timer.mark('matching')
        return (keypoints.pixels[matches[:, 0]],
                self.map.xyz[points[matches[:, 1]]].astype(np.float64), chosen.tolist())


def map_header(path) -> dict:
    """Return the project metadata of a map file, read from its header (no tensors loaded)."""
    path = Path(path)
    try:
        with open(path, 'rb') as stream:
            size = int.from_bytes(stream.read(8), 'little')
            if size > 16 * 1024 * 1024:
                raise ValueError('header too large')
            header = json.loads(stream.read(size))
        metadata = json.loads(header['__metadata__']['neumap'])
        if metadata['kind'] not in MAP_KINDS:
            raise ValueError(f'kind {metadata["kind"]!r}')
        return metadata
    except FileNotFoundError:
        raise MapFormatError(f'map file {path} does not exist')
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MapFormatError(f'{path} is not a neumap_ros map ({error})')


def map_method(path) -> str:
    """'neural' or 'features', read from the file header without loading tensors."""
    return MAP_KINDS[map_header(path)['kind']]


def load_localizer(path, device: str = 'auto', options: LocalizerOptions = LocalizerOptions(),
                   weights=None) -> Localizer:
    """Open a map file of either kind and return a ready localizer."""
    method = map_method(path)
    size = Path(path).stat().st_size
    if method == 'features':
        return FeatureMatchingLocalizer(FeatureMap.load(path), options, size)
    neural_map = NeuralMap.load(path)
    decoder, _ = load_decoder(weights, feature_kind=neural_map.feature_config.kind)
    return NeuralLocalizer(neural_map, decoder, device, options, size)
