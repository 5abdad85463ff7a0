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
Decoder pretraining on tiny procedural scenes: it learns, it resumes, and DDP agrees.

Two small synthetic scenes are rendered once per session into a scene cache; ``neumap train``
then runs as a subprocess, alone or under torchrun with two gloo processes.
"""

from dataclasses import replace
import io
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from neumap_ros.cli import main
from neumap_ros.core import pretraining
from neumap_ros.core.datasets import DatasetError
from neumap_ros.core.decoder_weights import load_decoder, write_model_card
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.pretrain_data import training_scenes, TrainingData
from neumap_ros.core.pretraining import CheckpointError, pretrain, PretrainConfig

pytestmark = pytest.mark.slow

TINY = {
    'data': {'synthetic_scenes': 2, 'first_seed': 11, 'frames_per_scene': 24, 'width': 320,
             'height': 240, 'indoor_share': 1.0, 'voxel_size_indoor': 1.5,
             'min_points_per_voxel': 40},
    'features': {'kind': 'sift', 'max_keypoints': 400},
    'training': {'decoder': {'width': 32, 'layers': 2, 'heads': 2, 'ffn_dim': 64,
                             'code_dim': 16, 'codes_per_voxel': 16, 'offset_frequencies': 2},
                 'iterations': 12, 'voxels_per_batch': 4, 'positives_per_voxel': 16,
                 'negatives_per_voxel': 16, 'decoder_lr': 0.003, 'warmup_iterations': 4,
                 'checkpoint_every': 6, 'seed': 3},
}


@pytest.fixture(scope='module')
def tiny_setup(tmp_path_factory):
    """Render the tiny scenes once; return (config file, cache folder, scenes)."""
    root = tmp_path_factory.mktemp('pretrain')
    config = root / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY))
    cache = root / 'cache'
    data = TrainingData(**TINY['data'])
    features = FeatureConfig(**TINY['features'])
    scenes = training_scenes(data, features, TINY['training']['decoder']['codes_per_voxel'],
                             cache, progress=False)
    assert len(scenes) == 2 and all(len(s.grid) > 0 for s in scenes)
    return config, cache, scenes


def run_group(command, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    """
    subprocess.run in a process group of its own, killed whole on timeout.

    torchrun's workers are its children: killing torchrun alone would leave them running.
    """
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _run_train(config: Path, cache: Path, out: Path, processes: int = 1, extra=(),
               environment=None):
    command = [sys.executable, '-m', 'neumap_ros.cli', 'train', '--config', str(config),
               '--cache', str(cache), '--out', str(out), '--quiet', *map(str, extra)]
    if processes > 1:
        command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
                   f'--nproc_per_node={processes}', '-m', 'neumap_ros.cli', *command[3:]]
    environment = dict(os.environ, OMP_NUM_THREADS='1', **(environment or {}))
    return run_group(command, env=environment)


def _train(config: Path, cache: Path, out: Path, processes: int = 1, extra=()):
    result = _run_train(config, cache, out, processes, extra)
    assert result.returncode == 0, result.stdout + result.stderr
    decoder, metadata = load_decoder(out)
    return decoder.state_dict(), metadata


def test_tiny_pretraining_lowers_the_loss(tiny_setup):
    """A short run on two scenes drives the coordinate and membership losses down."""
    _, _, scenes = tiny_setup
    config = PretrainConfig.from_dict(dict(TINY['training'], iterations=160,
                                           checkpoint_every=10 ** 6))
    torch.manual_seed(0)
    _, history, finished = pretrain(scenes, config, progress=False, log_every=20)
    assert finished
    first, last = np.array(history[0][1:]), np.array(history[-1][1:])
    # Coordinates are learned first; membership only starts to separate in so few steps.
    assert last[0] < 0.7 * first[0], history
    assert last[1] < first[1], history


def test_two_process_ddp_matches_one_process(tiny_setup, tmp_path):
    """Check that torchrun with 2 gloo ranks gives the single-process weights."""
    config, cache, _ = tiny_setup
    single, single_meta = _train(config, cache, tmp_path / 'one.safetensors')
    double, double_meta = _train(config, cache, tmp_path / 'two.safetensors', processes=2)
    assert single_meta['info']['processes'] == 1 and double_meta['info']['processes'] == 2
    # Each decoder gets its own card, named after its weights: the second run keeps the first's.
    assert single_meta['hash'] in (tmp_path / 'MODEL_CARD_one.md').read_text()
    assert double_meta['hash'] in (tmp_path / 'MODEL_CARD_two.md').read_text()
    for name, tensor in single.items():
        assert torch.allclose(tensor, double[name], atol=2e-5, rtol=1e-4), name


def test_resume_continues_where_it_stopped(tiny_setup, tmp_path):
    """Stopping at a checkpoint and resuming gives the same weights as one long run."""
    config, cache, _ = tiny_setup
    card = tmp_path / 'CARD_straight.md'
    straight, meta = _train(config, cache, tmp_path / 'straight.safetensors',
                            extra=('--model-card', str(card)))
    # --model-card puts the card where asked, naming the command that made these weights.
    assert meta['hash'] in card.read_text()
    assert not (tmp_path / 'MODEL_CARD_straight.md').exists()
    assert f'--out {tmp_path / "straight.safetensors"} --model-card {card}' in card.read_text()
    checkpoint = tmp_path / 'run.ckpt'
    # A stopped run leaves its checkpoint and no weights: a half-trained decoder must never
    # take the place of a finished one.
    stopped = _run_train(config, cache, tmp_path / 'half.safetensors',
                         extra=('--checkpoint', str(checkpoint), '--stop-after', '7'))
    assert stopped.returncode == 0 and 'to resume' in stopped.stdout, stopped.stderr
    assert checkpoint.is_file() and not (tmp_path / 'half.safetensors').exists()
    # Another run (other parent, other data) must not pick it up: it would train nothing and
    # write the old run's weights under the new name. Refused before any rendering.
    for extra, differs in ((('--init', tmp_path / 'straight.safetensors'), 'initial decoder'),
                           (('--scenes', 1), 'training data')):
        other = _run_train(config, cache, tmp_path / 'other.safetensors',
                           extra=('--checkpoint', checkpoint, *extra))
        assert other.returncode == 2 and 'belongs to another training run' in other.stderr \
            and differs in other.stderr, other.stderr
        assert checkpoint.is_file() and not (tmp_path / 'other.safetensors').exists()
    # A time budget only says when to stop: the run is still the same. The history goes into
    # a missing folder, as every other output may.
    history = tmp_path / 'logs' / 'history.json'
    resumed, _ = _train(config, cache, tmp_path / 'resumed.safetensors',
                        extra=('--checkpoint', checkpoint, '--time-budget', 600,
                               '--history', history))
    for name, tensor in straight.items():
        assert torch.allclose(tensor, resumed[name], atol=1e-6), name
    assert isinstance(json.loads(history.read_text()), list)
    # Its weights are written: a checkpoint left behind would only trap the next run.
    assert not checkpoint.exists()


def test_checkpoints_are_checked_before_use(tiny_setup, tmp_path):
    """Checkpoints of other scenes or settings, or not checkpoints at all: one clear error."""
    _, _, scenes = tiny_setup
    config = PretrainConfig.from_dict(TINY['training'])
    checkpoint = tmp_path / 'run.ckpt'
    assert not pretrain(scenes, config, checkpoint, progress=False, stop_after=1)[2]
    with pytest.raises(CheckpointError, match='differs in training scenes'):
        pretrain(scenes[:1], config, checkpoint, progress=False)
    with pytest.raises(CheckpointError, match='differs in training.iterations, training.seed'):
        pretrain(scenes, replace(config, seed=4, iterations=13), checkpoint, progress=False)
    valid = checkpoint.read_bytes()
    state = torch.load(checkpoint, weights_only=True)
    variants = {'garbage': b'not a checkpoint\n' * 8, 'empty': b'',
                'truncated': valid[:len(valid) // 2]}
    for name, content in {'tensor': torch.zeros(3), 'kind': dict(state, kind='other'),
                          'nan history': dict(state, history=[[1, math.nan, 0.5]]),
                          'unmarked': {k: state[k] for k in ('model', 'decoder_optimizer',
                                                             'code_optimizer', 'step',
                                                             'history')}}.items():
        buffer = io.BytesIO()
        torch.save(content, buffer)
        variants[name] = buffer.getvalue()
    for name, content in variants.items():
        bad = tmp_path / f'{name}.ckpt'
        bad.write_bytes(content)
        with pytest.raises(CheckpointError) as caught:
            pretrain(scenes, config, bad, progress=False)
        assert str(caught.value) == (f'checkpoint {bad} is unreadable or not a pretraining '
                                     'checkpoint: delete it'), name


def test_train_refuses_an_unreadable_checkpoint_before_rendering(tmp_path):
    """A garbage checkpoint: exit 2 in one line (no traceback, no unsafe advice), no work."""
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY))
    checkpoint = tmp_path / 'garbage.ckpt'
    checkpoint.write_text('not a checkpoint\n')
    result = _run_train(config, tmp_path / 'empty-cache', tmp_path / 'w.safetensors',
                        extra=('--checkpoint', checkpoint))
    assert result.returncode == 2, result.stderr
    assert (f'checkpoint {checkpoint} is unreadable or not a pretraining checkpoint: delete it'
            in result.stderr)
    assert 'Traceback' not in result.stderr and 'weights_only' not in result.stderr
    assert not (tmp_path / 'empty-cache').exists() and not (tmp_path / 'w.safetensors').exists()


def test_model_card_names_the_parent_once(tmp_path):
    """The recipe holds one ``--init``: the command's own, else a placeholder."""
    card = tmp_path / 'card.md'
    info = {'initialised_from': 'f00d'}
    write_model_card(card, 'w.safetensors', 'abc', info,
                     'neumap train --out w.safetensors --init /tmp/parent.safetensors')
    text = card.read_text()
    assert '\nneumap train --out w.safetensors --init /tmp/parent.safetensors\n' in text
    assert 'PARENT' not in text and 'decoder `f00d`' in text
    write_model_card(card, 'w.safetensors', 'abc', info, 'neumap train --out w.safetensors')
    assert '\nneumap train --out w.safetensors --init PARENT.safetensors\n' in card.read_text()


@pytest.mark.parametrize('extra, changes, message', [
    (('--stop-after', 3), {}, '--stop-after needs a count >= 1 and --checkpoint'),
    (('--stop-after', 0, '--checkpoint', 'c.ckpt'), {}, 'argument --stop-after: must be >= 1'),
    (('--stop-after', -1, '--checkpoint', 'c.ckpt'), {},
     'argument --stop-after: must be >= 1, got -1'),
    (('--iterations', 0), {}, '--iterations must be >= 1'),
    (('--device', 'bogus'), {}, 'device must be auto, cpu or cuda'),
    (('--scenes', 0), {}, 'no training scenes'),
    ((), {'training': {'iterations': '12'}}, 'iterations must be of type int'),
    ((), {'training': {'checkpoint_every': 0}}, 'checkpoint_every must be >= 1'),
    ((), {'training': {'warmup_iterations': -1}}, 'warmup_iterations must be >= 0'),
    ((), {'data': {'real': [{'dataset': '.', 'split': 'train', 'voxel_size': 0}]}},
     'data.real[0] (.): voxel_size must be a finite number > 0, got 0'),
    ((), {'data': {'real': [{'dataset': '/nonexistent', 'split': 'train'}]}},
     'data.real[0]: dataset folder /nonexistent does not exist'),
    ((), {'data': {'real': [{'dataset': '.', 'spilt': 'test'}]}},
     "data.real[0]: unknown keys ['spilt']")])
def test_train_refuses_bad_settings_before_any_work(tmp_path, extra, changes, message):
    """Mistakes in flags or the config end at once, in one line, with nothing written."""
    settings = {section: dict(values, **changes.get(section, {}))
                for section, values in TINY.items()}
    config = tmp_path / 'bad.yaml'
    config.write_text(yaml.safe_dump(settings))
    result = _run_train(config, tmp_path / 'empty-cache', tmp_path / 'w.safetensors',
                        extra=extra)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / 'w.safetensors').exists()
    assert not (tmp_path / 'empty-cache').exists()   # nothing rendered


def test_cached_scenes_are_keyed_by_every_keypoint_setting(tiny_setup):
    """A scene cached with other keypoint settings is rendered again, never reused."""
    _, cache, _ = tiny_setup
    before = set(cache.glob('*.npz'))
    data = TrainingData(**dict(TINY['data'], synthetic_scenes=1))
    other = FeatureConfig(**dict(TINY['features'], contrast_threshold=0.03))
    training_scenes(data, FeatureConfig(**TINY['features']), 16, cache, progress=False)
    assert set(cache.glob('*.npz')) == before        # the same settings: the cached scene
    training_scenes(data, other, 16, cache, progress=False)
    assert len(set(cache.glob('*.npz')) - before) == 1


def test_config_files_read_exponents_as_numbers(tmp_path):
    """``decoder_lr: 1e-3`` is a float (PyYAML alone reads YAML 1.1's string)."""
    from neumap_ros.core.settings import load_settings_file
    path = tmp_path / 'lr.yaml'
    path.write_text('training: {decoder_lr: 1e-3, code_lr: 3.0e-3, seed: 7, name: 1e3x}\n')
    training = load_settings_file(path)['training']
    assert training == {'decoder_lr': 0.001, 'code_lr': 0.003, 'seed': 7, 'name': '1e3x'}
    assert PretrainConfig.from_dict({'decoder_lr': training['decoder_lr']}).decoder_lr == 1e-3


def test_fine_tuning_starts_from_given_weights(tiny_setup, tmp_path):
    """``--init`` continues from a decoder (recorded in its metadata) and rejects a misfit."""
    config, cache, _ = tiny_setup
    base, base_meta = _train(config, cache, tmp_path / 'base.safetensors')
    untouched, meta = _train(config, cache, tmp_path / 'zero.safetensors',
                             extra=('--init', str(tmp_path / 'base.safetensors'),
                                    '--iterations', '0'))
    assert meta['info']['initialised_from'] == base_meta['hash']
    card = (tmp_path / 'MODEL_CARD_zero.md').read_text()
    # The recipe names the parent once, by the path the command was given.
    assert base_meta['hash'] in card and 'PARENT' not in card
    assert f'--init {tmp_path / "base.safetensors"} --iterations 0\n' in card
    for name, tensor in base.items():
        assert torch.equal(tensor, untouched[name]), name
    tuned, _ = _train(config, cache, tmp_path / 'tuned.safetensors',
                      extra=('--init', str(tmp_path / 'base.safetensors')))
    assert any(not torch.allclose(tensor, tuned[name]) for name, tensor in base.items())

    other = dict(TINY, training=dict(TINY['training'],
                                     decoder=dict(TINY['training']['decoder'], width=48)))
    other_config = tmp_path / 'other.yaml'
    other_config.write_text(yaml.safe_dump(other))
    result = run_group(
        [sys.executable, '-m', 'neumap_ros.cli', 'train', '--config', str(other_config),
         '--cache', str(cache), '--out', str(tmp_path / 'bad.safetensors'), '--quiet',
         '--init', str(tmp_path / 'base.safetensors')])
    assert result.returncode == 2 and 'architecture' in result.stderr, result.stderr
    assert not (tmp_path / 'bad.safetensors').exists()


def test_train_refuses_keypoints_the_decoder_cannot_read(tmp_path):
    """ORB keypoints with a 128-d decoder: exit 2 at once, before any scene is rendered."""
    config = tmp_path / 'orb.yaml'
    orb = {'kind': 'orb', 'max_keypoints': 400}
    config.write_text(yaml.safe_dump(dict(TINY, features=orb)))
    cache = tmp_path / 'cache'
    result = run_group(
        [sys.executable, '-m', 'neumap_ros.cli', 'train', '--config', str(config),
         '--cache', str(cache), '--out', str(tmp_path / 'orb.safetensors'), '--quiet'])
    assert result.returncode == 2, result.stderr
    assert "'orb' keypoints do not fit a decoder of 128-d" in result.stderr
    assert 'descriptor_dim' in result.stderr
    assert not cache.exists() and not (tmp_path / 'orb.safetensors').exists()


def test_train_refuses_a_batch_the_processes_cannot_share_before_rendering(tmp_path):
    """voxels_per_batch 4 over 3 processes: exit 2 at once, not after the scenes are made."""
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY))
    result = _run_train(config, tmp_path / 'empty-cache', tmp_path / 'w.safetensors',
                        environment={'WORLD_SIZE': '3', 'RANK': '0'})
    assert result.returncode == 2, result.stderr
    assert ('voxels_per_batch (4) must be divisible by the number of processes (3)'
            in result.stderr)
    assert not (tmp_path / 'empty-cache').exists() and not (tmp_path / 'w.safetensors').exists()


@pytest.mark.parametrize('entry, message', [
    ({'dataset': '{root}', 'split': 'train', 'spilt': 'test'}, r"unknown keys \['spilt'\]"),
    ({'dataset': '{root}'}, 'needs split: name the training split'),
    ({'dataset': '{root}', 'split': None}, 'needs split'),
    ({'split': 'train'}, 'needs dataset'),
    ({'dataset': '{root}/missing', 'split': 'train'}, 'missing does not exist'),
    ({'dataset': '{root}', 'split': 'train', 'voxel_size': 0}, 'voxel_size must be a finite'),
    ({'dataset': '{root}', 'split': 'train', 'voxel_size': -1.0}, 'voxel_size must be'),
    ({'dataset': '{root}', 'split': 'train', 'voxel_size': math.nan}, 'voxel_size must be'),
    ({'dataset': '{root}', 'split': 'train', 'voxel_size': '1'}, 'voxel_size must be'),
    ({'dataset': '{root}', 'split': 'train', 'voxel_size': True}, 'voxel_size must be'),
    ('{root}', 'must be a mapping')])
def test_real_data_entries_are_checked_when_made(tmp_path, entry, message):
    """A typo, a missing split (every frame, queries too) or a bad size: refused at once."""
    def fill(value):
        return value.replace('{root}', str(tmp_path)) if isinstance(value, str) else value
    entry = {k: fill(v) for k, v in entry.items()} if isinstance(entry, dict) else fill(entry)
    with pytest.raises(ValueError, match=message):
        TrainingData(real=[entry])
    # Named explicitly, every frame is a choice: accepted.
    assert TrainingData(real=[{'dataset': str(tmp_path), 'split': 'all', 'voxel_size': 2}])


def test_an_unknown_split_is_refused_before_rendering(tmp_path):
    """The split of a real dataset is looked up before any synthetic scene is rendered."""
    root = tmp_path / 'scene'
    root.mkdir()
    np.savetxt(root / 'frame-000000.pose.txt', np.eye(4))
    cv2.imwrite(str(root / 'frame-000000.color.png'), np.zeros((480, 640, 3), np.uint8))
    data = TrainingData(**dict(TINY['data'], synthetic_scenes=1,
                               real=[{'dataset': str(root), 'split': 'nosuch'}]))
    cache = tmp_path / 'cache'
    with pytest.raises(DatasetError, match="unknown split 'nosuch'"):
        training_scenes(data, FeatureConfig(**TINY['features']), 16, cache, progress=False)
    assert not list(cache.glob('*.npz'))


def test_a_batch_larger_than_the_scenes_is_refused(tiny_setup):
    """Fewer voxels than voxels_per_batch: one clear error, not an empty rank or skewed mean."""
    _, _, scenes = tiny_setup
    voxels = sum(len(s.grid) for s in scenes)
    config = PretrainConfig.from_dict(dict(TINY['training'], voxels_per_batch=voxels + 1))
    with pytest.raises(ValueError, match=f'hold {voxels} voxels, fewer than voxels_per_batch '
                                         fr'\({voxels + 1}\)'):
        pretrain(scenes, config, progress=False)


def _diverging_loss(monkeypatch, at_call: int):
    """Make the training loss NaN from its ``at_call``-th evaluation on."""
    calls = []
    real = pretraining.decoding_loss

    def loss(*args, **kwargs):
        calls.append(1)
        total, parts = real(*args, **kwargs)
        return (total * math.nan if len(calls) >= at_call else total), parts
    monkeypatch.setattr(pretraining, 'decoding_loss', loss)


def test_a_diverging_run_stops_without_saving(tiny_setup, tmp_path, monkeypatch):
    """A non-finite loss ends the run with an error naming the iteration; no checkpoint."""
    _, _, scenes = tiny_setup
    config = PretrainConfig.from_dict(TINY['training'])
    checkpoint = tmp_path / 'run.ckpt'
    _diverging_loss(monkeypatch, 3)
    with pytest.raises(RuntimeError, match='non-finite at iteration 3'):
        pretrain(scenes, config, checkpoint, progress=False, log_every=1)
    assert not checkpoint.exists()


def test_train_writes_nothing_when_training_diverges(tiny_setup, tmp_path, monkeypatch,
                                                     capsys):
    """``neumap train``: exit 2 in one line; no weights, card or history with NaN in them."""
    config, cache, _ = tiny_setup
    _diverging_loss(monkeypatch, 5)
    out, history = tmp_path / 'w.safetensors', tmp_path / 'history.json'
    code = main(['train', '--config', str(config), '--cache', str(cache), '--out', str(out),
                 '--history', str(history), '--quiet'])
    assert code == 2 and 'non-finite at iteration 5' in capsys.readouterr().err
    assert not out.exists() and not history.exists()
    assert not (tmp_path / 'MODEL_CARD_w.md').exists()
