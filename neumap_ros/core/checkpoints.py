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
Resumable checkpoints that know which run they belong to (mapping and pretraining).

A checkpoint holds tensors plus a small header: its kind, a format version and an *identity*,
the JSON-plain description of everything that decides the result (decoder, settings, data).
A run resumes only from its own checkpoint; anything else is refused in one line, because a
foreign checkpoint would silently put another run's numbers under this run's name.
"""

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import torch


class CheckpointError(ValueError):
    """A checkpoint this run cannot resume from (the CLI prints it in one line)."""


def unreadable(path, what: str) -> CheckpointError:
    """Return the error for a file that is no ``what`` checkpoint (e.g. 'mapping')."""
    return CheckpointError(f'checkpoint {path} is unreadable or not a {what} checkpoint: '
                           'delete it')


def load_checkpoint(path, kind: str, version: int, keys: set, what: str,
                    valid: Callable[[dict], bool]) -> Optional[dict]:
    """
    Load a checkpoint and check its header and structure; None when there is no file.

    ``keys`` are exactly the keys it must have, ``valid`` checks the rest of its structure.
    """
    if not path or not Path(path).exists():
        return None
    try:
        # weights_only: a checkpoint is data; a file found on disk must never run code.
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:   # torch raises many kinds for garbage (unpickling, zip, EOF, OS...)
        raise unreadable(path, what) from None
    if not isinstance(state, dict) or set(state) != keys:
        raise unreadable(path, what)
    # Types first: == on a tensor gives a tensor, not a yes or no.
    if not isinstance(state['kind'], str) or state['kind'] != kind or \
            type(state['version']) is not int or state['version'] != version or \
            not isinstance(state['identity'], dict) or not _plain(state['identity']) or \
            not valid(state):
        raise unreadable(path, what)
    return state


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def check_identity(stored: dict, expected: dict, path, run: str,
                   nested: Sequence[str] = (), names: Optional[Dict[str, str]] = None) -> None:
    """
    Raise CheckpointError naming what differs between a checkpoint's identity and this run's.

    Only the keys of ``expected`` are compared (a caller may check part of it early);
    ``nested`` keys hold settings, compared setting by setting; ``names`` says how to call
    the other keys in the message.
    """
    differences = []
    for key, value in expected.items():
        if key in nested and isinstance(stored.get(key), dict):
            differences += [f'{key}.{name}' for name in sorted(set(value) | set(stored[key]))
                            if value.get(name) != stored[key].get(name)]
        elif stored.get(key) != value:
            differences.append((names or {}).get(key, key))
    if differences:
        raise CheckpointError(f'checkpoint {path} belongs to another {run} run (it differs in '
                              f'{", ".join(differences)}): delete it or choose another '
                              'checkpoint path')
