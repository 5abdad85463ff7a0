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
Settings dataclasses: reading them from YAML files, overriding them, and checking them.

Their values arrive from YAML files, flags, node parameters and map files. A string where a
number belongs (``max_keypoints: "512"``) or a negative size would otherwise fail deep inside
OpenCV or torch, minutes into a build. Each settings class calls :func:`check_settings` when
it is made, so the mistake is named where it was made. The command line and the map builder
node read settings files the same way, through :func:`load_settings_file`.
"""

from dataclasses import fields, replace
import math
from pathlib import Path
import re
from typing import Optional

import yaml

_TYPES = {'int': int, 'float': float, 'str': str, 'bool': bool}


class SettingsError(ValueError):
    """A settings file or override that cannot be used, said in one line."""


class _YamlLoader(yaml.SafeLoader):
    """Safe loading with YAML 1.2 floats: ``1e-3`` is a number (PyYAML reads a string)."""


_YamlLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'), list('-+0123456789'))


def load_settings_file(path, sections=None) -> dict:
    """
    Read a settings file ({} for no path); with ``sections``, the only top-level keys it may have.

    A misspelt section (``maping:``) would otherwise be ignored and the defaults used; an
    empty one (``mapping:`` alone) is taken as empty.
    """
    if not path:
        return {}
    try:
        data = yaml.load(Path(path).read_text(), Loader=_YamlLoader) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f'cannot read config {path}: {error}')
    if not isinstance(data, dict):
        raise SettingsError(f'config {path} must be a mapping of settings')
    if sections is not None:
        unknown = sorted(str(key) for key in set(data) - set(sections))
        if unknown:
            raise SettingsError(f'config {path}: unknown sections {unknown}; this command '
                                f'reads {list(sections)}')
    for key, value in list(data.items()):
        if value is None:
            data[key] = {}
        elif sections is not None and not isinstance(value, dict):
            raise SettingsError(f'config {path}: section {key} must be a mapping of settings')
    return data


def with_overrides(config, overrides: dict, source: str):
    """Return ``config`` with ``overrides`` applied; unknown names (typos) are an error."""
    known = {f.name for f in fields(config)}
    unknown = set(overrides) - known
    if unknown:
        raise SettingsError(f'unknown settings in {source}: {sorted(unknown)}; '
                            f'known: {sorted(known)}')
    return replace(config, **overrides)


def check_settings(settings, at_least: Optional[dict] = None,
                   above: Optional[dict] = None, at_most: Optional[dict] = None) -> None:
    """
    Raise ValueError naming the first field of a wrong type or out of range.

    Whole numbers given for float fields become floats (``voxel_size: 1`` is fine); floats
    must be finite. ``at_least`` and ``above`` map field names to their inclusive / exclusive
    lower bounds, ``at_most`` to inclusive upper bounds (sizes read from files, which would
    otherwise ask for any amount of memory).
    """
    owner = type(settings).__name__
    for field in fields(settings):
        kind = _TYPES.get(field.type, field.type) if isinstance(field.type, str) else field.type
        if kind not in _TYPES.values():
            continue
        value = getattr(settings, field.name)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if kind is float and whole:
            value = float(value)
            object.__setattr__(settings, field.name, value)   # frozen dataclasses too
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ValueError(f'{owner} setting {field.name} must be of type {kind.__name__}, '
                             f'got {value!r}')
        if kind is float and not math.isfinite(value):
            raise ValueError(f'{owner} setting {field.name} must be finite, got {value}')
        if field.name in (at_least or {}) and not value >= at_least[field.name]:   # NaN too
            raise ValueError(f'{owner} setting {field.name} must be >= '
                             f'{at_least[field.name]}, got {value}')
        if field.name in (above or {}) and not value > above[field.name]:
            raise ValueError(f'{owner} setting {field.name} must be > {above[field.name]}, '
                             f'got {value}')
        if field.name in (at_most or {}) and not value <= at_most[field.name]:
            raise ValueError(f'{owner} setting {field.name} must be <= '
                             f'{at_most[field.name]}, got {value}')
