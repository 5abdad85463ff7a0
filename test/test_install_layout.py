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
The package installs the way colcon installs an ament_python package.

colcon runs ``setup.py install --single-version-externally-managed`` with a prefix; setup.cfg
sends the console scripts to lib/<package> (where ``ros2 run`` looks) and setup.py's data_files
put the manifest, launch and config files under share/. The build runs on a copy of the
packaging inputs, so it leaves no build/ or egg-info in the repository.
"""

import configparser
import os
import pathlib
import shutil
import subprocess
import sys

from catkin_pkg.package import parse_package
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = 'neumap_ros'
EXECUTABLES = ['localizer_node', 'map_builder_node', 'neumap', 'bag_player', 'replay_evaluator']
# What setup.py reads; package data (weights) travels inside neumap_ros/.
INPUTS = ['setup.py', 'setup.cfg', 'package.xml', 'LICENSE', 'resource', PACKAGE, 'launch',
          'config']


@pytest.fixture(scope='module')
def prefix(tmp_path_factory):
    """Install a copy of the package into a temporary prefix; return the prefix."""
    root = tmp_path_factory.mktemp('install_layout')
    src, prefix = root / 'src', root / 'prefix'
    src.mkdir()
    for name in INPUTS:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        elif path.exists():
            shutil.copy2(path, src / name)
    result = subprocess.run(
        [sys.executable, 'setup.py', 'install', '--prefix', str(prefix),
         '--single-version-externally-managed', '--record', str(root / 'record.txt')],
        cwd=src, capture_output=True, text=True)
    assert result.returncode == 0, f'setup.py install failed:\n{result.stdout}\n{result.stderr}'
    return prefix


def egg_info(prefix):
    """Return the installed egg-info folder (its parent is the site-packages folder)."""
    # Found rather than computed: Debian's Python uses dist-packages and other schemes.
    found = list(prefix.glob(f'lib*/python*/*-packages/{PACKAGE}-*.egg-info'))
    assert len(found) == 1, f'expected one {PACKAGE} egg-info under {prefix}, found {found}'
    return found[0]


def site_packages(prefix):
    """Return where the install put the Python package."""
    return egg_info(prefix).parent


def installed_console_scripts(prefix):
    """Return {name: 'module:function'} as recorded in the installed egg-info."""
    parser = configparser.ConfigParser()
    parser.read(egg_info(prefix) / 'entry_points.txt')
    return dict(parser['console_scripts'])


def test_executables_in_lib_package_dir(prefix):
    """Console scripts land in lib/neumap_ros, executable, and not in bin/."""
    for name in EXECUTABLES:
        path = prefix / 'lib' / PACKAGE / name
        assert path.is_file(), f'{path} missing'
        assert os.access(path, os.X_OK), f'{path} is not executable'
        assert not (prefix / 'bin' / name).exists()
        # The python3 on PATH (an activated venv with torch), whoever ran the install: the
        # distro's colcon runs setup.py with /usr/bin/python3.
        assert path.read_text().splitlines()[0] == '#!/usr/bin/env python3', path


def test_console_scripts_point_at_installed_modules(prefix):
    """Every console script names a module that was installed."""
    scripts = installed_console_scripts(prefix)
    assert sorted(scripts) == sorted(EXECUTABLES)
    for name, target in scripts.items():
        module = target.split(':')[0].strip()
        path = site_packages(prefix).joinpath(*module.split('.'))
        assert path.with_suffix('.py').is_file() or (path / '__init__.py').is_file(), (
            f'{name} -> {target}: module not installed')


def test_share_files(prefix):
    """Manifest, launch files, configs and the ament index marker are installed."""
    share = prefix / 'share'
    assert (share / PACKAGE / 'package.xml').is_file()
    assert (share / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()
    assert list((share / PACKAGE / 'launch').glob('*.launch.py')), 'no launch file installed'
    assert list((share / PACKAGE / 'config').glob('*.yaml')), 'no config file installed'


def test_python_package_and_version(prefix):
    """The Python package is installed, with the version package.xml declares."""
    assert (site_packages(prefix) / PACKAGE / '__init__.py').is_file()
    name = egg_info(prefix).name
    version = parse_package(str(REPO_ROOT / 'package.xml')).version
    assert name.startswith(f'{PACKAGE}-{version}-'), (
        f'{name} does not match package.xml version {version}')


def test_share_directory_found_through_ament_index():
    """In the development environment ament_index finds the package's share directory."""
    from ament_index_python.packages import get_package_share_directory, PackageNotFoundError

    try:
        share = pathlib.Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        pytest.fail(f'{PACKAGE} is not in the ament index (AMENT_PREFIX_PATH='
                    f'{os.environ.get("AMENT_PREFIX_PATH")}); run tests through '
                    'tools/run_in_env.sh or source tools/ros_env.sh', pytrace=False)
    assert (share / 'package.xml').is_file()


def test_executables_found_where_launch_ros_looks():
    """
    ``Node(package='neumap_ros', executable=...)`` resolves in the development environment.

    launch_ros runs <prefix>/lib/<package>/<executable> of the prefix ament_index names.
    """
    from ament_index_python.packages import get_package_prefix

    lib = pathlib.Path(get_package_prefix(PACKAGE)) / 'lib' / PACKAGE
    for executable in EXECUTABLES:
        assert os.access(lib / executable, os.X_OK), f'{lib / executable} is not executable'
    result = subprocess.run([str(lib / 'neumap'), '--help'], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and 'build-map' in result.stdout, result.stderr
