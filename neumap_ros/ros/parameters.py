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
Parameter tables of the nodes: declaring them, and the one type rule they all follow.

A table maps each name to (default, description). Declared with its default alone, rclpy
fixes each parameter's type and throws inside the node's constructor on ``rate: 5`` for a
float (or any other mistyped override), a traceback instead of a message. Parameters are
therefore declared with dynamic typing and checked here instead: :func:`type_problem` accepts
whole numbers for floats and reports every other mismatch in one line, so a node given a
wrong value exits with that line, fails ``configure`` with it, or refuses ``ros2 param set``.
NaN and infinity are refused too: every range check passes NaN, and an infinite timeout
stalls whoever waits on it.
"""

import math
from typing import Optional

from rcl_interfaces.msg import ParameterDescriptor


def type_problem(name: str, value, default) -> Optional[str]:
    """Say why ``value`` cannot be parameter ``name`` whose default is ``default``."""
    whole_number = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float) and whole_number:
        return None
    if isinstance(default, list):
        if value is None:   # `-p name:=[]` arrives without a type
            return None
        kind = type(default[0]) if default else None
        if isinstance(value, list) and kind is not None and \
                not all(type(item) is kind for item in value):
            return (f'parameter {name} must be a list of {kind.__name__}, got {value!r}')
    if type(value) is not type(default):
        return (f'parameter {name} must be of type {type(default).__name__}, '
                f'got {value!r} ({type(value).__name__})')
    if isinstance(value, float) and not math.isfinite(value):
        return f'parameter {name} must be a finite number, got {value}'
    return None


def coerce(value, default):
    """Return ``value`` as the default's type (whole numbers given for floats become floats)."""
    if isinstance(default, list) and value is None:
        return []
    return float(value) if isinstance(default, float) else value


def declare_parameters(node, table: dict) -> None:
    """Declare every (default, description) of ``table`` on ``node``."""
    for name, (default, description) in table.items():
        node.declare_parameter(name, default, ParameterDescriptor(
            description=description, dynamic_typing=True))


def read_parameters(node, table: dict) -> dict:
    """Return the declared values of ``table``; raises ValueError naming a mistyped one."""
    values = {}
    for name, (default, _) in table.items():
        value = node.get_parameter(name).value
        problem = type_problem(name, value, default)
        if problem is not None:
            raise ValueError(problem)
        values[name] = coerce(value, default)
    return values
