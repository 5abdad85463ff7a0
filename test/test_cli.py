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
The ``neumap`` command line, run as a separate process like a user runs it.

A tiny real slice of the 7-Scenes kitchen (20 mapping frames, 5 queries between them) goes
through build-map, evaluate and info; bad input ends with exit status 2 and one line on stderr.
"""

import json
import os
import pathlib
import subprocess
import sys

import cv2
from neumap_testing import read_report
import pytest

import neumap_ros
from neumap_ros.cli import _localizer_options, build_parser, mapping_config
from neumap_ros.core.decoder_weights import SHIPPED_WEIGHTS
from neumap_ros.core.settings import load_settings_file

SCENE = '7scenes-redkitchen'
MAP_FRAMES = [f'frame-{i:06d}' for i in range(0, 200, 10)]
# Five frames from the middle of the mapped stretch, each halfway between two mapping frames.
QUERY_FRAMES = [f'frame-{i:06d}' for i in range(25, 200, 40)]


def neumap(*args, cwd, timeout=120):
    """Run ``python -m neumap_ros.cli ARGS`` on this checkout; return the CompletedProcess."""
    env = dict(os.environ)
    package_root = str(pathlib.Path(neumap_ros.__file__).resolve().parents[1])
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [package_root, env.get('PYTHONPATH')]))
    return subprocess.run([sys.executable, '-m', 'neumap_ros.cli', *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def error_line(result) -> str:
    """Return the single non-empty stderr line of a failed run (fail if there are more)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_dataset_layout_exits_2_with_one_line(tmp_path):
    """build-map on a folder of no known layout: exit 2, one line naming the expected files."""
    folder = tmp_path / 'not-a-dataset'
    folder.mkdir()
    (folder / 'readme.txt').write_text('nothing here')
    result = neumap('build-map', folder, '--out', tmp_path / 'map.safetensors', '--method',
                    'features', '--quiet', cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith('neumap build-map: error:')
    assert 'not a recognised dataset' in line and 'frame-*.pose.txt' in line
    assert 'cameras/' in line and 'COLMAP' in line
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'map.safetensors').exists()


def test_negative_image_side_exits_2(tmp_path, shared_data_dir):
    """--max-image-side -1 is refused before any work, in one line naming the flag."""
    result = neumap('build-map', shared_data_dir / SCENE, '--out', tmp_path / 'm.safetensors',
                    '--max-image-side', -1, '--quiet', cwd=tmp_path)
    assert result.returncode == 2
    assert '--max-image-side must be >= 0' in error_line(result)
    assert not (tmp_path / 'm.safetensors').exists()


def test_orb_neural_map_with_the_sift_decoder_exits_2(tmp_path, shared_data_dir):
    """A SIFT decoder cannot read ORB keypoints: refused before any keypoint work."""
    result = neumap('build-map', shared_data_dir / SCENE, '--split', 'interleaved-map',
                    '--out', tmp_path / 'm.safetensors', '--features', 'orb',
                    '--weights', SHIPPED_WEIGHTS, '--quiet', cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    line = error_line(result)
    assert "'orb' keypoints do not fit a decoder of 128-d" in line and '--method features' in line
    assert not (tmp_path / 'm.safetensors').exists()


def test_missing_map_file_exits_2(tmp_path, shared_data_dir):
    """Evaluate with a map that does not exist: exit 2, one line naming the file."""
    missing = tmp_path / 'missing.safetensors'
    result = neumap('evaluate', missing, shared_data_dir / SCENE, '--split',
                    'interleaved-query', '--quiet', cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith('neumap evaluate: error:')
    assert 'does not exist' in line and str(missing) in line


def test_an_output_that_is_a_folder_exits_2_before_any_work(tmp_path, shared_data_dir):
    """build-map --out FOLDER is refused at once (not after mapping), in one line."""
    folder = tmp_path / 'maps'
    folder.mkdir()
    result = neumap('build-map', shared_data_dir / SCENE, '--split', 'interleaved-map',
                    '--out', folder, '--quiet', cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert f'{folder} is a folder' in error_line(result)


@pytest.mark.parametrize('config, flags, message', [
    ('features: {max_keypoints: "512"}', [], 'max_keypoints must be of type int'),
    ('mapping: {voxel_size: "2"}', [], 'voxel_size must be of type float'),
    ('mapping: {voxel_size: 0}', [], 'voxel_size must be > 0.0'),
    ('', ['--max-keypoints', '-5'], 'max_keypoints must be >= 1'),
    ('', ['--device', 'bogus'], "device must be auto, cpu or cuda[:N], got 'bogus'"),
    # A misspelt section would leave the defaults in place without a word.
    ('maping: {voxel_size: 2.0}', [], "unknown sections ['maping']"),
    ('mapping: [1, 2]', [], 'section mapping must be a mapping of settings'),
    ('mapping: {importance_l1: .inf}', [], 'importance_l1 must be finite')])
def test_bad_settings_exit_2_before_any_work(tmp_path, shared_data_dir, config, flags,
                                             message):
    """Settings of the wrong type or range, from a file or a flag: one line naming them."""
    settings = tmp_path / 'settings.yaml'
    settings.write_text(config + '\n')
    result = neumap('build-map', shared_data_dir / SCENE, '--split', 'interleaved-map',
                    '--out', tmp_path / 'm.safetensors', '--config', settings, *flags,
                    '--quiet', cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert message in error_line(result)
    assert not (tmp_path / 'm.safetensors').exists()


@pytest.fixture(scope='module')
def built_map(tmp_path_factory, shared_data_dir):
    """Build a feature map of 20 kitchen frames with the CLI; return (folder, map, result)."""
    folder = tmp_path_factory.mktemp('cli')
    split = folder / 'map.txt'
    split.write_text('\n'.join(MAP_FRAMES) + '\n')
    map_path = folder / 'kitchen.safetensors'
    result = neumap('build-map', shared_data_dir / SCENE, '--split', split, '--out', map_path,
                    '--method', 'features', '--max-keypoints', 600, '--max-image-side', 480,
                    '--quiet', cwd=folder)
    return folder, map_path, result


def test_build_map_writes_a_feature_map(built_map):
    """build-map exits 0, reports what it wrote, and the file is there."""
    _, map_path, result = built_map
    assert result.returncode == 0, result.stderr
    assert f'wrote {map_path}' in result.stdout and 'from 20 frames' in result.stdout
    assert map_path.stat().st_size > 100_000


def test_info_describes_the_map(built_map):
    """Info prints JSON with the method, size, frame count and feature settings."""
    folder, map_path, _ = built_map
    result = neumap('info', map_path, cwd=folder)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info['method'] == 'features'
    assert info['bytes'] == map_path.stat().st_size
    assert info['frames'] == 20 and info['points'] > 5000
    assert info['features']['kind'] == 'sift' and info['features']['max_keypoints'] == 600
    assert info['features']['max_image_side'] == 480
    assert info['info']['dataset'] == SCENE and info['info']['mapping_frames'] == 20


def test_evaluate_localizes_held_back_frames(built_map, shared_data_dir):
    """Evaluate writes a complete JSON report and a PNG plot; all queries within 5 cm/5 deg."""
    folder, map_path, _ = built_map
    split = folder / 'query.txt'
    split.write_text('\n'.join(QUERY_FRAMES) + '\n')
    report_path, plot_path = folder / 'report.json', folder / 'report.png'
    result = neumap('evaluate', map_path, shared_data_dir / SCENE, '--split', split, '--json',
                    report_path, '--plot', plot_path, '--device', 'cpu', '--quiet', cwd=folder)
    assert result.returncode == 0, result.stderr
    report = read_report(report_path)
    required = {'method', 'queries', 'localized', 'median_translation_m',
                'median_rotation_deg', 'recall', 'map_bytes', 'mapping_seconds', 'latency_ms'}
    assert required <= set(report)
    assert report['method'] == 'features'
    assert report['queries'] == 5 and report['localized'] == 5
    assert report['map_bytes'] == map_path.stat().st_size
    assert report['mapping_seconds'] > 0
    assert set(report['recall']) == {'0.02m_2deg', '0.05m_5deg', '0.10m_5deg', '0.25m_2deg',
                                     '0.5m_5deg', '5m_10deg'}
    assert report['recall']['0.05m_5deg'] == 1.0
    assert report['median_translation_m'] < 0.02 and report['median_rotation_deg'] < 1.0
    latency = report['latency_ms']
    assert latency['median'] > 0 and latency['p90'] >= latency['median']
    assert {'features', 'retrieval', 'matching', 'pnp', 'total'} <= set(latency['stages'])
    assert [q['name'] for q in report['per_query']] == QUERY_FRAMES
    assert plot_path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # The table on stdout carries the same numbers.
    assert result.stdout.splitlines()[1].split()[:3] == ['features', '5', '5']


def test_evaluate_refuses_empty_splits_and_survives_bad_queries(built_map, shared_data_dir,
                                                                tmp_path):
    """
    An empty query split is an error, not a report of zeros; an unreadable query is a failure.

    The bad query (an image of another size than its camera) counts as not localized, with
    its reason, and the other queries are still scored.
    """
    _, map_path, _ = built_map
    source, scene = shared_data_dir / SCENE, tmp_path / 'scene'
    scene.mkdir()
    (scene / 'rgb-camera-intrinsics.txt').symlink_to(source / 'rgb-camera-intrinsics.txt')
    for name in QUERY_FRAMES[:2]:
        for suffix in ('color.jpg', 'pose.txt'):
            (scene / f'{name}.{suffix}').symlink_to(source / f'{name}.{suffix}')
    (scene / 'split-none.txt').write_text('# no frames\n')
    result = neumap('evaluate', map_path, scene, '--split', 'none', '--quiet', cwd=tmp_path)
    assert result.returncode == 2 and 'has no frames to localize' in error_line(result)

    small = cv2.resize(cv2.imread(str(source / f'{QUERY_FRAMES[1]}.color.jpg')), (320, 240))
    (scene / f'{QUERY_FRAMES[1]}.color.jpg').unlink()
    cv2.imwrite(str(scene / f'{QUERY_FRAMES[1]}.color.jpg'), small)
    report_path = tmp_path / 'report.json'
    result = neumap('evaluate', map_path, scene, '--json', report_path, '--quiet', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = read_report(report_path)
    assert report['queries'] == 2 and report['localized'] == 1
    [bad] = [q for q in report['per_query'] if q['name'] == QUERY_FRAMES[1]]
    assert bad['status'] == 'bad_input' and 'is 320x240 but its camera is 640x480' in \
        result.stderr


def test_build_map_settings_layer_defaults_config_and_flags():
    """A flag beats the --config file's settings, which beat the defaults."""
    parser = build_parser()
    args = parser.parse_args(['build-map', 'data', '--out', 'm.safetensors', '--config',
                              'mapping.yaml', '--iterations', '30'])
    settings = mapping_config(args, {'mapping': {'voxel_size': 0.7, 'iterations': 20}})
    assert (settings.voxel_size, settings.iterations) == (0.7, 30)
    assert settings.refine_track_points is False
    args = parser.parse_args(['build-map', 'data', '--out', 'm.safetensors',
                              '--refine-track-points'])
    assert mapping_config(args, {}).refine_track_points is True


def test_evaluate_flags_override_only_the_localizer_settings_given():
    """--top-voxels/--voting-keypoints reach LocalizerOptions; the rest keep defaults."""
    from neumap_ros.core.localizer import LocalizerOptions
    parser = build_parser()
    args = parser.parse_args(['evaluate', 'm.safetensors', 'data', '--voting-keypoints', '512',
                              '--top-voxels', '32'])
    options = _localizer_options(args)
    assert (options.voting_keypoints, options.top_voxels) == (512, 32)
    assert options.min_inliers == LocalizerOptions().min_inliers
    assert _localizer_options(parser.parse_args(['evaluate', 'm.safetensors', 'data'])) == \
        LocalizerOptions()
    # The query resolution of the README's kitchen numbers, from the command line too.
    assert _localizer_options(parser.parse_args(
        ['evaluate-bag', 'm.safetensors', 'bag', '--max-image-side', '480'])).max_image_side == 480
    # A side too small for any keypoint is refused with the settings, not at the first image.
    with pytest.raises(ValueError, match='max_image_side must be -1'):
        LocalizerOptions(max_image_side=8)
    for flag, value in (('--top-voxels', '-2'), ('--voting-keypoints', '0'),
                        ('--min-inliers', '0')):
        with pytest.raises(ValueError, match=f'{flag[2:].replace("-", "_")} must be >= 1'):
            _localizer_options(parser.parse_args(['evaluate', 'm.safetensors', 'data', flag,
                                                  value]))


@pytest.mark.parametrize('argv', [['--max-frames', '-1'], ['--every', '0'],
                                  ['--sync-tolerance', '-1'], ['--sync-tolerance', 'nan']])
def test_bag_command_counts_are_range_checked(argv, capsys):
    """Negative counts and tolerances are refused by the parser, not half-obeyed."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(['evaluate-bag', 'm.safetensors', 'bag', *argv])
    assert exit_info.value.code == 2
    assert f'argument {argv[0]}: must be >= ' in capsys.readouterr().err
    with pytest.raises(SystemExit):   # a negative seed failed only after feature extraction
        build_parser().parse_args(['build-map', 'data', '--out', 'm.safetensors', '--seed', '-1'])
    assert 'argument --seed: must be >= 0, got -1' in capsys.readouterr().err


@pytest.mark.parametrize('preset, expected', [
    ('mapping.yaml', {}),
    ('mapping_precise.yaml', {'landmarks_per_voxel': 256, 'iterations': 3000})])
def test_shipped_mapping_presets_load_through_the_settings_layer(preset, expected):
    """config/mapping.yaml restates the defaults; the precision preset changes only the budget."""
    from neumap_ros.core.mapping import MappingConfig
    path = pathlib.Path(neumap_ros.__file__).resolve().parents[1] / 'config' / preset
    args = build_parser().parse_args(['build-map', 'data', '--out', 'm.safetensors',
                                      '--config', str(path)])
    settings = mapping_config(args, load_settings_file(path))
    changed = {key: value for key, value in settings.to_dict().items()
               if value != getattr(MappingConfig(), key)}
    assert changed == expected
