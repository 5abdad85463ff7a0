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
The ``neumap`` command: build maps, evaluate them, train decoders, convert bags, run the demo.

Every subcommand is a thin shell over :mod:`neumap_ros.core`; errors in user input end with a
one-line message and exit status 2 instead of a traceback.
"""

import argparse
from dataclasses import replace
import json
import logging
import math
from pathlib import Path
import sys

from neumap_ros.core.settings import load_settings_file, with_overrides

LOG = logging.getLogger('neumap')


class UsageError(Exception):
    """A user mistake worth one clear line (bad path, bad option combination...)."""


def _number(kind, minimum):
    """Return an argparse type: ``kind`` (int or float), finite and at least ``minimum``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'not a number: {text!r}')
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f'must be >= {minimum}, got {text}')
        return value
    parse.__name__ = kind.__name__   # argparse names the type in its messages
    return parse


def _feature_config(args, base=None):
    from neumap_ros.core.features import FeatureConfig
    config = base or FeatureConfig()
    overrides = {}
    if getattr(args, 'features', None):
        overrides['kind'] = args.features
    if getattr(args, 'max_keypoints', None) is not None:
        overrides['max_keypoints'] = args.max_keypoints   # checked by FeatureConfig
    if getattr(args, 'max_image_side', None) is not None:
        if args.max_image_side < 0:
            raise UsageError(f'--max-image-side must be >= 0, got {args.max_image_side}')
        overrides['max_image_side'] = args.max_image_side
    return replace(config, **overrides)


def mapping_config(args, settings: dict):
    """Return build-map's mapping settings: defaults, then the --config file, then flags."""
    from neumap_ros.core.mapping import MappingConfig
    mapping = with_overrides(MappingConfig(), settings.get('mapping', {}), args.config or 'config')
    overrides = {k: v for k, v in {
        'voxel_size': args.voxel_size, 'iterations': args.iterations,
        'time_budget_s': args.time_budget, 'code_precision': args.precision,
        'seed': args.seed, 'prune_threshold': args.prune_threshold,
        'importance_l1': args.importance_l1,
        'finetune_iterations': args.finetune_iterations,
        'refine_track_points': args.refine_track_points}.items() if v is not None}
    return replace(mapping, **overrides)


def cmd_build_map(args) -> int:
    """Build a neural (or feature-matching) map from a dataset split."""
    from neumap_ros.core.decoder import resolve_device
    from neumap_ros.core.map_building import build_map, BuildRequest
    if resolve_device(args.device).type != 'cpu':
        LOG.info('--device %s: code optimisation runs on the CPU in this release', args.device)
    settings = load_settings_file(args.config, ('mapping', 'features'))
    mapping = mapping_config(args, settings)
    from neumap_ros.core.features import FeatureConfig
    features = _feature_config(args, with_overrides(
        FeatureConfig(), settings.get('features', {}), args.config or 'config'))
    summary = build_map(BuildRequest(
        Path(args.dataset), args.split, Path(args.out), args.method, features, mapping,
        Path(args.weights) if args.weights else None, not args.quiet,
        Path(args.checkpoint) if args.checkpoint else None))
    print(f'wrote {summary.output} ({summary.method}, {summary.map_bytes / 1e6:.2f} MB) from '
          f'{summary.frames} frames / {summary.points} 3D points in {summary.seconds:.1f} s')
    return 0


def _localizer_options(args):
    from neumap_ros.core.localizer import LocalizerOptions
    options = LocalizerOptions()
    overrides = {k: v for k, v in {'max_keypoints': getattr(args, 'max_keypoints', None),
                                   'max_image_side': getattr(args, 'max_image_side', None),
                                   'top_voxels': getattr(args, 'top_voxels', None),
                                   'voting_keypoints': getattr(args, 'voting_keypoints', None),
                                   'min_inliers': getattr(args, 'min_inliers', None)}.items()
                 if v is not None}
    return replace(options, **overrides)


def cmd_evaluate(args) -> int:
    """Localize every query of a split and write the JSON report (and plot)."""
    from neumap_ros.core.datasets import open_dataset
    from neumap_ros.core.evaluation import evaluate_frames, format_table, summarize
    from neumap_ros.core.localizer import load_localizer
    from neumap_ros.core.map_io import require_writable
    require_writable(args.json, args.plot)
    localizer = load_localizer(args.map, args.device, _localizer_options(args), args.weights)
    dataset = open_dataset(args.dataset)
    frames = dataset.split(args.split)
    if not frames:
        raise UsageError(f'split {args.split!r} of {dataset.root} has no frames to localize')
    records = evaluate_frames(localizer, frames, progress=not args.quiet)
    report = summarize(records, localizer.method, localizer.map_bytes,
                       localizer.map.info.get('mapping_seconds'),
                       {'map': str(args.map), 'dataset': dataset.name, 'split': args.split,
                        'map_info': localizer.describe()})
    _write_report(report, args.json, args.plot, f'{dataset.name} / {args.split}')
    print(format_table([report]))
    return 0


def _write_report(report, json_path, plot_path, title):
    from neumap_ros.core.evaluation import json_safe
    from neumap_ros.core.map_io import atomic_write_bytes
    if json_path:
        atomic_write_bytes(json_path, json.dumps(json_safe(report), indent=1,
                                                 allow_nan=False).encode())
    if plot_path:
        from neumap_ros.core.plots import plot_reports
        plot_reports([report], plot_path, title)


def cmd_info(args) -> int:
    """Print a map's metadata."""
    from neumap_ros.core.localizer import map_method
    from neumap_ros.core.feature_map import FeatureMap
    from neumap_ros.core.neural_map import NeuralMap
    method = map_method(args.map)
    size = Path(args.map).stat().st_size
    if method == 'neural':
        neural = NeuralMap.load(args.map)
        print(json.dumps({'method': method, 'bytes': size, 'voxels': len(neural.grid),
                          'voxel_size': neural.grid.voxel_size,
                          'kept_codes': neural.kept_codes,
                          'code_precision': neural.code_precision,
                          'decoder_hash': neural.decoder_hash,
                          'features': neural.feature_config.to_dict(),
                          'info': neural.info}, indent=1, default=str))
    else:
        features = FeatureMap.load(args.map)
        print(json.dumps({'method': method, 'bytes': size, 'points': len(features.xyz),
                          'frames': len(features.frame_centres),
                          'features': features.feature_config.to_dict(),
                          'info': features.info}, indent=1, default=str))
    return 0


def cmd_dataset_to_bag(args) -> int:
    """Write a dataset split as a rosbag2 recording (images, calibration, TF, ground truth)."""
    from neumap_ros.core.bags import dataset_to_bag
    summary = dataset_to_bag(
        Path(args.dataset), args.split, Path(args.out), storage=args.storage, fps=args.fps,
        image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
        gt_topic=args.gt_topic, depth_topic=args.depth_topic or None, encoding=args.encoding,
        camera_frame=args.camera_frame, drift=not args.no_drift,
        image_reliable=not args.best_effort, max_frames=args.max_frames)
    print(f'wrote {summary.path} ({summary.storage}): {summary.frames} frames over '
          f'{summary.duration_s:.1f} s on {sorted(summary.topics.values())}')
    return 0


def _bag_progress(args, what: str):
    """Return a progress(done, total) callback drawing a bar, or None with --quiet."""
    if getattr(args, 'quiet', False):
        return None
    from tqdm import tqdm
    bar = tqdm(desc=what, unit='img', leave=False)

    def update(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()
    return update


def cmd_bag_to_dataset(args) -> int:
    """Extract a bag's posed images as a 7-Scenes-layout dataset for build-map."""
    from neumap_ros.core.bags import bag_to_dataset
    summary = bag_to_dataset(
        Path(args.bag), Path(args.out), args.image_topic, args.camera_info_topic,
        args.gt_topic, args.depth_topic, args.world_frame, args.camera_frame, args.every,
        args.max_frames, args.split_name, args.sync_tolerance,
        progress=_bag_progress(args, 'extract'), rectified_input=args.rectified,
        keyframe_translation_m=args.keyframe_translation,
        keyframe_rotation_deg=args.keyframe_rotation)
    print(f'wrote {summary.frames} frames to {summary.path} (poses from {summary.pose_source}'
          f', {summary.skipped_without_pose} skipped, {summary.not_keyframes} too close to a '
          f'keyframe); build a map with: neumap build-map {summary.path} --split '
          f'{summary.split} --out MAP')
    return 0


def cmd_evaluate_bag(args) -> int:
    """Localize a bag's images offline and write the evaluate report and TUM trajectories."""
    from neumap_ros.core.bags import evaluate_bag
    from neumap_ros.core.evaluation import format_table
    from neumap_ros.core.map_io import require_writable
    require_writable(args.json, args.tum, args.gt_tum, args.plot)
    report = evaluate_bag(
        Path(args.map), Path(args.bag), args.json, args.tum, args.gt_tum, args.plot,
        args.image_topic, args.camera_info_topic, args.gt_topic, args.world_frame, args.every,
        args.max_frames, args.device, _localizer_options(args), args.weights,
        progress=_bag_progress(args, 'localize'), rectified_input=args.rectified,
        camera_frame=args.camera_frame, sync_tolerance_s=args.sync_tolerance)
    print(format_table([report]))
    return 0


RECTIFIED_HELP = 'the images are rectified (image_rect): use camera_info P, not K and D'
QUERY_SIDE_HELP = ('detect query keypoints on images downscaled to this side (0: full '
                   'resolution; default: as the map was built)')


def _add_bag_commands(commands) -> None:
    to_bag = commands.add_parser('dataset-to-bag', help='write a dataset split as a rosbag2')
    to_bag.add_argument('dataset', help='dataset folder (7-Scenes, Strecha or COLMAP layout)')
    to_bag.add_argument('--split', default=None, help='split name or list file (default: all)')
    to_bag.add_argument('--out', required=True, help='bag folder to create')
    to_bag.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    to_bag.add_argument('--fps', type=float, default=10.0)
    to_bag.add_argument('--encoding', choices=('bgr8', 'rgb8', 'mono8'), default='bgr8')
    to_bag.add_argument('--image-topic', default='/camera/color/image_raw')
    to_bag.add_argument('--camera-info-topic', default='/camera/color/camera_info')
    to_bag.add_argument('--gt-topic', default='/ground_truth/camera_pose')
    to_bag.add_argument('--depth-topic', default='', help='also write depth (16UC1 mm)')
    to_bag.add_argument('--camera-frame', default='camera_color_optical_frame')
    to_bag.add_argument('--no-drift', action='store_true', help='map -> odom stays identity')
    to_bag.add_argument('--best-effort', action='store_true',
                        help='record camera topics as offered best-effort')
    to_bag.add_argument('--max-frames', type=_number(int, 0), default=0,
                        help='first frames of the split only (0: all)')
    to_bag.set_defaults(handler=cmd_dataset_to_bag)

    to_dataset = commands.add_parser('bag-to-dataset',
                                     help='extract posed images of a bag for build-map')
    to_dataset.add_argument('bag')
    to_dataset.add_argument('--out', required=True, help='dataset folder to write')
    to_dataset.add_argument('--image-topic', help='default: the only image topic')
    to_dataset.add_argument('--camera-info-topic', help='default: the only CameraInfo topic')
    to_dataset.add_argument('--gt-topic', help='PoseStamped of the camera (default: the only '
                                               'one; "" to use TF)')
    to_dataset.add_argument('--depth-topic', help='depth images to keep (16UC1 mm or 32FC1 m)')
    to_dataset.add_argument('--world-frame', default='map', help='TF poses: the world frame')
    to_dataset.add_argument('--camera-frame', help='TF poses: default the image frame_id')
    to_dataset.add_argument('--every', type=_number(int, 1), default=1,
                            help='keep every n-th image')
    to_dataset.add_argument('--max-frames', type=_number(int, 0), default=0,
                            help='stop after this many frames written (0: all)')
    to_dataset.add_argument('--keyframe-translation', type=_number(float, 0.0), default=0.0,
                            metavar='M', help='write an image only once the camera moved this '
                                              'far since the last one written ...')
    to_dataset.add_argument('--keyframe-rotation', type=_number(float, 0.0), default=0.0,
                            metavar='DEG', help='... or turned this much (both 0: every image)')
    to_dataset.add_argument('--split-name', default='all')
    to_dataset.add_argument('--sync-tolerance', type=_number(float, 0.0), default=0.0,
                            help='seconds between image and calibration/pose stamps')
    to_dataset.add_argument('--rectified', action='store_true', help=RECTIFIED_HELP)
    to_dataset.add_argument('--quiet', action='store_true', help='no progress bar')
    to_dataset.set_defaults(handler=cmd_bag_to_dataset)

    evaluate = commands.add_parser('evaluate-bag',
                                   help='localize a bag offline against a map and score it')
    evaluate.add_argument('map')
    evaluate.add_argument('bag')
    evaluate.add_argument('--json', help='write the report here')
    evaluate.add_argument('--tum', help='estimated camera trajectory (TUM, for evo)')
    evaluate.add_argument('--gt-tum', help='ground-truth camera trajectory (TUM)')
    evaluate.add_argument('--plot', help='write error CDFs and trajectory (PNG)')
    evaluate.add_argument('--image-topic')
    evaluate.add_argument('--camera-info-topic')
    evaluate.add_argument('--gt-topic', help='default: the only PoseStamped topic, else TF')
    evaluate.add_argument('--world-frame', default='map')
    evaluate.add_argument('--camera-frame', help='TF poses: default the image frame_id')
    evaluate.add_argument('--sync-tolerance', type=_number(float, 0.0), default=0.0,
                          help='seconds between image and calibration/pose stamps')
    evaluate.add_argument('--quiet', action='store_true', help='no progress bar')
    evaluate.add_argument('--every', type=_number(int, 1), default=1)
    evaluate.add_argument('--max-frames', type=_number(int, 0), default=0,
                          help='stop after this many frames scored (0: all)')
    evaluate.add_argument('--device', default='auto')
    evaluate.add_argument('--weights', help='decoder weights the map was built with')
    evaluate.add_argument('--max-keypoints', type=int)
    evaluate.add_argument('--max-image-side', type=int, help=QUERY_SIDE_HELP)
    evaluate.add_argument('--top-voxels', type=int)
    evaluate.add_argument('--voting-keypoints', type=int)
    evaluate.add_argument('--min-inliers', type=int)
    evaluate.add_argument('--rectified', action='store_true', help=RECTIFIED_HELP)
    evaluate.set_defaults(handler=cmd_evaluate_bag)


def cmd_train(args) -> int:
    """Pretrain the scene-agnostic decoder (single process or under torchrun)."""
    import datetime
    import os
    import time

    from torch import distributed as dist

    from neumap_ros.core.decoder_weights import default_model_card, save_decoder, \
        write_model_card
    from neumap_ros.core.features import descriptor_mismatch, FeatureConfig
    from neumap_ros.core.pretrain_data import describe_scenes, RENDERER_VERSION, \
        training_scenes, TrainingData
    from neumap_ros.core.pretraining import check_batch_split, checkpoint_identity, pretrain, \
        PretrainConfig, read_checkpoint
    from neumap_ros.core.decoder import decoder_hash, resolve_device
    from neumap_ros.core.map_io import atomic_write_bytes, require_writable
    if args.stop_after is not None and (args.stop_after < 1 or not args.checkpoint):
        raise UsageError('--stop-after needs a count >= 1 and --checkpoint (the run resumes '
                         'from it; no weights are written until training ends)')
    if resolve_device(args.device).type != 'cpu':
        LOG.info('--device %s: pretraining runs on the CPU in this release', args.device)
    card = Path(args.model_card or default_model_card(args.out))
    # Not after an hour of rendering and training.
    require_writable(args.out, card, args.checkpoint, args.history)
    settings = load_settings_file(args.config, ('data', 'features', 'training'))
    try:
        training = PretrainConfig.from_dict(settings.get('training', {}))
    except (TypeError, ValueError) as error:
        raise UsageError(f'{args.config}: {error}')
    source = args.config or 'config'
    data = with_overrides(TrainingData(), settings.get('data', {}), source)
    features = with_overrides(FeatureConfig(), settings.get('features', {}), source)
    overrides = {k: v for k, v in {'iterations': args.iterations,
                                   'time_budget_s': args.time_budget}.items() if v is not None}
    training = replace(training, **overrides)   # checked again (PretrainConfig)
    if training.iterations < 1 and not args.init:
        raise UsageError('--iterations must be >= 1 (0 only with --init, to copy weights)')
    if args.scenes is not None:
        data = replace(data, synthetic_scenes=args.scenes)
    if data.synthetic_scenes == 0 and not data.real:
        raise UsageError('no training scenes: set data.synthetic_scenes (--scenes) >= 1 or '
                         'list datasets in data.real')
    # Before an hour of rendering, and before any process group exists.
    distributed = 'WORLD_SIZE' in os.environ and int(os.environ['WORLD_SIZE']) > 1
    check_batch_split(training, int(os.environ['WORLD_SIZE']) if distributed else 1)
    mismatch = descriptor_mismatch(features.kind, training.decoder.descriptor_dim)
    if mismatch:  # before an hour of rendering, not after
        raise UsageError(f'{args.config}: {mismatch}; set training.decoder.descriptor_dim to '
                         f'match features.kind')
    # Checked before any process group exists, so a misfit never leaves one behind.
    initial = None
    if args.init:
        from neumap_ros.core.decoder_weights import load_decoder
        initial, initial_meta = load_decoder(args.init)
        if initial.config != training.decoder:
            raise UsageError(f'{args.init}: its architecture {initial.config.to_dict()} differs '
                             f'from the one in the config, {training.decoder.to_dict()}')
        # Loaded weights are frozen for inference; fine-tuning trains them again.
        initial.requires_grad_(True)
    # What the scenes are made of: a checkpoint of other data, settings or parent must not
    # resume. Paths resolved, so the same datasets named from another folder still match.
    real = [dict(entry, dataset=str(Path(str(entry['dataset'])).resolve()))
            for entry in data.real]
    data_identity = {'data': dict(data.to_dict(), real=real), 'features': features.to_dict(),
                     'renderer': RENDERER_VERSION}
    # Before an hour of rendering: a foreign or corrupt checkpoint ends the run now.
    resume = read_checkpoint(args.checkpoint, checkpoint_identity(
        training, decoder_hash(initial) if initial is not None else None, data_identity))
    if distributed:
        # gloo: training runs on the CPU. The long timeout covers rank 0 rendering a cold
        # scene cache alone (about 80 min for the shipped recipe) while the others wait.
        dist.init_process_group('gloo', timeout=datetime.timedelta(hours=6))
    rank = dist.get_rank() if distributed else 0
    try:
        started = time.monotonic()
        # Rank 0 renders and caches the scenes; the others then read the same cache.
        if rank == 0:
            scenes = training_scenes(data, features, training.decoder.codes_per_voxel,
                                     args.cache, not args.quiet)
        if distributed:
            dist.barrier()
        if rank != 0:
            scenes = training_scenes(data, features, training.decoder.codes_per_voxel,
                                     args.cache, False)
        data_seconds = time.monotonic() - started
        decoder, history, finished = pretrain(scenes, training, args.checkpoint,
                                              not args.quiet, decoder=initial,
                                              stop_after=args.stop_after or 0,
                                              data_identity=data_identity, resume=resume)
        if not finished:
            if rank == 0:
                print(f'stopped after {args.stop_after} iterations; run again with the same '
                      f'settings and --checkpoint {args.checkpoint} to resume (no weights '
                      'written yet)')
            return 0
        if rank == 0:
            # No NaN (invalid JSON) in the outputs; checked before any of them is written.
            history_json = json.dumps(history, allow_nan=False).encode()
            info = {'training': training.to_dict(), 'data': data.to_dict(),
                    'features': features.to_dict(), 'scenes': describe_scenes(scenes),
                    'data_seconds': round(data_seconds, 1),
                    'train_seconds': round(time.monotonic() - started - data_seconds, 1),
                    'processes': dist.get_world_size() if distributed else 1,
                    'final_loss': history[-1] if history else None}
            if initial is not None:
                info['initialised_from'] = initial_meta.get('hash')
            digest = save_decoder(args.out, decoder, info)
            # Every flag that changes the weights, so the card's command remakes them.
            flags = [('--config', args.config), ('--out', args.out),
                     ('--model-card', args.model_card), ('--init', args.init),
                     ('--iterations', args.iterations), ('--scenes', args.scenes),
                     ('--time-budget', args.time_budget)]
            recipe = ' '.join(['neumap train'] + [f'{flag} {value}' for flag, value in flags
                                                  if value is not None])
            write_model_card(card, Path(args.out).name, digest, info, recipe)
            if args.history:
                atomic_write_bytes(args.history, history_json)
            if args.checkpoint and Path(args.checkpoint).exists():
                Path(args.checkpoint).unlink()   # only now: the weights it led to are on disk
            print(f'wrote {args.out} (decoder {digest[:12]}) after '
                  f'{info["train_seconds"]:.0f} s of training')
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def cmd_demo(args) -> int:
    """Run the end-to-end demo on the embedded default scene."""
    from neumap_ros.ros.demo import run_demo
    return run_demo(Path(args.output), args.weights, args.quiet)


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``neumap``."""
    parser = argparse.ArgumentParser(prog='neumap', description=__doc__.splitlines()[0])
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    commands = parser.add_subparsers(dest='command', required=True)

    build = commands.add_parser('build-map', help='build a map from a posed dataset split')
    build.add_argument('dataset', help='dataset folder (7-Scenes, Strecha or COLMAP layout)')
    build.add_argument('--split', default=None, help='split name or list file (default: all)')
    build.add_argument('--out', required=True, help='output map file (.safetensors)')
    build.add_argument('--method', choices=('neural', 'features'), default='neural')
    build.add_argument('--weights', help='decoder weights (default: the shipped decoder)')
    build.add_argument('--device', default='auto',
                       help='auto, cpu or cuda; checked, but code optimisation runs on the CPU '
                            'in this release (it was only ever measured there)')
    build.add_argument('--config', help='YAML with "mapping:" and "features:" sections')
    build.add_argument('--features', choices=('sift', 'orb'))
    build.add_argument('--max-keypoints', type=int)
    build.add_argument('--max-image-side', type=int,
                       help='detect keypoints on images downscaled to this longer side in '
                            'pixels (0: full resolution); stored in the map, queries follow it')
    build.add_argument('--voxel-size', type=float)
    build.add_argument('--iterations', type=int)
    build.add_argument('--time-budget', type=float, help='seconds of code optimisation')
    build.add_argument('--precision', choices=('fp32', 'fp16', 'int8'))
    build.add_argument('--importance-l1', type=float)
    build.add_argument('--prune-threshold', type=float)
    build.add_argument('--finetune-iterations', type=int)
    build.add_argument('--refine-track-points', action='store_const', const=True,
                       help="fit landmarks to their keypoints' rays and depths (README)")
    build.add_argument('--seed', type=_number(int, 0))
    build.add_argument('--checkpoint', help='resumable checkpoint file for long mapping runs')
    build.add_argument('--quiet', action='store_true', help='no progress bars')
    build.set_defaults(handler=cmd_build_map)

    evaluate = commands.add_parser('evaluate', help='localize a query split against a map')
    evaluate.add_argument('map')
    evaluate.add_argument('dataset')
    evaluate.add_argument('--split', default=None)
    evaluate.add_argument('--json', help='write the report here')
    evaluate.add_argument('--plot', help='write error CDFs and trajectory (PNG)')
    evaluate.add_argument('--device', default='auto')
    evaluate.add_argument('--weights', help='decoder weights the map was built with')
    evaluate.add_argument('--max-keypoints', type=int)
    evaluate.add_argument('--max-image-side', type=int, help=QUERY_SIDE_HELP)
    evaluate.add_argument('--top-voxels', type=int)
    evaluate.add_argument('--voting-keypoints', type=int)
    evaluate.add_argument('--min-inliers', type=int)
    evaluate.add_argument('--quiet', action='store_true')
    evaluate.set_defaults(handler=cmd_evaluate)

    train = commands.add_parser('train', help='pretrain the scene-agnostic decoder')
    train.add_argument('--config', default=None,
                       help='YAML with "data:", "features:" and "training:" sections')
    train.add_argument('--out', required=True, help='decoder weights to write (.safetensors)')
    train.add_argument('--cache', default='build/pretrain_cache',
                       help='folder for rendered/extracted training scenes')
    train.add_argument('--checkpoint', help='resumable checkpoint: resumes when it exists (same '
                       'settings, data and --init only); deleted once the weights are written')
    train.add_argument('--model-card', help='Markdown model card to write (default: next '
                       'to --out, MODEL_CARD.md for decoder.safetensors, MODEL_CARD_x.md '
                       'for decoder_x.safetensors or x.safetensors)')
    train.add_argument('--init', help='decoder weights to start from (fine-tuning); the '
                       'architecture must match the config')
    train.add_argument('--iterations', type=int)
    train.add_argument('--time-budget', type=float, help='stop training after this many s')
    train.add_argument('--stop-after', type=_number(int, 1),
                       help='run this many iterations now, checkpoint, and stop without writing '
                            'weights (resume later; needs --checkpoint)')
    train.add_argument('--scenes', type=int, help='number of synthetic scenes')
    train.add_argument('--device', default='cpu',
                       help='checked; pretraining runs on the CPU in this release')
    train.add_argument('--history', help='write the loss history (JSON) here')
    train.add_argument('--quiet', action='store_true')
    train.set_defaults(handler=cmd_train)

    demo = commands.add_parser('demo', help='map the default scene and replay it through ROS')
    demo.add_argument('--output', default='out/demo', help='working folder of the demo')
    demo.add_argument('--weights', help='decoder weights (default: the shipped decoder)')
    demo.add_argument('--quiet', action='store_true')
    demo.set_defaults(handler=cmd_demo)

    info = commands.add_parser('info', help='print what a map file holds')
    info.add_argument('map')
    info.set_defaults(handler=cmd_info)

    _add_bag_commands(commands)
    return parser


def _bag_errors() -> tuple:
    # Imported only when an error is being reported: the bag module loads rosbags and cv2.
    from neumap_ros.core.bags import rosbags_errors
    return rosbags_errors()


def main(argv=None) -> int:
    """Entry point of the ``neumap`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    from neumap_ros.core.camera import CameraError
    from neumap_ros.core.datasets import DatasetError
    from neumap_ros.core.features import ImageError
    from neumap_ros.core.map_io import MapFormatError
    try:
        return args.handler(args)
    except (UsageError, DatasetError, MapFormatError, CameraError, ImageError, ValueError,
            FileNotFoundError, RuntimeError, *_bag_errors()) as error:
        print(f'neumap {args.command}: error: {error}', file=sys.stderr)
        return 2
    except OSError as error:   # disk full, permissions: say so, no traceback
        print(f'neumap {args.command}: error: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'neumap {args.command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
