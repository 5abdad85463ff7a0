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
Which files of the repository the linter tests check.

Everything under the repository root except version control, virtual environments and
generated trees (colcon's build/install/log, CMake build folders, caches, egg-info).
"""

import os
import pathlib
from typing import Iterator, List

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Generated or third-party trees, by name (the same list as setup.cfg's flake8 exclude).
EXCLUDED_NAMES = {'.venv', 'build', 'install', 'log', '.git', '__pycache__'}


def is_excluded_dir(path: pathlib.Path) -> bool:
    """Tell whether a folder is generated or third-party and must not be linted."""
    name = path.name
    return (name in EXCLUDED_NAMES
            or name.startswith('.')  # hidden folders: caches, tool state
            or name.endswith('.egg-info')
            or (path / 'pyvenv.cfg').is_file()  # a virtual environment under another name
            or (path / 'CMakeCache.txt').is_file()  # a CMake build folder
            or (path / 'AMENT_IGNORE').exists())


def excluded_dirs(root: pathlib.Path = REPO_ROOT) -> List[pathlib.Path]:
    """Return the outermost excluded folders under ``root``."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        keep = []
        for name in dirnames:
            path = pathlib.Path(dirpath, name)
            (found if is_excluded_dir(path) else keep).append(path)
        dirnames[:] = [path.name for path in keep]
    return found


def repo_files(*suffixes: str, root: pathlib.Path = REPO_ROOT) -> Iterator[pathlib.Path]:
    """Yield the files under ``root`` whose names end with one of ``suffixes``, sorted."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_excluded_dir(pathlib.Path(dirpath, d)))
        files += [pathlib.Path(dirpath, f) for f in filenames if f.endswith(suffixes)]
    yield from sorted(files)
