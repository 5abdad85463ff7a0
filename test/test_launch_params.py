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
Launch files, parameter files and the tests share one parameter source and cannot drift.

CI has no launch package, so the launch files are checked statically (every argument they read
is declared in neumap_ros.ros.launch_params, which they import), the YAML files against the
parameters the nodes declare, and the ``--ros-args`` the tests use to stand in for the launch
files against a real node built from them.
"""

import ast
import os
import pathlib
import re

import pytest
import yaml

from neumap_ros.ros import launch_params

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILES = {'localize.launch.py': launch_params.LOCALIZE_ARGUMENTS,
                'build_map.launch.py': launch_params.BUILD_MAP_ARGUMENTS,
                'replay_eval.launch.py': launch_params.REPLAY_EVAL_ARGUMENTS}


def yaml_parameters(name: str, node: str) -> dict:
    """Return the ros__parameters of ``node`` in config/<name>."""
    data = yaml.safe_load((REPO / 'config' / name).read_text())
    return data[f'/**/{node}']['ros__parameters']


@pytest.mark.parametrize('config,module,node', [
    ('localizer.yaml', 'localizer_node', 'localizer_node'),
    ('map_builder.yaml', 'map_builder_node', 'map_builder_node')])
def test_parameter_files_match_the_nodes(config, module, node):
    """Every declared parameter is in the YAML with the code's default, and nothing else."""
    import importlib
    declared = importlib.import_module(f'neumap_ros.ros.{module}').PARAMETERS
    in_yaml = yaml_parameters(config, node)
    assert set(in_yaml) == set(declared)
    for name, (default, _) in declared.items():
        assert in_yaml[name] == default and type(in_yaml[name]) is type(default), name


@pytest.mark.parametrize('launch_file', sorted(LAUNCH_FILES))
def test_launch_files_read_only_declared_arguments(launch_file):
    """A launch file declares its table from launch_params and reads no other argument."""
    source = (REPO / 'launch' / launch_file).read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.ImportFrom) and n.module == 'neumap_ros.ros'
               for n in ast.walk(tree))
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
               for n in tree.body)
    declared = {name for name, _, _ in LAUNCH_FILES[launch_file]}
    table = {'localize.launch.py': 'LOCALIZE_ARGUMENTS',
             'build_map.launch.py': 'BUILD_MAP_ARGUMENTS',
             'replay_eval.launch.py': 'REPLAY_EVAL_ARGUMENTS'}[launch_file]
    assert f'launch_params.{table}' in source
    used = set(re.findall(r"\barg\('(\w+)'\)", source))
    assert used and used <= declared, used - declared
    if launch_file == 'replay_eval.launch.py':
        included = set(re.findall(r"'(\w+)': ", source.split('launch_arguments=')[1]
                                  .split('.items()')[0]))
        localize = {name for name, _, _ in launch_params.LOCALIZE_ARGUMENTS}
        assert included <= localize, included - localize


def test_ros_arguments_format():
    """Overrides are typed YAML on the command line, remappings and namespace as -r."""
    args = launch_params.ros_arguments(
        params_file='/p.yaml', overrides={'a': True, 'b': 'on', 'c': 2.5, 'd': ['x', 'y']},
        remappings=[('image', '/cam/image')], log_level='debug', namespace='/robot')
    assert args == ['--params-file', '/p.yaml', '-p', 'a:=true', '-p', "b:='on'",
                    '-p', 'c:=2.5', '-p', "d:=['x', 'y']", '-r', 'image:=/cam/image',
                    '-r', '__ns:=/robot', '--log-level', 'debug']
    assert launch_params.localizer_overrides('', 'false') == {'use_sim_time': False}
    assert launch_params.localizer_overrides('m.safetensors', 'True', 'reliable')[
        'image_qos'] == 'reliable'
    with pytest.raises(ValueError):
        launch_params.as_bool('maybe')
    assert pathlib.Path(launch_params.config_path('localizer.yaml')).is_file()


def test_map_builder_arguments_override_only_what_is_given():
    """Empty build_map arguments keep the parameter file's values; bag topics name inputs."""
    defaults = launch_params.defaults(launch_params.BUILD_MAP_ARGUMENTS)
    live = launch_params.map_builder_overrides('m.safetensors', '', defaults['method'],
                                               defaults['use_sim_time'])
    assert 'method' not in live and 'bag_image_topic' not in live
    assert launch_params.map_builder_remappings(defaults['image_topic'],
                                                defaults['camera_info_topic']) == [
        ('image', launch_params.DEFAULT_IMAGE_TOPIC.lstrip('/')),
        ('camera_info', launch_params.DEFAULT_CAMERA_INFO_TOPIC.lstrip('/')),
        ('/tf', 'tf'), ('/tf_static', 'tf_static')]
    bag = launch_params.map_builder_overrides('m.safetensors', 'bag', 'features', 'false',
                                              '/depth', '/color', '/color/info')
    assert bag['method'] == 'features' and bag['depth_topic'] == '/depth'
    assert bag['bag_image_topic'] == '/color' and bag['bag_camera_info_topic'] == '/color/info'


@pytest.mark.ros
def test_launch_parameters_reach_a_real_node(ros_domain, tmp_path):
    """The arguments the tests pass for localize.launch.py configure a node as intended."""
    from rclpy.context import Context
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from neumap_ros.ros.localizer_node import LocalizerNode
    defaults = launch_params.defaults(launch_params.LOCALIZE_ARGUMENTS)
    args = launch_params.ros_arguments(
        params_file=launch_params.config_path('localizer.yaml'),
        overrides=launch_params.localizer_overrides(str(tmp_path / 'm.safetensors'), 'true'),
        remappings=launch_params.localizer_remappings('/cam/image', '/cam/info'),
        namespace='/robot')
    context = Context()
    rclpy.init(args=['node', '--ros-args', *args], context=context,
               signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = LocalizerNode(context=context)
        assert node.get_namespace() == '/robot'
        assert node.get_parameter('map_path').value == str(tmp_path / 'm.safetensors')
        assert node.get_parameter('use_sim_time').value is True
        assert node.get_parameter('tf_mode').value == 'odom'
        assert node.resolve_topic_name('image') == '/cam/image'
        assert node.resolve_topic_name('camera_info') == '/cam/info'
        # TF and the default (relative) camera topics resolve in the namespace.
        assert node.resolve_topic_name('/tf') == '/robot/tf'
        assert node.resolve_topic_name('/tf_static') == '/robot/tf_static'
        assert '/robot/' + defaults['image_topic'] == '/robot' + launch_params.DEFAULT_IMAGE_TOPIC
        node.destroy_node()
    finally:
        context.try_shutdown()


def test_localizer_parameter_checks_name_the_bad_value():
    """Defaults pass the per-value checks; a bad value gets a reason that names it."""
    from neumap_ros.ros.localizer_node import PARAMETERS, value_problem
    for name, (default, _) in PARAMETERS.items():
        assert value_problem(name, default) is None, name
    assert value_problem('voting_keypoints', 0) == 'voting_keypoints must be > 0, got 0'
    assert value_problem('max_keypoints', -5) == 'max_keypoints must be >= 0, got -5'
    assert 'must be one of' in value_problem('tf_mode', 'sideways')
    assert value_problem('prior_angle', 200.0) == 'prior_angle must be in [0, 180] degrees'
    assert value_problem('prior_radius', 2) is None          # an integer for a float is fine
    assert 'must be of type str' in value_problem('map_path', 3)


def test_parameter_types_accept_whole_numbers_for_floats_only():
    """One type rule for every node: 5 is a fine 5.0; True is no number, '5' no float."""
    from neumap_ros.ros.parameters import coerce, type_problem
    assert type_problem('rate', 5, 1.0) is None and coerce(5, 1.0) == 5.0
    assert isinstance(coerce(5, 1.0), float)
    assert 'must be of type float' in type_problem('rate', '5', 1.0)
    assert 'must be of type float' in type_problem('rate', True, 1.0)
    assert 'must be of type int' in type_problem('every', 2.0, 1)
    assert type_problem('topics', ['/a'], ['']) is None
    # `-p topics:=[1,2]` is a list of the wrong items; `-p topics:=[]` arrives as None.
    assert 'must be a list of str' in type_problem('topics', [1, 2], [''])
    assert type_problem('topics', None, ['']) is None and coerce(None, ['']) == []
    # NaN passes every range check (nan < 0 is False) and inf stalls a timeout: both refused.
    for value in (float('nan'), float('inf'), -float('inf')):
        assert 'must be a finite number' in type_problem('tf_lookup_timeout', value, 0.1)


def test_claimed_domain_ids_are_never_shared():
    """Claims held at once get different ids until none is left; released ids come back."""
    from neumap_ros.ros.ros_domain import claim_domain_id, DOMAIN_IDS
    claims = []
    try:
        with pytest.raises(RuntimeError, match='in use'):
            while len(claims) <= len(DOMAIN_IDS):
                claims.append(claim_domain_id())
        ids = [domain_id for domain_id, _ in claims]
        # Ids another run on this host holds right now are skipped, never shared.
        assert len(set(ids)) == len(ids) and set(ids) <= set(DOMAIN_IDS)
        assert len(ids) > len(DOMAIN_IDS) // 2
    finally:
        for _, lock in claims:
            lock.close()
    domain_id, lock = claim_domain_id()
    lock.close()


def test_parameter_file_lookup_follows_rcl_matching(tmp_path):
    """Node keys match by name and namespace, with wildcards; the last match in the file wins."""
    params = tmp_path / 'p.yaml'
    params.write_text('/**:\n  ros__parameters:\n    base_frame: robot\n    x: 1\n'
                      '/robot1/localizer_node:\n  ros__parameters:\n    base_frame: ""\n'
                      'other_node:\n  ros__parameters:\n    x: 2\n')
    lookup = launch_params.node_parameter
    assert lookup(str(params), 'localizer_node', 'base_frame') == 'robot'   # root: not robot1
    assert lookup(str(params), 'localizer_node', 'base_frame', namespace='/robot1') == ''
    assert lookup(str(params), 'localizer_node', 'x') == 1
    assert lookup(str(params), 'other_node', 'x') == 2
    assert lookup(str(params), 'other_node', 'x', namespace='robot1') == 1
    assert lookup(str(params), 'localizer_node', 'y', 'd') == 'd'
    (tmp_path / 'bad.yaml').write_text('- a list\n')
    with pytest.raises(ValueError, match='not a ROS 2 parameter file'):
        lookup(str(tmp_path / 'bad.yaml'), 'localizer_node', 'x')


KEYS = ['/**', 'n', '/n', '/robot1/n', '/*/n', '/**/n', '/robot1/**', '/robot1/*', '/*',
        '/robot1/sub/n', '/**/sub/n', '/*/*/n', 'robot1/n', '/other/n', '/n/**']


@pytest.mark.parametrize('namespace', ['', '/robot1', '/robot1/sub'])
def test_node_keys_match_as_rclpy_applies_them(tmp_path, namespace):
    """Every key form is checked against what rclpy itself applies to a node."""
    import rclpy
    from rclpy.node import Node
    params = tmp_path / 'keys.yaml'
    params.write_text(''.join(f'"{key}":\n  ros__parameters:\n    k{index}: true\n'
                              for index, key in enumerate(KEYS)))
    context = rclpy.Context()
    rclpy.init(args=['--ros-args', '--params-file', str(params)], context=context)
    try:
        node = Node('n', namespace=namespace or '/', context=context,
                    automatically_declare_parameters_from_overrides=True)
        applied = {KEYS[int(name[1:])] for name in node._parameters if name.startswith('k')}
        node.destroy_node()
    finally:
        context.try_shutdown()
    matched = {key for key in KEYS if launch_params.node_key_matches(key, 'n', namespace)}
    assert matched == applied


def test_replay_evaluator_scores_the_frame_the_localizer_publishes(tmp_path):
    """The evaluator's estimate_frame is the localizer's base_frame of the parameter file."""
    shipped = launch_params.replay_evaluator_parameters('out', 'm.safetensors')
    assert shipped['estimate_frame'] == yaml.safe_load(
        pathlib.Path(launch_params.config_path('localizer.yaml')).read_text())[
        '/**/localizer_node']['ros__parameters']['base_frame'] == 'base_link'
    camera_poses = tmp_path / 'camera.yaml'
    camera_poses.write_text('/**/localizer_node:\n  ros__parameters:\n    base_frame: ""\n')
    params = launch_params.replay_evaluator_parameters(
        str(tmp_path / 'out'), 'm.safetensors', str(camera_poses), gt_frame='cam', drain='3')
    assert params['estimate_frame'] == '' and params['gt_frame'] == 'cam'
    assert params['idle_timeout'] == 3.0 and params['use_sim_time'] is True
    assert params['json_path'] == str(tmp_path / 'out' / 'report.json')
    assert os.path.isabs(params['map_path'])
