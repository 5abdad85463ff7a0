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
``neumap demo``: the whole product on the embedded default scene, end to end.

1. Generate the default scene (a procedural room, deterministic, written in the 7-Scenes
   layout) unless it is already there.
2. Build a neural map with the shipped decoder (and the feature-matching baseline map).
3. Record the query frames as a rosbag2 (images, camera_info, TF, ground truth).
4. Replay the bag on a real ROS 2 graph: bag_player -> localizer_node (lifecycle, autostart,
   sim time) -> replay_evaluator, each its own process on a private DDS domain.
5. Print the accuracy/latency table (ROS replay of the neural map, offline baseline) and
   write the JSON reports and the plot.
"""

import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

from neumap_ros.core.bags import dataset_to_bag
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.evaluation import evaluate_frames, format_table, json_safe, summarize
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.localizer import load_localizer
from neumap_ros.core.map_building import build_map, BuildRequest
from neumap_ros.core.map_io import atomic_write_bytes
from neumap_ros.core.mapping import MappingConfig
from neumap_ros.core.plots import plot_reports
from neumap_ros.core.synthetic.dataset import generate_dataset
from neumap_ros.ros import launch_params
from neumap_ros.ros.ros_domain import claim_domain_id

DEMO_SEED = 7
DEMO_FRAMES = (240, 40)   # mapping sequence, revisit queries
REPLAY_FPS = 2.0
DEMO_FLOOR = 0.5          # share of replayed frames within 5 cm / 5 deg for a passing demo


def _log(message: str) -> None:
    print(f'[demo] {message}', flush=True)


def _scene(root: Path) -> Path:
    scene = root / 'scene'
    if not (scene / 'scene.json').exists():
        if scene.exists():
            shutil.rmtree(scene)
        _log(f'generating the default scene (seed {DEMO_SEED}) in {scene}')
        generate_dataset(scene, DEMO_SEED, n_map=DEMO_FRAMES[0], n_query=DEMO_FRAMES[1],
                         kind='indoor')
    return scene


def _start(module: str, ros_args: list, log_path: Path) -> subprocess.Popen:
    log = open(log_path, 'w')
    return subprocess.Popen([sys.executable, '-m', module, '--ros-args', *ros_args],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _replay(map_path: Path, bag: Path, out: Path, timeout: float) -> dict:
    """Run player, localizer and evaluator as separate ROS processes; return the report."""
    # A private domain on this host only, so the demo never talks to a real robot (or to a
    # test run); held until the replay's processes are stopped.
    domain_id, domain_lock = claim_domain_id()
    os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_LOG_DIR', str(out / 'ros_log'))
    params = launch_params.config_path('localizer.yaml')
    localizer_args = launch_params.ros_arguments(
        params, dict(launch_params.localizer_overrides(str(map_path), True,
                                                       launch_params.REPLAY_IMAGE_QOS),
                     autostart=True),
        launch_params.localizer_remappings(launch_params.DEFAULT_IMAGE_TOPIC,
                                           launch_params.DEFAULT_CAMERA_INFO_TOPIC))
    evaluator_args = launch_params.ros_arguments(overrides=dict(
        launch_params.replay_evaluator_parameters(str(out), str(map_path), params, drain=5.0),
        method='neural (ROS replay)'))
    player_args = launch_params.ros_arguments(overrides=launch_params.bag_player_parameters(
        str(bag), 1.0, launch_params.DEFAULT_IMAGE_TOPIC, launch_params.DEFAULT_GT_TOPIC))
    processes = [_start('neumap_ros.ros.localizer_node', localizer_args, out / 'localizer.log'),
                 _start('neumap_ros.ros.replay_evaluator', evaluator_args,
                        out / 'evaluator.log')]
    player = _start('neumap_ros.ros.bag_player', player_args, out / 'player.log')
    processes.append(player)
    deadline = time.monotonic() + timeout
    try:
        evaluator = processes[1]
        while evaluator.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f'replay did not finish within {timeout:.0f} s; see the '
                                   f'logs in {out}')
            if processes[0].poll() is not None:
                raise RuntimeError(f'localizer_node exited; see {out / "localizer.log"}')
            time.sleep(0.5)
        if player.wait(30) != 0:
            raise RuntimeError(f'bag_player failed; see {out / "player.log"}')
    finally:
        for process in processes:
            _stop(process)
        domain_lock.close()
    report_path = out / 'report.json'
    if not report_path.exists():
        raise RuntimeError(f'the evaluator wrote no report; see {out / "evaluator.log"}')
    return json.loads(report_path.read_text())


# Marks a folder as the demo's own: only then does it remove what it finds there.
OUTPUT_MARKER = '.neumap-demo'
DEMO_OUTPUTS = {'scene', 'query_bag', 'replay', 'neural_map.safetensors',
                'feature_map.safetensors', 'baseline_report.json', 'demo.png'}


def _claim_output(output: Path) -> None:
    """Make ``output`` the demo's folder; refuse a folder that holds anything else."""
    output.mkdir(parents=True, exist_ok=True)
    marker = output / OUTPUT_MARKER
    if not marker.exists():
        # A folder of an earlier demo run (before the marker) holds only the demo's names.
        if any(entry.name not in DEMO_OUTPUTS for entry in output.iterdir()):
            raise ValueError(f'{output} is not empty and not a demo output folder; the demo '
                             f'replaces what it finds in its folder, so choose an empty or '
                             f'new one (--output)')
        marker.write_text('neumap demo output: its contents are replaced by each run\n')


def run_demo(output: Path, weights=None, quiet: bool = False) -> int:
    """Run the demo; returns a process exit status."""
    started = time.monotonic()
    output = Path(output).resolve()
    _claim_output(output)
    scene = _scene(output)
    dataset = open_dataset(scene)
    features = FeatureConfig()
    neural_map = output / 'neural_map.safetensors'
    feature_map = output / 'feature_map.safetensors'
    _log('building the neural map (codes only, shipped decoder)')
    neural = build_map(BuildRequest(scene, 'revisit-map', neural_map, 'neural', features,
                                    MappingConfig(), weights, not quiet))
    _log(f'  {neural.map_bytes / 1e6:.2f} MB in {neural.seconds:.0f} s')
    _log('building the feature-matching baseline map')
    baseline = build_map(BuildRequest(scene, 'revisit-map', feature_map, 'features', features,
                                      progress=not quiet))
    _log(f'  {baseline.map_bytes / 1e6:.2f} MB in {baseline.seconds:.0f} s')

    bag = output / 'query_bag'
    if bag.exists():
        shutil.rmtree(bag)
    summary = dataset_to_bag(scene, 'revisit-query', bag, 'mcap', fps=REPLAY_FPS)
    _log(f'recorded {len(summary.stamps_ns)} query frames to {bag} (mcap)')

    replay_dir = output / 'replay'
    replay_dir.mkdir(exist_ok=True)
    _log('replaying the bag through bag_player -> localizer_node -> replay_evaluator')
    replay = _replay(neural_map, bag, replay_dir,
                     timeout=120.0 + 3.0 * len(summary.stamps_ns) / REPLAY_FPS)

    _log('offline evaluation of the baseline on the same queries')
    localizer = load_localizer(feature_map, 'cpu')
    records = evaluate_frames(localizer, dataset.split('revisit-query'), progress=not quiet)
    offline = summarize(records, 'features (offline)', baseline.map_bytes,
                        round(baseline.seconds, 1))
    atomic_write_bytes(output / 'baseline_report.json',
                       json.dumps(json_safe(offline), indent=1, allow_nan=False).encode())
    plot_reports([replay, offline], output / 'demo.png', 'neumap demo: default scene')
    print()
    print(format_table([replay, offline]))
    print()
    _log(f'reports: {replay_dir / "report.json"}, {output / "baseline_report.json"}; '
         f'plot: {output / "demo.png"}; total {time.monotonic() - started:.0f} s')
    # A demo that runs but no longer localizes must fail, not print a table and pass.
    within = replay['recall']['0.05m_5deg']
    if within < DEMO_FLOOR:
        _log(f'FAILED: only {within:.0%} of the replayed frames within 5 cm / 5 deg '
             f'(expected at least {DEMO_FLOOR:.0%})')
        return 1
    return 0
