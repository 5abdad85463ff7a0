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
Safe, atomic storage of tensors plus JSON metadata in one safetensors file.

Maps and decoder weights use this format: plain arrays and a JSON document in the safetensors
header. Reading never executes code; every file is checked before use, including a SHA-256
of its tensor data recorded in the metadata, so a map damaged on its way to a robot (a flipped
bit in a code leaves the file loadable) is refused instead of localizing wrongly. Writing goes
to a temporary file in the target folder, is flushed to disk, and is renamed over the target,
so a crash never leaves a half-written map behind.
"""

import hashlib
import json
import os
from pathlib import Path
import tempfile

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

METADATA_KEY = 'neumap'
CHECKSUM_KEY = 'tensors_sha256'
MAX_HEADER_BYTES = 16 * 1024 * 1024


class MapFormatError(ValueError):
    """Raised for files that are not valid maps/weights of the expected kind and version."""


class OutputPathError(ValueError):
    """Raised when a file cannot be written where it was asked for."""


def require_writable(*paths) -> None:
    """
    Fail now, saying why, if a path cannot be written (missing folders may be made).

    Empty or None paths (an output not asked for) are skipped.
    """
    for path in paths:
        if path:
            _require_writable(Path(path))


def _require_writable(path: Path) -> None:
    if path.is_dir():
        raise OutputPathError(f'{path} is a folder; give the name of the file to write')
    ancestor = path.parent
    while not ancestor.exists():   # atomic_write_bytes creates the missing folders
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f'cannot write {path}: {ancestor} is a file, not a folder')
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f'cannot write {path}: no permission to write in {ancestor}')


# The process umask, read once at import (reading it means setting it, which is not
# thread-safe later): written files get the permissions open() would give them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        # mkstemp creates 0600 files: a map built by one user must stay readable by the
        # robot's service user, as any file that user's umask allows.
        os.fchmod(handle, 0o666 & ~_UMASK)
        with os.fdopen(handle, 'wb') as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def tensors_digest(tensors: dict) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f'{name};{array.dtype.str};{array.shape};'.encode())
        digest.update(array.data if array.size else b'')
    return digest.hexdigest()


def write_tensor_file(path, tensors: dict, metadata: dict) -> int:
    """Store numpy ``tensors`` and JSON ``metadata``; returns the file size in bytes."""
    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    metadata = dict(metadata, **{CHECKSUM_KEY: tensors_digest(arrays)})
    data = save(arrays, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    atomic_write_bytes(path, data)
    return len(data)


def read_tensor_file(path, kind: str, supported_versions) -> tuple:
    """Load ``(tensors, metadata)`` from a file of the given ``kind``, validating its header."""
    path = Path(path)
    if not path.is_file():
        raise MapFormatError(f'{path} does not exist or is not a file')
    data = path.read_bytes()
    if len(data) < 8:
        raise MapFormatError(f'{path} is truncated ({len(data)} bytes)')
    header_size = int.from_bytes(data[:8], 'little')
    if header_size > MAX_HEADER_BYTES or 8 + header_size > len(data):
        raise MapFormatError(f'{path} has an invalid or truncated header')
    try:
        header = json.loads(data[8:8 + header_size])
        metadata = json.loads(header.get('__metadata__', {}).get(METADATA_KEY, 'null'))
    except (ValueError, AttributeError, TypeError) as error:
        raise MapFormatError(f'{path} has an unreadable header: {error}')
    if not isinstance(metadata, dict):
        raise MapFormatError(f'{path} is not a neumap_ros file (no "{METADATA_KEY}" metadata)')
    if metadata.get('kind') != kind:
        raise MapFormatError(f'{path} holds a {metadata.get("kind")!r}, expected {kind!r}')
    if metadata.get('format_version') not in supported_versions:
        raise MapFormatError(f'{path} has format version {metadata.get("format_version")!r}; '
                             f'this build reads {sorted(supported_versions)}')
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as error:
        raise MapFormatError(f'{path} is corrupt: {error}')
    # Files written before checksums existed have none; any file written since has one.
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and expected != tensors_digest(tensors):
        raise MapFormatError(f'{path} is corrupt: its tensor data does not match the checksum '
                             f'written with it (damaged in storage or transfer?)')
    return tensors, metadata


def info_of(metadata: dict, path='map') -> dict:
    """Return the free-form ``info`` object of a file's metadata (a copy; {} if absent)."""
    info = metadata.get('info') or {}
    if not isinstance(info, dict):
        raise MapFormatError(f'{path}: metadata "info" must be an object, '
                             f'got {type(info).__name__}')
    return dict(info)


def require(tensors: dict, name: str, shape: tuple, dtypes, path='map') -> np.ndarray:
    """Fetch a tensor and check its shape (None = any size) and dtype; reject NaN/inf."""
    if name not in tensors:
        raise MapFormatError(f'{path} lacks tensor {name!r}')
    array = tensors[name]
    if array.dtype not in [np.dtype(d) for d in dtypes]:
        raise MapFormatError(f'{path}: tensor {name!r} has dtype {array.dtype}, '
                             f'expected one of {[str(np.dtype(d)) for d in dtypes]}')
    if len(shape) != array.ndim or any(s is not None and s != a
                                       for s, a in zip(shape, array.shape)):
        raise MapFormatError(f'{path}: tensor {name!r} has shape {array.shape}, '
                             f'expected {shape}')
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise MapFormatError(f'{path}: tensor {name!r} contains NaN or infinite values')
    return array
