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

"""Codes-only mapping: frozen decoder, falling loss, pruning, precision, budget, checkpoints."""

from dataclasses import replace
import pathlib
import shutil
import types

import numpy as np
import pytest
from scipy.spatial import cKDTree
import torch

from neumap_ros.core import map_building, mapping
from neumap_ros.core.decoder import decoder_hash, DecoderConfig, NeuMapDecoder
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.localizer import DecoderMismatchError, NeuralLocalizer
from neumap_ros.core.map_building import build_map, BuildRequest
from neumap_ros.core.map_io import OutputPathError
from neumap_ros.core.mapping import build_neural_map, CheckpointError, MappingConfig
from neumap_ros.core.neural_map import NeuralMap
from neumap_ros.core.pretrain_data import synthetic_observations, TrainingData
from neumap_ros.core.synthetic.dataset import iter_scene_frames
from neumap_ros.core.synthetic.trajectory import default_camera
from neumap_ros.core.training import Batch, decoding_loss

FEATURES = FeatureConfig(max_keypoints=400)
DECODER = DecoderConfig(width=32, layers=2, heads=2, ffn_dim=64, code_dim=16,
                        codes_per_voxel=16, offset_frequencies=2)
SETTINGS = {'voxel_size': 1.5, 'min_points_per_voxel': 40, 'iterations': 60,
            'voxels_per_batch': 4, 'positives_per_voxel': 16, 'negatives_per_voxel': 16,
            'learning_rate': 0.01, 'vocabulary_size': 32}


@pytest.fixture(scope='module')
def scene():
    """Observations of a small rendered room (exact depth and poses)."""
    data = TrainingData(frames_per_scene=24, width=320, height=240)
    return synthetic_observations(21, 'indoor', data, FEATURES)


@pytest.fixture(scope='module')
def decoder():
    """Return a small untrained decoder: mapping mechanics do not need a good one."""
    torch.manual_seed(0)
    return NeuMapDecoder(DECODER).eval()


def test_mapping_optimises_codes_only(scene, decoder):
    """The decoder's weights are untouched while the mapping loss falls."""
    before = decoder_hash(decoder)
    neural = build_neural_map(scene, decoder, FEATURES,
                              MappingConfig(**dict(SETTINGS, iterations=150)), progress=False)
    assert decoder_hash(decoder) == before == neural.decoder_hash
    losses = [entry[2] for entry in neural.info['mapping_loss']]
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses
    assert len(neural.grid) >= 2 and neural.kept_codes > 0
    assert neural.info['mapping_frames'] == 24


def test_pruning_removes_codes_and_the_map_still_decodes(scene, decoder, tmp_path):
    """An L1 importance penalty plus a threshold prunes codes; the map loads and decodes."""
    full = build_neural_map(scene, decoder, FEATURES, MappingConfig(**SETTINGS),
                            progress=False)
    pruned = build_neural_map(scene, decoder, FEATURES, MappingConfig(
        **dict(SETTINGS, importance_l1=20.0, prune_threshold=0.9, finetune_iterations=20)),
        progress=False)
    assert 0 < pruned.kept_codes < full.kept_codes
    assert pruned.code_mask.any(axis=1).all(), 'every voxel keeps at least one code'
    full_bytes = full.save(tmp_path / 'full.safetensors')
    pruned_bytes = pruned.save(tmp_path / 'pruned.safetensors')
    assert pruned_bytes < full_bytes
    loaded = NeuralMap.load(tmp_path / 'pruned.safetensors')
    assert loaded.kept_codes == pruned.kept_codes
    localizer = NeuralLocalizer(loaded, decoder, 'cpu')
    frame = next(iter_scene_frames(21, 1, 320, 240, kind='indoor'))
    result = localizer.localize(frame.color, default_camera(320, 240))
    # The pruned map still decodes: keypoints reach the decoder and give matches.
    assert result.num_keypoints > 100 and result.timings_ms['decode'] > 0
    assert result.num_matches > 0


def test_fine_tuning_after_pruning_aims_only_at_kept_codes(scene, decoder, monkeypatch):
    """
    Positives of pruned codes stay positives but aim at no slot; the others keep attention.

    A pruned target's -inf logit once dropped the attention term for the whole batch.
    """
    calls = []
    loss = mapping.decoding_loss

    def recorded_loss(offsets, logits, batch, attention=None):
        total, parts = loss(offsets, logits, batch, attention)
        calls.append((batch, parts))
        return total, parts

    monkeypatch.setattr(mapping, 'decoding_loss', recorded_loss)
    pruned = build_neural_map(scene, decoder, FEATURES, MappingConfig(
        **dict(SETTINGS, iterations=30, importance_l1=20.0, prune_threshold=0.98,
               finetune_iterations=10)), progress=False)
    assert pruned.kept_codes < pruned.info['landmarks']
    finetune = calls[30:]
    assert len(finetune) == 10
    mask = torch.from_numpy(pruned.code_mask)
    unaimed = 0
    for batch, parts in finetune:
        assert 'attention' in parts
        slots, positive = batch.target_slots, batch.labels[:, :batch.positives] > 0
        kept = mask[batch.voxels.unsqueeze(1), slots.clamp(min=0)]
        assert torch.all(kept | (slots == -1))
        unaimed += int((positive & (slots == -1)).sum())
    assert unaimed > 0, 'no positive of a pruned code was drawn'


def test_a_masked_target_code_drops_only_its_own_rows_from_the_attention_loss():
    """The lookup loss averages over the positives whose target code is still there."""
    batch = Batch(torch.zeros(1, dtype=torch.long), torch.zeros(1, 3, 4), torch.zeros(1, 2, 3),
                  torch.tensor([[0, 1]]), torch.tensor([[1.0, 1.0, 0.0]]), 2)
    attention = torch.tensor([[[float('-inf'), 0.0, 1.0]] * 3], requires_grad=True)
    total, parts = decoding_loss(torch.zeros(1, 3, 3), torch.zeros(1, 3), batch, attention)
    assert parts['attention'] == pytest.approx(np.log1p(np.e))
    total.backward()
    assert torch.isfinite(attention.grad).all() and attention.grad[0, 0].eq(0).all()


@pytest.mark.parametrize('precision', ['fp16', 'int8'])
def test_mapping_returns_codes_as_their_file_stores_them(scene, decoder, tmp_path, precision):
    """
    fp16/int8 maps hold in memory exactly the codes their file gives back.

    So a map scores the same before and after saving; its codes are the fp32 map's within
    the rounding of that precision, and its file is smaller.
    """
    exact = build_neural_map(scene, decoder, FEATURES,
                             MappingConfig(**dict(SETTINGS, code_precision='fp32')),
                             progress=False)
    neural = build_neural_map(scene, decoder, FEATURES,
                              MappingConfig(**dict(SETTINGS, code_precision=precision)),
                              progress=False)
    fp32_bytes = exact.save(tmp_path / 'fp32.safetensors')
    size = neural.save(tmp_path / f'{precision}.safetensors')
    loaded = NeuralMap.load(tmp_path / f'{precision}.safetensors')
    np.testing.assert_array_equal(loaded.codes, neural.codes)
    kept = neural.code_mask
    scale = np.abs(exact.codes[kept]).max()
    tolerance = scale * (2e-3 if precision == 'fp16' else 1.0 / 127)
    difference = np.abs(neural.codes[kept] - exact.codes[kept])
    assert 0.0 < difference.max() <= tolerance
    assert size < fp32_bytes


def test_unknown_code_precision_fails_before_optimising(scene, decoder):
    """A bad precision is refused at the start, not after minutes of mapping."""
    with pytest.raises(ValueError, match='code precision'):
        build_neural_map(scene, decoder, FEATURES,
                         MappingConfig(**dict(SETTINGS, code_precision='fp8',
                                              iterations=10 ** 9)), progress=False)


def test_orb_keypoints_need_a_decoder_of_orb_descriptors(decoder, tmp_path):
    """ORB maps: refused up front by a SIFT decoder; built, saved and run with an ORB one."""
    orb = FeatureConfig(kind='orb', max_keypoints=400)
    data = TrainingData(frames_per_scene=12, width=320, height=240)
    observations = synthetic_observations(21, 'indoor', data, orb)
    settings = MappingConfig(**dict(SETTINGS, iterations=10 ** 9, time_budget_s=2.0))
    with pytest.raises(ValueError, match="'orb' keypoints do not fit a decoder of 128-d"):
        build_neural_map(observations, decoder, orb, settings, progress=False)
    torch.manual_seed(0)
    orb_decoder = NeuMapDecoder(replace(DECODER, descriptor_dim=256)).eval()
    neural = build_neural_map(observations, orb_decoder, orb, settings, progress=False)
    neural.save(tmp_path / 'orb.safetensors')
    localizer = NeuralLocalizer(NeuralMap.load(tmp_path / 'orb.safetensors'), orb_decoder,
                                'cpu')
    frame = next(iter_scene_frames(21, 1, 320, 240, kind='indoor'))
    result = localizer.localize(frame.color, default_camera(320, 240))
    assert result.num_keypoints > 100 and result.timings_ms['decode'] > 0


def test_a_map_refuses_another_decoder(scene, decoder):
    """Localizing with a decoder other than the map's is refused with a clear message."""
    neural = build_neural_map(scene, decoder, FEATURES, MappingConfig(**SETTINGS),
                              progress=False)
    torch.manual_seed(1)
    other = NeuMapDecoder(DECODER).eval()
    with pytest.raises(DecoderMismatchError, match='built for decoder'):
        NeuralLocalizer(neural, other, 'cpu')


def test_time_budget_stops_optimisation_early(scene, decoder):
    """A time budget ends code optimisation before the iteration count."""
    neural = build_neural_map(scene, decoder, FEATURES,
                              MappingConfig(**dict(SETTINGS, iterations=100000,
                                                   time_budget_s=3.0)), progress=False)
    steps = [entry[1] for entry in neural.info['mapping_loss']]
    assert max(steps) < 100000


def test_a_checkpoint_resumes_a_run_and_outlives_it(scene, decoder, tmp_path, caplog):
    """
    An interrupted run resumes from its last checkpoint; a finished one keeps its checkpoint.

    The checkpoint then holds the final codes, so a map that could not be written is rebuilt
    from it without optimising again (build_map deletes it once the map is on disk).
    """
    checkpoint = tmp_path / 'mapping.ckpt'
    settings = MappingConfig(**dict(SETTINGS, iterations=300))

    def interrupt(stage, fraction):
        if fraction > 0.9:   # past the checkpoint at step 250
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_neural_map(scene, decoder, FEATURES, settings, False, checkpoint,
                         on_progress=interrupt)
    assert checkpoint.exists()
    with caplog.at_level('INFO', logger='neumap_ros.core.mapping'):
        finished = build_neural_map(scene, decoder, FEATURES, settings, False, checkpoint)
    assert 'resuming mapping' in caplog.text and 'step 250' in caplog.text
    assert min(entry[1] for entry in finished.info['mapping_loss']) >= 250
    assert checkpoint.exists()
    again = build_neural_map(scene, decoder, FEATURES, settings, False, checkpoint)
    assert again.info['mapping_loss'] == []   # nothing left to optimise
    np.testing.assert_array_equal(again.codes, finished.codes)


def test_mapping_reports_progress_through_both_stages(scene, decoder):
    """Fractions rise through 'codes' then 'finetune' and end at 1.0."""
    reports = []
    settings = MappingConfig(**dict(SETTINGS, iterations=100, finetune_iterations=50))
    build_neural_map(scene, decoder, FEATURES, settings, progress=False,
                     on_progress=lambda stage, fraction: reports.append((stage, fraction)))
    stages = [stage for stage, _ in reports]
    fractions = [fraction for _, fraction in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert stages.index('finetune') > stages.index('codes')
    assert set(stages) == {'codes', 'finetune'}
    assert any(0.0 < f < 0.67 for s, f in reports if s == 'codes')
    assert max(f for s, f in reports if s == 'codes') <= 100 / 150


def test_refined_track_points_move_landmarks_only_as_far_as_the_data_says(scene, decoder):
    """The option moves landmarks onto their keypoints' rays; exact depth leaves little to do."""
    settings = dict(SETTINGS, iterations=5)
    plain = build_neural_map(scene, decoder, FEATURES, MappingConfig(**settings),
                             progress=False)
    refined = build_neural_map(scene, decoder, FEATURES,
                               MappingConfig(**dict(settings, refine_track_points=True)),
                               progress=False)
    assert refined.info['mapping_config']['refine_track_points'] is True

    def landmarks(neural):
        voxels = np.nonzero(neural.code_mask)[0]
        return neural.grid.anchors[voxels] + \
            neural.positions[neural.code_mask] * neural.grid.voxel_size

    moved, _ = cKDTree(landmarks(plain)).query(landmarks(refined))
    assert np.median(moved) < 0.01
    assert np.mean(moved > 1e-5) > 0.5  # most did move


@pytest.fixture(scope='module')
def finished_checkpoint(scene, decoder, tmp_path_factory):
    """Return the checkpoint a short finished run leaves (it holds the final codes)."""
    path = tmp_path_factory.mktemp('checkpoint') / 'mapping.ckpt'
    build_neural_map(scene, decoder, FEATURES, MappingConfig(**dict(SETTINGS, iterations=5)),
                     False, path)
    return path


def test_a_checkpoint_of_another_run_is_refused(scene, decoder, finished_checkpoint,
                                                tmp_path, caplog):
    """
    Another decoder, feature or mapping setting, frames or 3D points: refused, file untouched.

    Only the time budget may change: it decides when a run stops, not what a step computes.
    """
    checkpoint = tmp_path / 'mapping.ckpt'
    shutil.copy(finished_checkpoint, checkpoint)
    original = checkpoint.read_bytes()
    settings = MappingConfig(**dict(SETTINGS, iterations=5))
    torch.manual_seed(1)
    other_decoder = NeuMapDecoder(DECODER).eval()
    moved = scene.poses.copy()
    moved[3, 0, 3] += 0.01
    shifted = scene.xyz.copy()
    shifted[5] += 0.01
    runs = {'decoder': (scene, other_decoder, FEATURES, settings),
            'features.max_keypoints': (scene, decoder, replace(FEATURES, max_keypoints=401),
                                       settings),
            'mapping.seed': (scene, decoder, FEATURES, replace(settings, seed=1)),
            'frames or their poses': (replace(scene, poses=moved), decoder, FEATURES, settings),
            'keypoints or 3D points': (replace(scene, xyz=shifted), decoder, FEATURES,
                                       settings)}
    for difference, (observations, mapper, features, config) in runs.items():
        with pytest.raises(CheckpointError, match='belongs to another mapping run') as error:
            build_neural_map(observations, mapper, features, config, False, checkpoint)
        assert difference in str(error.value) and 'delete it' in str(error.value)
        assert checkpoint.read_bytes() == original
    with caplog.at_level('INFO', logger='neumap_ros.core.mapping'):
        resumed = build_neural_map(scene, decoder, FEATURES,
                                   replace(settings, time_budget_s=100.0), False, checkpoint)
    assert 'resuming mapping' in caplog.text and resumed.info['mapping_loss'] == []


class _Payload:
    """Pickles to a call of Path.touch(marker): loading it would create the marker file."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        """Make unpickling call Path.touch on the marker."""
        return (pathlib.Path.touch, (self.marker,))


def _write_bad_checkpoint(kind: str, path: pathlib.Path, finished: pathlib.Path) -> None:
    if kind == 'text':
        path.write_text('not a checkpoint\n')
    elif kind == 'truncated':
        path.write_bytes(finished.read_bytes()[:2000])
    elif kind == 'tensor':
        torch.save(torch.zeros(3), path)
    elif kind == 'pickle':
        torch.save({'kind': _Payload(path.with_name('marker'))}, path)
    elif kind == 'old format':   # what earlier versions wrote
        torch.save({'delta': torch.zeros(2, 4), 'mask': torch.ones(2, 2, dtype=torch.bool),
                    'stage': 'optimise', 'step': 250, 'config': '{}', 'voxels': 2}, path)
    else:   # this run's own checkpoint with codes of another size
        state = torch.load(finished, weights_only=True)
        state['delta'] = state['delta'][:, :3]
        torch.save(state, path)


@pytest.mark.parametrize('kind', ['text', 'truncated', 'tensor', 'pickle', 'old format',
                                  'wrong shapes'])
def test_an_unreadable_checkpoint_is_refused_at_once(scene, decoder, finished_checkpoint,
                                                     tmp_path, monkeypatch, kind):
    """One clear error, no traceback of torch internals, nothing run from the file."""
    checkpoint = tmp_path / 'mapping.ckpt'
    _write_bad_checkpoint(kind, checkpoint, finished_checkpoint)
    if kind != 'wrong shapes':   # the shapes are known only once the voxels are
        monkeypatch.setattr(mapping, 'build_tracks', lambda *args: pytest.fail('not at once'))
    with pytest.raises(CheckpointError) as error:
        build_neural_map(scene, decoder, FEATURES, MappingConfig(**dict(SETTINGS, iterations=5)),
                         False, checkpoint)
    assert str(error.value) == \
        f'checkpoint {checkpoint} is unreadable or not a mapping checkpoint: delete it'
    assert not (tmp_path / 'marker').exists()


def _kitchen_request(shared_data_dir, tmp_path, checkpoint) -> BuildRequest:
    split = tmp_path / 'split.txt'
    split.write_text('frame-000000\nframe-000020\n')
    return BuildRequest(shared_data_dir / '7scenes-redkitchen', str(split),
                        tmp_path / 'map.safetensors', 'neural', progress=False,
                        checkpoint=checkpoint)


def test_build_map_checks_the_checkpoint_before_extracting_features(
        shared_data_dir, finished_checkpoint, tmp_path, monkeypatch):
    """A corrupt checkpoint or one of another decoder or frames ends build_map at once."""
    monkeypatch.setattr(map_building, 'collect_observations',
                        lambda *args, **kwargs: pytest.fail('features were extracted'))
    garbage = tmp_path / 'garbage.ckpt'
    garbage.write_text('not a checkpoint\n')
    with pytest.raises(CheckpointError, match='unreadable or not a mapping checkpoint'):
        build_map(_kitchen_request(shared_data_dir, tmp_path, garbage))
    with pytest.raises(CheckpointError, match='another mapping run') as error:
        build_map(_kitchen_request(shared_data_dir, tmp_path, finished_checkpoint))
    assert 'decoder' in str(error.value) and 'frames' in str(error.value)
    assert finished_checkpoint.exists() and not (tmp_path / 'map.safetensors').exists()


def test_build_map_refuses_a_checkpoint_that_is_the_map(tmp_path):
    """The checkpoint is deleted after the map is written: the same file is refused first."""
    output = tmp_path / 'map.safetensors'
    output.write_bytes(b'an earlier map')
    (tmp_path / 'link.safetensors').symlink_to(output)
    (tmp_path / 'sub').mkdir()
    for checkpoint in (output, tmp_path / 'sub' / '..' / 'map.safetensors',
                       tmp_path / 'link.safetensors'):
        with pytest.raises(OutputPathError, match='are the same file'):
            build_map(BuildRequest(tmp_path / 'no-dataset', None, output, checkpoint=checkpoint))
    assert output.read_bytes() == b'an earlier map'


def test_time_budget_counts_optimisation_only_and_says_when_it_cut(scene, decoder, monkeypatch,
                                                                   caplog):
    """
    The budget starts with the optimisation; iterations done are in the info, a cut warns.

    A fake clock makes it exact: preparing the samples takes 100 s, each batch 1 s.
    """
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(mapping, 'time', types.SimpleNamespace(monotonic=lambda: clock.now))
    build_tracks, sample_batch = mapping.build_tracks, mapping.sample_batch

    def slow_tracks(*args):
        clock.now += 100.0
        return build_tracks(*args)

    def slow_batch(*args):
        clock.now += 1.0
        return sample_batch(*args)

    monkeypatch.setattr(mapping, 'build_tracks', slow_tracks)
    monkeypatch.setattr(mapping, 'sample_batch', slow_batch)
    settings = MappingConfig(**dict(SETTINGS, iterations=3, time_budget_s=10.0))
    with caplog.at_level('WARNING', logger='neumap_ros.core.mapping'):
        full = build_neural_map(scene, decoder, FEATURES, settings, progress=False)
    assert full.info['mapping_iterations'] == {'codes': 3, 'finetune': 0}
    assert not full.info['time_budget_reached'] and 'under-optimised' not in caplog.text
    cut = build_neural_map(scene, decoder, FEATURES,
                           replace(settings, iterations=10, finetune_iterations=5,
                                   time_budget_s=3.5), progress=False)
    assert cut.info['mapping_iterations'] == {'codes': 4, 'finetune': 0}
    assert cut.info['time_budget_reached']
    assert 'after 4 of 10 code iterations and 0 of 5 fine-tuning ones' in caplog.text
    assert 'under-optimised' in caplog.text


@pytest.mark.parametrize('stage', ['codes', 'finetune'])
def test_a_resumed_run_ends_with_the_codes_of_an_uninterrupted_one(scene, decoder, tmp_path,
                                                                   monkeypatch, caplog, stage):
    """Batches drawn per step and optimiser moments saved: resuming changes no bit."""
    monkeypatch.setattr(mapping, 'CHECKPOINT_EVERY', 10)
    settings = MappingConfig(**dict(SETTINGS, iterations=30, finetune_iterations=30,
                                    importance_l1=20.0, prune_threshold=0.98))
    checkpoint = tmp_path / 'mapping.ckpt'

    def interrupt(current, fraction):
        if current == stage and fraction >= (25 if stage == 'codes' else 55) / 60:
            raise KeyboardInterrupt   # at step 25 of the stage: its checkpoint holds 20

    with pytest.raises(KeyboardInterrupt):
        build_neural_map(scene, decoder, FEATURES, settings, False, checkpoint,
                         on_progress=interrupt)
    with caplog.at_level('INFO', logger='neumap_ros.core.mapping'):
        resumed = build_neural_map(scene, decoder, FEATURES, settings, False, checkpoint)
    label = 'optimise' if stage == 'codes' else 'finetune'
    assert f'({label}, step 20)' in caplog.text
    whole = build_neural_map(scene, decoder, FEATURES, settings, progress=False)
    assert resumed.kept_codes < resumed.info['landmarks'], 'pruning removed no code'
    for name in ('codes', 'weights', 'positions', 'code_mask'):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))


_CUT_SETTINGS = MappingConfig(**dict(SETTINGS, iterations=20, finetune_iterations=10,
                                     importance_l1=20.0, prune_threshold=0.98))


@pytest.fixture(scope='module')
def uninterrupted(scene, decoder):
    """Return the map of an uninterrupted run of _CUT_SETTINGS (pruned and fine-tuned)."""
    return build_neural_map(scene, decoder, FEATURES, _CUT_SETTINGS, progress=False)


@pytest.mark.parametrize('budget, stage', [(3.5, 'optimise'), (23.5, 'finetune')])
def test_a_run_the_time_budget_cut_goes_on_when_resumed(
        scene, decoder, uninterrupted, tmp_path, monkeypatch, budget, stage):
    """
    The checkpoint of a cut run stays at the cut: resumed, it ends as an uninterrupted run.

    A fake clock makes the cut exact: each batch takes 1 s.
    """
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(mapping, 'time', types.SimpleNamespace(monotonic=lambda: clock.now))
    sample_batch = mapping.sample_batch

    def slow_batch(*args):
        clock.now += 1.0
        return sample_batch(*args)

    monkeypatch.setattr(mapping, 'sample_batch', slow_batch)
    checkpoint = tmp_path / 'mapping.ckpt'
    cut = build_neural_map(scene, decoder, FEATURES,
                           replace(_CUT_SETTINGS, time_budget_s=budget), False, checkpoint)
    done = {'codes': 4, 'finetune': 0} if stage == 'optimise' else {'codes': 20, 'finetune': 4}
    assert cut.info['mapping_iterations'] == done and cut.info['time_budget_reached']
    assert torch.load(checkpoint, weights_only=True)['stage'] == stage
    resumed = build_neural_map(scene, decoder, FEATURES, _CUT_SETTINGS, False, checkpoint)
    assert resumed.info['mapping_iterations'] == {'codes': 20, 'finetune': 10}
    assert not resumed.info['time_budget_reached']
    assert resumed.kept_codes < resumed.info['landmarks'], 'pruning removed no code'
    for name in ('codes', 'weights', 'positions', 'code_mask'):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(uninterrupted, name))
