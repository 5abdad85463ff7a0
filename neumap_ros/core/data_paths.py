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
Where the real posed image data shared beside the project lives (ROS-free).

The data sets are research-licensed and are never copied into the repository: tests,
benchmarks and evaluations read them from one folder, ``$NEUMAP_DATA_DIR`` or, by default,
``<repo>/../shared/data``.
"""

import os
import pathlib

DATA_DIR_ENV = 'NEUMAP_DATA_DIR'

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _default_base() -> pathlib.Path:
    # From a source checkout (or an editable install) the folder sits beside the repository;
    # from an installed package fall back to the working directory, as CI runs from the root.
    if (_REPO_ROOT / 'package.xml').is_file() and (_REPO_ROOT / 'neumap_ros').is_dir():
        return _REPO_ROOT
    return pathlib.Path.cwd()


def shared_data_dir() -> pathlib.Path:
    """
    Return the shared data folder ($NEUMAP_DATA_DIR, default <repo>/../shared/data).

    The folder is not checked; use :func:`require_shared_data` for that.
    """
    value = os.environ.get(DATA_DIR_ENV, '').strip()
    if value:
        return pathlib.Path(value).expanduser().resolve()
    return (_default_base().parent / 'shared' / 'data').resolve()


def require_shared_data(*parts: str) -> pathlib.Path:
    """
    Return the shared data folder, or ``parts`` joined below it, checking that it exists.

    ``parts`` are optional path components, e.g. ``'7scenes-redkitchen'``. Raises
    FileNotFoundError, with a message that says how to point the project at the data, when
    the folder or the requested path in it is missing.
    """
    root = shared_data_dir()
    if not root.is_dir():
        value = os.environ.get(DATA_DIR_ENV, '').strip()
        source = (f'${DATA_DIR_ENV}={value}' if value
                  else f'the default <repo>/../shared/data (set ${DATA_DIR_ENV} to change it)')
        raise FileNotFoundError(
            f'shared data folder {root} not found: it is taken from {source}. Point '
            f'{DATA_DIR_ENV} at the folder that holds 7scenes-redkitchen/ and the other '
            'data sets, e.g. `export NEUMAP_DATA_DIR=/path/to/shared/data`.')
    path = root.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f'{path} not found in the shared data folder {root} '
            f'(taken from ${DATA_DIR_ENV} or <repo>/../shared/data).')
    return path
