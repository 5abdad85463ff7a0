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
Map and decoder-weight files: round trips, size of pruned maps, and rejection of bad files.

Maps are built directly from small random arrays, so every stored value is known. Bad files
are made by cutting, flipping bytes, rewriting metadata, or planting pickles whose loading
would run code; every one must give MapFormatError with a reason and never execute anything.
"""

import json
import os
import pathlib
import pickle
import shutil
import tempfile

import numpy as np
import pytest
from safetensors.numpy import load_file, save
import torch

from neumap_ros.core.decoder import decoder_hash, DecoderConfig, NeuMapDecoder
from neumap_ros.core.decoder_weights import load_decoder, save_decoder
from neumap_ros.core.feature_map import FeatureMap
from neumap_ros.core.features import FeatureConfig
from neumap_ros.core.localizer import load_localizer, map_method
from neumap_ros.core.map_io import CHECKSUM_KEY, MapFormatError, METADATA_KEY, \
    read_tensor_file, write_tensor_file
from neumap_ros.core.neural_map import as_stored, NeuralMap
from neumap_ros.core.retrieval import Vocabulary
from neumap_ros.core.voxels import VoxelGrid

DECODER = DecoderConfig(descriptor_dim=128, width=32, layers=2, heads=2, ffn_dim=64,
                        code_dim=16, codes_per_voxel=6, offset_frequencies=2)
VOXELS, SLOTS = 5, 6


class Payload:
    """Pickles to a call of Path.touch(marker): loading it creates the marker file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        """Make unpickling call Path.touch on the marker."""
        return (pathlib.Path.touch, (self.marker,))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Return the rows of ``matrix`` scaled to unit length."""
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def make_vocabulary(rng, words: int = 8, dim: int = 128) -> Vocabulary:
    """Return a random vocabulary of unit words with positive idf."""
    return Vocabulary(unit_rows(rng.normal(size=(words, dim))).astype(np.float32),
                      rng.uniform(0.1, 2.0, words).astype(np.float32))


def make_feature_map(seed: int = 0) -> FeatureMap:
    """Return a 4-frame, 50-point SIFT feature map of random content."""
    rng = np.random.default_rng(seed)
    return FeatureMap(
        FeatureConfig(kind='sift', max_keypoints=777), rng.integers(0, 4, 50).astype(np.int32),
        rng.integers(0, 256, (50, 128)).astype(np.uint8),
        rng.normal(size=(50, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32),
        make_vocabulary(rng), rng.uniform(0.0, 1.0, (4, 8)).astype(np.float32),
        {'dataset': 'unit-test', 'mapping_frames': 4})


def make_neural_map(precision: str = 'fp32', mask=None, seed: int = 0) -> NeuralMap:
    """Return a 5-voxel neural map with 6 code slots each; ``mask`` marks the kept slots."""
    rng = np.random.default_rng(seed)
    if mask is None:
        mask = rng.random((VOXELS, SLOTS)) < 0.6
        mask[:, 0] = True                       # every voxel keeps at least one code
    codes = rng.normal(size=(VOXELS, SLOTS, DECODER.layers, DECODER.code_dim))
    codes *= rng.uniform(0.01, 3.0, (VOXELS, SLOTS, DECODER.layers, 1))
    codes[~mask] = 0.0
    grid = VoxelGrid(np.array([-1.0, 0.5, 2.0]), 0.75,
                     rng.integers(-5, 5, (VOXELS, 3)).astype(np.int32),
                     rng.normal(size=(VOXELS, 3)).astype(np.float32))
    return NeuralMap(grid, codes.astype(np.float32),
                     rng.uniform(0.0, 1.0, (VOXELS, SLOTS, DECODER.layers)).astype(np.float32),
                     mask, rng.uniform(-0.5, 0.5, (VOXELS, SLOTS, 3)).astype(np.float32),
                     make_vocabulary(rng), rng.uniform(0.0, 1.0, (VOXELS, 8)).astype(np.float32),
                     DECODER, 'f' * 64, FeatureConfig(max_keypoints=900), {'note': 'unit test'},
                     precision)


def raw_contents(path):
    """Return (tensors, metadata) of a file, read with safetensors directly."""
    header_size = int.from_bytes(path.read_bytes()[:8], 'little')
    header = json.loads(path.read_bytes()[8:8 + header_size])
    return load_file(str(path)), json.loads(header['__metadata__'][METADATA_KEY])


def rewritten(path, out, tensors=None, metadata=None, drop=()):
    """Write a copy of a file with some tensors or metadata entries replaced or dropped."""
    contents, meta = raw_contents(path)
    contents.update(tensors or {})
    meta.update(metadata or {})
    for name in drop:
        contents.pop(name)
    write_tensor_file(out, contents, meta)
    return out


@pytest.fixture
def feature_map_file(tmp_path):
    """Return the path of a saved feature map."""
    path = tmp_path / 'features.safetensors'
    make_feature_map().save(path)
    return path


@pytest.fixture
def neural_map_file(tmp_path):
    """Return the path of a saved fp32 neural map."""
    path = tmp_path / 'neural.safetensors'
    make_neural_map('fp32').save(path)
    return path


@pytest.fixture(scope='module')
def decoder():
    """Return a small randomly initialised decoder."""
    torch.manual_seed(0)
    return NeuMapDecoder(DECODER)


@pytest.fixture
def decoder_file(tmp_path, decoder):
    """Return the path of the small decoder's saved weights."""
    path = tmp_path / 'decoder.safetensors'
    save_decoder(path, decoder, {'purpose': 'unit test'})
    return path


def test_feature_map_round_trip(tmp_path):
    """Descriptors, points and frame ids come back exactly; fp16 parts within fp16 precision."""
    original = make_feature_map()
    path = tmp_path / 'map.safetensors'
    umask = os.umask(0o022)
    os.umask(umask)
    size = original.save(path)
    assert size == path.stat().st_size
    # Readable as the umask allows, not the 0600 of the temporary file it was renamed from.
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    loaded = FeatureMap.load(path)
    assert loaded.feature_config == original.feature_config
    np.testing.assert_array_equal(loaded.frame_index, original.frame_index)
    np.testing.assert_array_equal(loaded.descriptors, original.descriptors)
    np.testing.assert_array_equal(loaded.xyz, original.xyz)
    np.testing.assert_array_equal(loaded.frame_centres, original.frame_centres)
    np.testing.assert_array_equal(loaded.vocabulary.idf, original.vocabulary.idf)
    np.testing.assert_allclose(loaded.vocabulary.words, original.vocabulary.words, atol=1e-3)
    np.testing.assert_allclose(loaded.frame_histograms, original.frame_histograms, atol=1e-3)
    assert loaded.info == original.info
    assert map_method(path) == 'features'


@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'int8'])
def test_neural_map_round_trip(tmp_path, precision):
    """fp32 codes are exact, fp16 within fp16 rounding, int8 within half a quantisation step."""
    original = make_neural_map(precision)
    path = tmp_path / f'{precision}.safetensors'
    original.save(path)
    loaded = NeuralMap.load(path)
    mask = original.code_mask
    np.testing.assert_array_equal(loaded.code_mask, mask)
    assert loaded.code_precision == precision and loaded.kept_codes == int(mask.sum())
    error = np.abs(loaded.codes - original.codes)
    kept = original.codes[mask]
    if precision == 'fp32':
        np.testing.assert_array_equal(loaded.codes, original.codes)
    elif precision == 'fp16':
        assert np.all(error[mask] <= np.abs(kept) * 2.0 ** -11 + 1e-7)
    else:
        # One scale per (code, layer): the step is max|row| / 127; rounding costs half a step
        # (plus the fp16 rounding of the scale itself).
        step = np.abs(kept).max(axis=2, keepdims=True) / 127.0
        assert np.all(error[mask] <= 0.5 * step * 1.1 + 1e-7)
        assert error[mask].max() > 0.0  # it really was quantised
    assert np.all(loaded.codes[~mask] == 0.0)
    np.testing.assert_allclose(loaded.weights[mask], original.weights[mask], rtol=1e-3)
    np.testing.assert_allclose(loaded.positions[mask], original.positions[mask], atol=1e-3)
    np.testing.assert_array_equal(loaded.grid.indices, original.grid.indices)
    np.testing.assert_array_equal(loaded.grid.anchors, original.grid.anchors)
    np.testing.assert_array_equal(loaded.grid.origin, original.grid.origin)
    assert loaded.grid.voxel_size == original.grid.voxel_size
    assert loaded.decoder_config == DECODER and loaded.decoder_hash == original.decoder_hash
    assert loaded.feature_config == original.feature_config and loaded.info == original.info
    assert map_method(path) == 'neural'


def test_lower_precision_and_pruning_shrink_the_file(tmp_path):
    """int8 < fp16 < fp32, and pruned code slots are not stored at all."""
    sizes = {p: make_neural_map(p).save(tmp_path / f'{p}.safetensors')
             for p in ('fp32', 'fp16', 'int8')}
    assert sizes['int8'] < sizes['fp16'] < sizes['fp32']
    full = np.ones((VOXELS, SLOTS), bool)
    pruned = full.copy()
    pruned[:, 3:] = False
    full_size = make_neural_map('fp32', full).save(tmp_path / 'full.safetensors')
    pruned_size = make_neural_map('fp32', pruned).save(tmp_path / 'pruned.safetensors')
    removed = int(full.sum() - pruned.sum())
    # Each removed slot saves its fp32 codes, fp16 weights and fp16 position at least.
    per_slot = DECODER.layers * DECODER.code_dim * 4 + DECODER.layers * 2 + 3 * 2
    assert full_size - pruned_size >= removed * per_slot
    stored, _ = raw_contents(tmp_path / 'pruned.safetensors')
    assert stored['codes'].shape == (int(pruned.sum()), DECODER.layers, DECODER.code_dim)


@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'int8'])
def test_as_stored_gives_exactly_what_the_file_gives_back(tmp_path, precision):
    """as_stored() rounds codes as save + load do, and rounding twice changes nothing."""
    original = make_neural_map(precision)
    original.save(tmp_path / 'map.safetensors')
    loaded = NeuralMap.load(tmp_path / 'map.safetensors')
    rounded = as_stored(original.codes, original.code_mask, precision)
    np.testing.assert_array_equal(rounded, loaded.codes)
    np.testing.assert_array_equal(as_stored(rounded, original.code_mask, precision), rounded)
    if precision != 'fp32':
        assert not np.array_equal(rounded, original.codes)


def test_unknown_code_precision_is_refused_when_saving(tmp_path):
    """Saving with a precision the format does not know raises ValueError."""
    neural = make_neural_map()
    neural.code_precision = 'fp8'
    with pytest.raises(ValueError, match='code precision'):
        neural.save(tmp_path / 'x.safetensors')
    assert not (tmp_path / 'x.safetensors').exists()


LOADERS = {'features': FeatureMap.load, 'neural': NeuralMap.load,
           'decoder': lambda path: load_decoder(path)}


@pytest.mark.parametrize('kind', sorted(LOADERS))
def test_missing_file(tmp_path, kind):
    """A path that does not exist is reported as such."""
    with pytest.raises(MapFormatError, match='does not exist'):
        LOADERS[kind](tmp_path / 'nothing.safetensors')
    with pytest.raises(MapFormatError, match='does not exist'):
        LOADERS[kind](tmp_path)  # a folder is not a file either


@pytest.mark.parametrize('kind', sorted(LOADERS))
def test_truncated_files_are_refused(tmp_path, kind, feature_map_file, neural_map_file,
                                     decoder_file):
    """Every cut of a valid file (inside the header or the data) gives MapFormatError."""
    source = {'features': feature_map_file, 'neural': neural_map_file,
              'decoder': decoder_file}[kind]
    data = source.read_bytes()
    target = tmp_path / 'cut.safetensors'
    header_end = 8 + int.from_bytes(data[:8], 'little')
    cuts = [0, 4, 7, 8, 9, header_end // 2, header_end - 1, header_end, header_end + 1,
            (header_end + len(data)) // 2, len(data) - 1]
    for cut in cuts:
        target.write_bytes(data[:cut])
        with pytest.raises(MapFormatError):
            LOADERS[kind](target)


def fuzz(loader, source: pathlib.Path, target: pathlib.Path, seed: int) -> tuple:
    """
    Flip bytes of a valid file and load each copy; return (rejected, accepted) counts.

    Header bytes are each flipped in two ways that keep them printable often enough to reach
    the deeper checks (bit 0 turns 3 into 2, bit 5 turns F16 into f16); data bytes are
    flipped at random positions. Any exception other than MapFormatError fails the test.
    """
    data = bytearray(source.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], 'little')
    rng = np.random.default_rng(seed)
    flips = [(i, mask) for i in range(header_end) for mask in (0x01, 0x20)]
    flips += [(int(i), 1 << int(rng.integers(8)))
              for i in rng.integers(header_end, len(data), 300)]
    rejected = accepted = 0
    for position, mask in flips:
        corrupted = bytearray(data)
        corrupted[position] ^= mask
        target.write_bytes(bytes(corrupted))
        try:
            loader(target)
        except MapFormatError:
            rejected += 1
        else:
            accepted += 1
    return rejected, accepted


@pytest.fixture
def scratch_dir(tmp_path):
    """Yield a folder for thousands of small writes: in memory (/dev/shm) where there is one."""
    if not os.access('/dev/shm', os.W_OK):
        yield tmp_path
        return
    folder = tempfile.mkdtemp(prefix='neumap-test-', dir='/dev/shm')
    try:
        yield pathlib.Path(folder)
    finally:
        shutil.rmtree(folder)


def test_flipped_bytes_never_crash_the_map_loaders(scratch_dir, feature_map_file,
                                                   neural_map_file):
    """A flipped byte anywhere loads or fails with MapFormatError, never another exception."""
    for loader, source in ((FeatureMap.load, feature_map_file),
                           (NeuralMap.load, neural_map_file)):
        rejected, accepted = fuzz(loader, source, scratch_dir / 'flipped.safetensors', 1)
        # Most header damage is caught (a flipped value digit or name letter may still load).
        assert rejected > accepted > 0


def test_flipped_header_bytes_are_refused(tmp_path, neural_map_file):
    """Damage to the length field, JSON syntax, kind or a tensor's dtype is refused."""
    data = neural_map_file.read_bytes()
    target = tmp_path / 'bad.safetensors'
    header_end = 8 + int.from_bytes(data[:8], 'little')
    header = data[8:header_end]
    edits = {
        'length field': data[:7] + bytes([data[7] ^ 0x10]) + data[8:],
        'json syntax': data[:8] + b'[' + data[9:],
        'kind': data.replace(b'neumap.neural_map', b'neumap.neural_maq'),
        'dtype': data[:8] + header.replace(b'"F32"', b'"I32"', 1) + data[header_end:],
    }
    for name, corrupted in edits.items():
        assert corrupted != data, name
        target.write_bytes(corrupted)
        with pytest.raises(MapFormatError):
            NeuralMap.load(target)


@pytest.mark.parametrize('kind', sorted(LOADERS))
def test_damaged_tensor_data_is_refused_by_its_checksum(scratch_dir, kind, feature_map_file,
                                                        neural_map_file, decoder_file):
    """
    Any flipped bit in the tensor data is refused, also where the value stays plausible.

    Without the checksum a changed code, point or weight loads and localizes wrongly.
    """
    source = {'features': feature_map_file, 'neural': neural_map_file,
              'decoder': decoder_file}[kind]
    data = source.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], 'little')
    target = scratch_dir / 'damaged.safetensors'
    rng = np.random.default_rng(3)
    for position in rng.integers(header_end, len(data), 60):
        corrupted = bytearray(data)
        corrupted[position] ^= 1 << int(rng.integers(8))
        target.write_bytes(bytes(corrupted))
        with pytest.raises(MapFormatError, match='checksum'):
            LOADERS[kind](target)


def test_files_without_a_checksum_still_load(tmp_path, neural_map_file):
    """Files written before checksums existed have none and load as before."""
    tensors, metadata = raw_contents(neural_map_file)
    assert CHECKSUM_KEY in metadata
    del metadata[CHECKSUM_KEY]
    older = tmp_path / 'older.safetensors'
    older.write_bytes(save(tensors, metadata={METADATA_KEY: json.dumps(metadata)}))
    loaded = NeuralMap.load(older)
    np.testing.assert_array_equal(loaded.positions, NeuralMap.load(neural_map_file).positions)


def test_shipped_decoders_carry_a_checksum():
    """The decoders in the package are protected like the maps built with them."""
    shipped = sorted(pathlib.Path(__file__).parents[1].glob('neumap_ros/weights/*.safetensors'))
    assert len(shipped) >= 2
    for path in shipped:
        assert CHECKSUM_KEY in raw_contents(path)[1], path.name
        load_decoder(path)


def test_wrong_kind_is_refused(feature_map_file, neural_map_file, decoder_file):
    """Each loader names the kind it found and the kind it expected."""
    with pytest.raises(MapFormatError, match="'neumap.feature_map', expected 'neumap.neural_map'"):
        NeuralMap.load(feature_map_file)
    with pytest.raises(MapFormatError, match="'neumap.neural_map', expected 'neumap.feature_map'"):
        FeatureMap.load(neural_map_file)
    with pytest.raises(MapFormatError, match="'neumap.decoder', expected 'neumap.neural_map'"):
        NeuralMap.load(decoder_file)
    with pytest.raises(MapFormatError, match="expected 'neumap.decoder'"):
        load_decoder(feature_map_file)
    with pytest.raises(MapFormatError, match='not a neumap_ros map'):
        map_method(decoder_file)


@pytest.mark.parametrize('version', [0, 2, '1', None])
def test_unsupported_format_versions_are_refused(tmp_path, version, feature_map_file,
                                                 neural_map_file, decoder_file):
    """A file from another format version (or with none) is refused, naming the version."""
    for loader, source in ((FeatureMap.load, feature_map_file),
                           (NeuralMap.load, neural_map_file),
                           (load_decoder, decoder_file)):
        bad = rewritten(source, tmp_path / 'version.safetensors',
                        metadata={'format_version': version})
        with pytest.raises(MapFormatError, match='format version'):
            loader(bad)


def test_mistyped_metadata_is_refused_by_name(tmp_path, feature_map_file, neural_map_file):
    """A hand-edited header (a string for a count, a list for an object) gives MapFormatError."""
    for loader, source in ((FeatureMap.load, feature_map_file),
                           (NeuralMap.load, neural_map_file)):
        _, meta = raw_contents(source)
        features = dict(meta['features'], max_keypoints='1024')
        for metadata, message in (({'info': [1, 2, 3]}, 'metadata "info" must be an object'),
                                  ({'features': features}, 'max_keypoints must be of type int')):
            bad = rewritten(source, tmp_path / 'typed.safetensors', metadata=metadata)
            with pytest.raises(MapFormatError, match=message):
                loader(bad)


def test_nan_in_any_float_tensor_is_refused(tmp_path, feature_map_file, neural_map_file):
    """A NaN or inf in points, codes, anchors or weights is refused, naming the tensor."""
    cases = [(FeatureMap.load, feature_map_file, 'xyz'),
             (FeatureMap.load, feature_map_file, 'frame_centres'),
             (NeuralMap.load, neural_map_file, 'codes'),
             (NeuralMap.load, neural_map_file, 'voxel_anchors'),
             (NeuralMap.load, neural_map_file, 'code_weights')]
    for loader, source, name in cases:
        tensors, _ = raw_contents(source)
        for value in (np.nan, np.inf):
            array = tensors[name].copy()
            array.reshape(-1)[3] = value
            bad = rewritten(source, tmp_path / 'nan.safetensors', tensors={name: array})
            with pytest.raises(MapFormatError, match=f"'{name}' contains NaN"):
                loader(bad)


def test_feature_map_shapes_must_agree(tmp_path, feature_map_file):
    """Row counts, descriptor widths and frame indices must agree with each other."""
    tensors, _ = raw_contents(feature_map_file)
    out = tmp_path / 'bad.safetensors'
    cases = {
        'descriptors': {'descriptors': tensors['descriptors'][:-1]},
        # SIFT descriptors are 128 bytes; narrower ones would only fail at localization.
        "'descriptors' has shape": {'descriptors': tensors['descriptors'][:, :64].copy()},
        'xyz': {'xyz': tensors['xyz'][:, :2].copy()},
        'frame_histograms': {'frame_histograms': tensors['frame_histograms'][:-1]},
        'vocabulary_idf': {'vocabulary_idf': tensors['vocabulary_idf'][:-1]},
        'frame index out of range': {'frame_index': tensors['frame_index'] + 4},
        'dtype': {'frame_index': tensors['frame_index'].astype(np.int64)},
    }
    for message, replacement in cases.items():
        with pytest.raises(MapFormatError, match=message):
            FeatureMap.load(rewritten(feature_map_file, out, replacement))
    with pytest.raises(MapFormatError, match="lacks tensor 'xyz'"):
        FeatureMap.load(rewritten(feature_map_file, out, drop=['xyz']))
    # Metadata claiming ORB for SIFT content: 32-byte descriptors were expected.
    with pytest.raises(MapFormatError, match=r"'descriptors' has shape \(50, 128\), expected"):
        FeatureMap.load(rewritten(feature_map_file, out,
                                  metadata={'features': {'kind': 'orb'}}))
    # ORB-sized descriptors too, but ORB words are 256-d: the 128-d vocabulary does not fit.
    with pytest.raises(MapFormatError, match="'vocabulary' has shape"):
        FeatureMap.load(rewritten(feature_map_file, out,
                                  {'descriptors': tensors['descriptors'][:, :32].copy()},
                                  {'features': {'kind': 'orb'}}))
    with pytest.raises(MapFormatError, match='invalid feature settings'):
        FeatureMap.load(rewritten(feature_map_file, out,
                                  metadata={'features': {'kind': 'surf'}}))


def test_neural_map_shapes_must_agree_with_metadata(tmp_path, neural_map_file):
    """Voxel and slot counts, decoder sizes and precision in metadata must fit the tensors."""
    tensors, meta = raw_contents(neural_map_file)
    out = tmp_path / 'bad.safetensors'
    grid = meta['grid']
    decoder = meta['decoder']
    int8_codes = {'codes': np.zeros(tensors['codes'].shape, np.int8)}
    cases = [  # (expected message, metadata changes, tensor changes)
        ('voxel_indices', {'grid': dict(grid, voxels=VOXELS + 1)}, {}),
        ('code mask has the wrong size', {'grid': dict(grid, codes_per_voxel=SLOTS + 2)}, {}),
        ("'codes' has shape",
         {'decoder': dict(decoder, config=dict(decoder['config'], layers=3))}, {}),
        ('has dtype', {'code_precision': 'fp16'}, {}),
        ("lacks tensor 'code_scales'", {'code_precision': 'int8'}, int8_codes),
        ('invalid grid', {'grid': dict(grid, voxel_size=-0.5)}, {}),
        ('invalid grid or precision', {'code_precision': 'fp64'}, {}),
        ('incomplete map metadata', {'grid': {'voxels': VOXELS}}, {}),
        # ORB vectors have 256 dimensions: a decoder of 128-d (SIFT) descriptors cannot read them.
        ("'orb' keypoints do not fit a decoder", {'features': {'kind': 'orb'}}, {}),
        ("'surf' keypoints do not fit", {'features': {'kind': 'surf'}}, {}),
    ]
    for message, metadata, replacement in cases:
        with pytest.raises(MapFormatError, match=message):
            NeuralMap.load(rewritten(neural_map_file, out, replacement, metadata))
    with pytest.raises(MapFormatError, match='unknown decoder settings|incomplete map metadata'):
        NeuralMap.load(rewritten(neural_map_file, out, metadata={
            'decoder': dict(decoder, config=dict(decoder['config'], depth=7))}))
    # A voxel whose every slot was pruned cannot be decoded.
    mask = np.ones((VOXELS, SLOTS), bool)
    mask[2] = False
    make_neural_map('fp32', mask).save(out)
    with pytest.raises(MapFormatError, match='a voxel has no codes left'):
        NeuralMap.load(out)


def hostile_files(folder: pathlib.Path, marker: pathlib.Path) -> dict:
    """Return name -> path of a pickle and a torch zip archive that would touch ``marker``."""
    folder.mkdir(exist_ok=True)
    files = {'pickle': folder / 'map.pkl', 'zip': folder / 'map.pt'}
    files['pickle'].write_bytes(pickle.dumps({'weights': Payload(marker)}))
    torch.save({'weights': Payload(marker)}, files['zip'])
    for name, path in list(files.items()):
        # The same bytes under the name a map or decoder file has.
        files[f'{name} named .safetensors'] = path.with_suffix('.safetensors')
        files[f'{name} named .safetensors'].write_bytes(path.read_bytes())
    return files


def test_hostile_pickles_are_refused_without_running_them(tmp_path):
    """Pickle and torch zip files are refused by every loader and their payload never runs."""
    # Prove the payloads are live: the unsafe loaders do run them.
    control_marker = tmp_path / 'control-ran'
    control = hostile_files(tmp_path / 'control', control_marker)
    pickle.loads(control['pickle'].read_bytes())
    assert control_marker.exists()
    control_marker.unlink()
    torch.load(control['zip'], weights_only=False)
    assert control_marker.exists()

    marker = tmp_path / 'payload-ran'
    for name, path in hostile_files(tmp_path / 'hostile', marker).items():
        for loader in (FeatureMap.load, NeuralMap.load, load_decoder, map_method,
                       load_localizer, lambda p: read_tensor_file(p, 'neumap.feature_map', {1})):
            with pytest.raises(MapFormatError):
                loader(path)
        assert not marker.exists(), name


def test_oversized_header_claims_are_refused_cheaply(tmp_path):
    """A header length of terabytes, or beyond the file end, is refused before reading it."""
    path = tmp_path / 'huge.safetensors'
    path.write_bytes((1 << 40).to_bytes(8, 'little') + b'{}')
    with pytest.raises(MapFormatError, match='invalid or truncated header'):
        NeuralMap.load(path)
    path.write_bytes((100).to_bytes(8, 'little') + b'{"a": 1}')
    with pytest.raises(MapFormatError, match='invalid or truncated header'):
        FeatureMap.load(path)


def test_sizes_a_map_file_claims_are_bounded_before_allocating(tmp_path, neural_map_file):
    """
    A small file cannot make the loader allocate without limit, or crash OpenCV later.

    The dense code array is voxels x slots x layers x code size, all from the metadata: the
    loader checks that product, and the decoder and keypoint sizes, before building it.
    """
    tensors, meta = raw_contents(neural_map_file)
    out = tmp_path / 'bomb.safetensors'
    decoder, grid = meta['decoder'], meta['grid']
    slots = 3_000_000   # bits for 5 voxels x 3M slots: a 2 MB mask
    bits = np.zeros((VOXELS * slots + 7) // 8, np.uint8)
    bits[::slots // 8] = 0x80
    huge = dict(grid, codes_per_voxel=slots)
    with pytest.raises(MapFormatError, match='would take .* GB in memory'):
        NeuralMap.load(rewritten(neural_map_file, out, {'code_mask': bits}, {'grid': huge}))
    many_layers = dict(decoder, config=dict(decoder['config'], layers=10 ** 6))
    with pytest.raises(MapFormatError, match='layers must be <= 64'):
        NeuralMap.load(rewritten(neural_map_file, out, metadata={'decoder': many_layers}))
    with pytest.raises(MapFormatError, match='max_keypoints must be <= 100000'):
        NeuralMap.load(rewritten(neural_map_file, out, metadata={
            'features': dict(meta['features'], max_keypoints=10 ** 12)}))
    assert tensors   # the original file is untouched and still loads
    NeuralMap.load(neural_map_file)


def test_a_diverged_map_is_never_written(tmp_path):
    """Codes that are not finite are refused at saving, and an existing map stays."""
    path = tmp_path / 'map.safetensors'
    make_neural_map().save(path)
    before = path.read_bytes()
    diverged = make_neural_map()
    diverged.codes[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match='its codes are not finite'):
        diverged.save(path)
    assert path.read_bytes() == before


def test_plain_safetensors_without_project_metadata_is_refused(tmp_path):
    """A valid safetensors file that is not a neumap_ros file says so."""
    from safetensors.numpy import save_file
    path = tmp_path / 'other.safetensors'
    save_file({'weight': np.zeros((2, 2), np.float32)}, str(path))
    with pytest.raises(MapFormatError, match='not a neumap_ros file'):
        FeatureMap.load(path)
    save_file({'weight': np.zeros((2, 2), np.float32)}, str(path),
              metadata={METADATA_KEY: '[1, 2]'})
    with pytest.raises(MapFormatError, match='not a neumap_ros file'):
        NeuralMap.load(path)


def test_decoder_round_trip_keeps_weights_and_hash(decoder, decoder_file):
    """Saved weights reload bit for bit, with the configuration and the recorded hash."""
    loaded, meta = load_decoder(decoder_file)
    assert loaded.config == DECODER
    assert meta['hash'] == decoder_hash(decoder) == decoder_hash(loaded)
    assert meta['info'] == {'purpose': 'unit test'}
    reference = decoder.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())


def test_decoder_weights_must_fit_the_decoder(tmp_path, decoder_file):
    """Missing, extra, reshaped, non-float32 or non-finite tensors are refused by name."""
    tensors, meta = raw_contents(decoder_file)
    name = sorted(tensors)[0]
    out = tmp_path / 'bad.safetensors'
    with pytest.raises(MapFormatError, match='do not fit the decoder'):
        load_decoder(rewritten(decoder_file, out, drop=[name]))
    with pytest.raises(MapFormatError, match='do not fit the decoder'):
        load_decoder(rewritten(decoder_file, out, {'extra.weight': np.zeros(3, np.float32)}))
    wrong_shape = np.zeros((tensors[name].size + 1,), np.float32)
    with pytest.raises(MapFormatError, match=f'tensor {name} has shape'):
        load_decoder(rewritten(decoder_file, out, {name: wrong_shape}))
    with pytest.raises(MapFormatError, match=f'tensor {name} has shape'):
        load_decoder(rewritten(decoder_file, out, {name: tensors[name].astype(np.float16)}))
    broken = tensors[name].copy()
    broken.reshape(-1)[0] = np.nan
    with pytest.raises(MapFormatError, match='finite'):
        load_decoder(rewritten(decoder_file, out, {name: broken}))
    # The metadata describes another architecture than the stored tensors.
    with pytest.raises(MapFormatError, match='do not fit the decoder|has shape'):
        load_decoder(rewritten(decoder_file, out,
                               metadata={'config': dict(meta['config'], layers=3)}))
    with pytest.raises(MapFormatError, match='invalid decoder configuration'):
        load_decoder(rewritten(decoder_file, out, metadata={'config': {'layers': 'two'}}))


def test_altered_decoder_weight_fails_the_hash_check(tmp_path, decoder_file):
    """Changing one weight value (a well-formed but different file) is caught by the hash."""
    tensors, _ = raw_contents(decoder_file)
    name = sorted(tensors)[-1]
    altered = tensors[name].copy()
    altered.reshape(-1)[0] += 0.5
    with pytest.raises(MapFormatError, match='do not match their recorded hash'):
        load_decoder(rewritten(decoder_file, tmp_path / 'altered.safetensors',
                               {name: altered}))
