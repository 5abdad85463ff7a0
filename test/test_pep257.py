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

"""Docstring conventions of every Python file (ament_pep257's 'ament' convention)."""

from ament_pep257.main import main
from lint_files import excluded_dirs, REPO_ROOT
import pytest


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257(monkeypatch):
    """Run ament_pep257 on the repository, leaving out generated trees."""
    monkeypatch.chdir(REPO_ROOT)
    argv = ['.']
    excludes = [str(path) for path in excluded_dirs()]
    if excludes:
        argv += ['--exclude', *excludes]
    rc = main(argv=argv)
    assert rc == 0, 'Found code style errors / warnings'
