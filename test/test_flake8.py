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

"""Code style of every Python file (flake8 with the plugins and settings of setup.cfg)."""

import subprocess
import sys

from lint_files import excluded_dirs, REPO_ROOT
import pytest


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(monkeypatch):
    """Run flake8 as ament_flake8 does, with setup.cfg's [flake8] section as configuration."""
    # ament_flake8 looks for ignored folders below the working directory.
    monkeypatch.chdir(REPO_ROOT)
    config = str(REPO_ROOT / 'setup.cfg')
    excludes = [str(path) for path in excluded_dirs()]
    try:
        from ament_flake8.main import main_with_errors
    except ImportError:  # a ROS distro without ament_flake8: the same check through flake8
        argv = [sys.executable, '-m', 'flake8', '--config', config]
        if excludes:
            argv.append('--extend-exclude=' + ','.join(excludes))
        result = subprocess.run(argv + ['.'], capture_output=True, text=True)
        rc, errors = result.returncode, (result.stdout + result.stderr).splitlines()
    else:
        argv = ['--config', config, '.']
        if excludes:
            argv += ['--exclude', *excludes]
        rc, errors = main_with_errors(argv=argv)
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
