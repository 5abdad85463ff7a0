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
Dataset layouts: the real 7-Scenes and Strecha folders, COLMAP models, and broken folders.

Expected numbers for the real data are those documented in the shared data README; COLMAP
models are written by the tests from known poses, following COLMAP's documented formats.
"""

from pathlib import Path
import struct
import zlib

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from synthetic_views import arc_of_cameras, points_in_box, project

from neumap_ros.core.camera import PinholeCamera
from neumap_ros.core.colmap import ColmapError
from neumap_ros.core.datasets import DatasetError, detect_layout, open_dataset
from neumap_ros.core.features import create_extractor, descriptor_vectors, FeatureConfig
from neumap_ros.core.matching import match_descriptors
from neumap_ros.core.observations import collect_observations
from neumap_ros.core.triangulation import epipolar_distances, fundamental_matrix


@pytest.fixture(scope='module')
def kitchen(shared_data_dir):
    """Return the opened 7-Scenes kitchen."""
    return open_dataset(shared_data_dir / '7scenes-redkitchen')


@pytest.fixture(scope='module')
def fountain(shared_data_dir):
    """Return the opened Strecha fountain-P11 scene."""
    return open_dataset(shared_data_dir / 'strecha' / 'fountain-P11')


def test_kitchen_frames_splits_and_intrinsics(kitchen):
    """1000 frames with depth, the README's split sizes, and the colour intrinsics 525/320/240."""
    assert kitchen.layout == 'sevenscenes' and kitchen.has_depth
    assert len(kitchen.frames) == 1000
    sizes = {name: len(kitchen.split(name)) for name in kitchen.splits}
    assert sizes == {'interleaved-map': 760, 'interleaved-query': 160,
                     'sequential-map': 600, 'sequential-query': 200}
    for kind in ('interleaved', 'sequential'):
        assert not set(kitchen.splits[f'{kind}-map']) & set(kitchen.splits[f'{kind}-query'])
    # Every 50-frame block: frames 0-37 map, 40-47 query.
    assert kitchen.splits['interleaved-query'][:8] == [f'frame-{i:06d}' for i in range(40, 48)]
    assert kitchen.splits['interleaved-map'][37:39] == ['frame-000037', 'frame-000050']
    camera = kitchen.frames['frame-000123'].camera
    assert (camera.width, camera.height) == (640, 480)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (525.0, 525.0, 320.0, 240.0)
    assert camera.distortion == ()
    assert len(kitchen.split(None)) == 1000 == len(kitchen.split('all'))


def test_kitchen_poses_are_orthonormalised_versions_of_the_files(kitchen, shared_data_dir):
    """Loaded rotations are exact rotations within 0.05 deg of the slightly skewed raw ones."""
    for name in ('frame-000000', 'frame-000500', 'frame-000999'):
        pose = kitchen.frames[name].T_world_camera
        raw = np.loadtxt(shared_data_dir / '7scenes-redkitchen' / f'{name}.pose.txt')
        rotation = pose[:3, :3]
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_array_equal(pose[:3, 3], raw[:3, 3])
        assert np.abs(rotation - raw[:3, :3]).max() < 1e-3
        # The raw matrix is measurably non-orthonormal (the README's 0.9998 singular values).
        assert np.abs(raw[:3, :3].T @ raw[:3, :3] - np.eye(3)).max() > 1e-6


def test_kitchen_images_and_depth_load(kitchen, shared_data_dir):
    """Images load as 480x640 BGR; depth is metres with 0 where the raw value is 0 or 65535."""
    frame = kitchen.frames['frame-000000']
    assert frame.load_image().shape == (480, 640, 3)
    depth = frame.load_depth()
    raw = cv2.imread(str(shared_data_dir / '7scenes-redkitchen' / 'frame-000000.depth.png'),
                     cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.float32 and depth.shape == raw.shape == (480, 640)
    invalid = (raw == 0) | (raw == 65535)
    assert invalid.any() and np.all(depth[invalid] == 0.0)
    np.testing.assert_allclose(depth[~invalid], raw[~invalid] / 1000.0, rtol=1e-6)
    assert 0.3 < np.median(depth[~invalid]) < 5.0


def test_strecha_scenes_read_their_camera_files(fountain, shared_data_dir):
    """Frame counts, splits, and K, R (camera-to-world) and C exactly as the .camera files."""
    assert fountain.layout == 'strecha' and not fountain.has_depth
    assert len(fountain.frames) == 11
    assert (len(fountain.splits['map']), len(fountain.splits['query'])) == (8, 3)
    herz = open_dataset(shared_data_dir / 'strecha' / 'Herz-Jesus-P25')
    assert len(herz.frames) == 25
    assert (len(herz.splits['map']), len(herz.splits['query'])) == (19, 6)
    path = shared_data_dir / 'strecha' / 'fountain-P11' / 'cameras' / '0004.jpg.camera'
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines()
            if line.strip()]
    frame = fountain.frames['0004']
    np.testing.assert_allclose(frame.camera.K, rows[0:3])
    assert (frame.camera.width, frame.camera.height) == (1024, 682)
    assert frame.camera.distortion == ()
    np.testing.assert_allclose(frame.T_world_camera[:3, 3], rows[7])          # centre C
    np.testing.assert_allclose(frame.T_world_camera[:3, :3], rows[4:7], atol=1e-5)
    assert frame.image_path == path.parent.parent / 'images' / '0004.jpg'


def test_strecha_pose_convention_agrees_with_the_images(fountain):
    """SIFT matches of two views lie on the epipolar lines of the loaded poses (< 1 px)."""
    extractor = create_extractor(FeatureConfig(max_keypoints=1500))
    first, second = fountain.frames['0004'], fountain.frames['0005']
    a, b = extractor.extract(first.load_image()), extractor.extract(second.load_image())
    matches = match_descriptors(descriptor_vectors(a.descriptors, 'sift'),
                                descriptor_vectors(b.descriptors, 'sift'), 0.7, mutual=True)
    assert len(matches) > 200
    x1, x2 = a.keypoints[matches[:, 0]], b.keypoints[matches[:, 1]]
    F = fundamental_matrix(first.camera, first.T_world_camera, second.camera,
                           second.T_world_camera)
    assert np.median(epipolar_distances(F, x1, x2)) < 1.0
    # Reading R as world-to-camera instead (the other common convention) does not fit.
    swapped = [pose.copy() for pose in (first.T_world_camera, second.T_world_camera)]
    for pose in swapped:
        pose[:3, :3] = pose[:3, :3].T
    F_wrong = fundamental_matrix(first.camera, swapped[0], second.camera, swapped[1])
    assert np.median(epipolar_distances(F_wrong, x1, x2)) > 20.0


def test_unknown_layout_names_what_is_missing(tmp_path):
    """A folder of unrelated files is refused with the three layouts it would need."""
    (tmp_path / 'notes.txt').write_text('hello')
    (tmp_path / 'images').mkdir()
    with pytest.raises(DatasetError) as error:
        open_dataset(tmp_path)
    message = str(error.value)
    for expected in ('not a recognised dataset', 'frame-*.pose.txt', 'cameras/',
                     'COLMAP', 'points3D'):
        assert expected in message


def test_missing_folder_is_reported(tmp_path):
    """A path that does not exist (or is a file) gives 'does not exist', not a traceback."""
    with pytest.raises(DatasetError, match='does not exist'):
        open_dataset(tmp_path / 'nowhere')
    (tmp_path / 'file').write_text('x')
    with pytest.raises(DatasetError, match='does not exist'):
        detect_layout(tmp_path / 'file')


def write_sevenscenes(root: Path, names, image=True, intrinsics=True) -> Path:
    """Write a tiny 7-Scenes-layout folder with identity poses and 32x24 images."""
    root.mkdir(parents=True, exist_ok=True)
    if intrinsics:
        (root / 'rgb-camera-intrinsics.txt').write_text('30 0 16\n0 30 12\n0 0 1\n')
    for name in names:
        np.savetxt(root / f'{name}.pose.txt', np.eye(4))
        if image:
            cv2.imwrite(str(root / f'{name}.color.png'), np.full((24, 32, 3), 90, np.uint8))
    return root


def test_split_naming_missing_frames_is_refused(kitchen, tmp_path):
    """A split list with frames the dataset lacks names them; unknown split names list known."""
    listing = tmp_path / 'bad-split.txt'
    listing.write_text('frame-000001\nframe-999999\n# comment\nframe-888888.color.jpg\n')
    with pytest.raises(DatasetError) as error:
        kitchen.split(str(listing))
    assert 'names 2 frames' in str(error.value) and 'frame-999999' in str(error.value)
    assert 'frame-888888' in str(error.value)
    with pytest.raises(DatasetError, match='interleaved-map'):
        kitchen.split('no-such-split')
    good = tmp_path / 'good.txt'
    good.write_text('frame-000002\n\n  frame-000001  \n')
    assert [f.name for f in kitchen.split(str(good))] == ['frame-000002', 'frame-000001']


# (file rewritten in an otherwise good folder, its content, the error that names the problem)
BROKEN_FILES = (
    ('frame-000000.pose.txt', '1 0 0\n', '4x4 finite numbers'),
    ('frame-000000.pose.txt', 'a b c d\n' * 4, 'cannot parse'),
    ('rgb-camera-intrinsics.txt', 'nan 0 320\n0 525 240\n0 0 1\n', '3x3 finite numbers'),
    # A reflection, a scaled rotation and a projective last row are no drift to project away.
    ('frame-000000.pose.txt', '1 0 0 0\n0 1 0 0\n0 0 -1 0\n0 0 0 1\n', 'not a rotation'),
    ('frame-000000.pose.txt', '2 0 0 0\n0 2 0 0\n0 0 2 0\n0 0 0 1\n', 'not a rotation'),
    ('frame-000000.pose.txt', '1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 1 1\n', 'last pose row'),
)


def hostile_png(width: int, height: int) -> bytes:
    """Return a PNG whose header claims ``width`` x ``height`` pixels but holds none."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
            chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def test_broken_sevenscenes_folders(tmp_path):
    """A pose without image, a short or non-numeric pose, and NaN intrinsics -> DatasetError."""
    root = write_sevenscenes(tmp_path / 'no-image', ['frame-000000'], image=False)
    with pytest.raises(DatasetError, match='frame-000000.color.jpg'):
        open_dataset(root)
    for index, (name, content, error) in enumerate(BROKEN_FILES):
        root = write_sevenscenes(tmp_path / f'broken-{index}', ['frame-000000'])
        (root / name).write_text(content)
        with pytest.raises(DatasetError, match=error):
            open_dataset(root)
    root = write_sevenscenes(tmp_path / 'good', ['frame-000000', 'frame-000001'])
    # Tracking drift (singular values 0.9998, as in the real kitchen) is still a pose.
    np.savetxt(root / 'frame-000001.pose.txt', np.diag([0.9998, 1.0, 1.0002, 1.0]))
    dataset = open_dataset(root)
    assert sorted(dataset.frames) == ['frame-000000', 'frame-000001'] and not dataset.has_depth
    np.testing.assert_allclose(dataset.frames['frame-000001'].T_world_camera, np.eye(4))
    assert dataset.frames['frame-000000'].camera.width == 32
    assert dataset.frames['frame-000000'].load_depth() is None


def test_hostile_image_headers_are_dataset_errors(tmp_path):
    """
    A PNG claiming 40000x40000 pixels makes cv2.imread raise cv2.error: it is named instead.

    Checked where the size is probed (first frame), on loading an image and a depth image.
    """
    root = write_sevenscenes(tmp_path / 'probe', ['frame-000000'])
    (root / 'frame-000000.color.png').write_bytes(hostile_png(40000, 40000))
    with pytest.raises(DatasetError, match='cannot read image .*frame-000000.color.png'):
        open_dataset(root)
    root = write_sevenscenes(tmp_path / 'load', ['frame-000000', 'frame-000001'])
    (root / 'frame-000001.color.png').write_bytes(hostile_png(40000, 40000))
    for name in ('frame-000000', 'frame-000001'):
        (root / f'{name}.depth.png').write_bytes(hostile_png(40000, 40000))
    frame = open_dataset(root).frames['frame-000001']
    with pytest.raises(DatasetError, match='cannot read image .*frame-000001.color.png'):
        frame.load_image()
    with pytest.raises(DatasetError, match='cannot read depth .*frame-000001.depth.png'):
        frame.load_depth()


def test_sevenscenes_without_intrinsics_must_have_the_kinect_size(tmp_path):
    """The default camera of the layout (fx 525 at 640x480) is never applied to other sizes."""
    root = write_sevenscenes(tmp_path / 'small', ['frame-000000'], intrinsics=False)
    with pytest.raises(DatasetError, match='no rgb-camera-intrinsics.txt .* 32x24'):
        open_dataset(root)


def test_an_image_of_another_size_than_its_camera_is_refused(tmp_path):
    """A resized image in a folder is named when it is read, not mapped with the wrong K."""
    root = write_sevenscenes(tmp_path / 'mixed', ['frame-000000', 'frame-000001'])
    cv2.imwrite(str(root / 'frame-000001.color.png'), np.full((12, 16, 3), 90, np.uint8))
    dataset = open_dataset(root)
    assert dataset.frames['frame-000000'].load_image().shape == (24, 32, 3)
    with pytest.raises(DatasetError, match='is 16x12 but its camera is 32x24'):
        dataset.frames['frame-000001'].load_image()


def test_gray_and_16_bit_images_load_as_8_bit_bgr(shared_data_dir, tmp_path):
    """
    A 12-bit mono frame in a 16-bit PNG keeps its contrast (as live mono16 frames do).

    OpenCV's plain colour read keeps the high byte only: the frame came back almost black
    and without keypoints.
    """
    source = shared_data_dir / '7scenes-redkitchen'
    gray = cv2.imread(str(source / 'frame-000040.color.jpg'), cv2.IMREAD_GRAYSCALE)
    root = write_sevenscenes(tmp_path / 'mono', ['frame-000000', 'frame-000001'],
                             intrinsics=False)
    for name in ('frame-000000', 'frame-000001'):
        (root / f'{name}.color.png').unlink()
    cv2.imwrite(str(root / 'frame-000000.color.png'), gray.astype(np.uint16) * 16)   # 12 bits
    cv2.imwrite(str(root / 'frame-000001.color.png'), gray)
    dataset = open_dataset(root)
    extractor = create_extractor(FeatureConfig(max_keypoints=500))
    for name in ('frame-000000', 'frame-000001'):
        image = dataset.frames[name].load_image()
        assert image.dtype == np.uint8 and image.shape == (480, 640, 3)
        assert image.max() >= 250
        assert len(extractor.extract(image)) == 500


def test_16_bit_bgra_images_keep_their_contrast(tmp_path):
    """A 12-bit BGRA16 PNG with opaque alpha loads as bright BGR, not near black."""
    root = write_sevenscenes(tmp_path / 'bgra', ['frame-000000'])
    bgr = np.random.default_rng(5).integers(0, 4096, (24, 32, 3)).astype(np.uint16)
    bgra = np.dstack([bgr, np.full((24, 32), 65535, np.uint16)])
    cv2.imwrite(str(root / 'frame-000000.color.png'), bgra)
    image = open_dataset(root).frames['frame-000000'].load_image()
    assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
    assert image.max() >= 250


def test_depth_must_be_16_bit_millimetres(shared_data_dir, tmp_path):
    """An 8-bit depth PNG (a visualisation, not a measurement) is refused by name."""
    source, root = shared_data_dir / '7scenes-redkitchen', tmp_path / 'kitchen'
    root.mkdir()
    (root / 'rgb-camera-intrinsics.txt').symlink_to(source / 'rgb-camera-intrinsics.txt')
    for suffix in ('color.jpg', 'pose.txt', 'depth.png'):
        (root / f'frame-000000.{suffix}').symlink_to(source / f'frame-000000.{suffix}')
    for suffix in ('color.jpg', 'pose.txt'):
        (root / f'frame-000001.{suffix}').symlink_to(source / f'frame-000001.{suffix}')
    depth = cv2.imread(str(source / 'frame-000001.depth.png'), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / 'frame-000001.depth.png'), (depth // 256).astype(np.uint8))
    dataset = open_dataset(root)
    assert dataset.frames['frame-000000'].load_depth().max() > 1.0   # metres
    with pytest.raises(DatasetError, match='frame-000001.depth.png: depth must be a '
                                           'single-channel 16-bit PNG'):
        dataset.frames['frame-000001'].load_depth()


def test_depth_is_chosen_per_split(shared_data_dir, tmp_path):
    """
    A frame without depth outside the split leaves the split's RGB-D mapping alone.

    Inside the split it is an error naming it: a silent switch to triangulation would make a
    slower, less accurate map.
    """
    source, root = shared_data_dir / '7scenes-redkitchen', tmp_path / 'kitchen'
    root.mkdir()
    (root / 'rgb-camera-intrinsics.txt').symlink_to(source / 'rgb-camera-intrinsics.txt')
    for index in range(4):
        name = f'frame-{index:06d}'
        suffixes = ('color.jpg', 'pose.txt') + (('depth.png',) if index < 3 else ())
        for suffix in suffixes:
            (root / f'{name}.{suffix}').symlink_to(source / f'{name}.{suffix}')
    (root / 'split-rgbd.txt').write_text('frame-000000\nframe-000001\nframe-000002\n')
    (root / 'split-mixed.txt').write_text('frame-000002\nframe-000003\n')
    dataset = open_dataset(root)
    features = FeatureConfig(max_keypoints=300)
    observations = collect_observations(dataset, dataset.split('rgbd'), features, False)
    assert observations.valid.mean() > 0.5   # depth, not a few triangulated points
    with pytest.raises(DatasetError, match='1 of 2 frames have no depth image .*frame-000003'):
        collect_observations(dataset, dataset.split('mixed'), features, False)


def test_broken_strecha_folders(tmp_path):
    """A camera file without image, an unparsable one, or none at all -> DatasetError."""
    root = tmp_path / 'strecha'
    (root / 'images').mkdir(parents=True)
    (root / 'cameras').mkdir()
    with pytest.raises(DatasetError, match='holds no'):
        open_dataset(root)
    (root / 'cameras' / '0000.jpg.camera').write_text('1 0 0\n0 1 0\n')
    with pytest.raises(DatasetError, match='no image'):
        open_dataset(root)
    cv2.imwrite(str(root / 'images' / '0000.jpg'), np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match='cannot parse Strecha camera file'):
        open_dataset(root)


STRECHA_K = '30 0 16\n0 30 12\n0 0 1\n'
STRECHA_R = '1 0 0\n0 1 0\n0 0 1\n'


@pytest.mark.parametrize('content, message', [
    (STRECHA_K + '0.1 0\n' + STRECHA_R + '0 0 0\n32 24\n', r'row 4 \(distortion\)'),
    (STRECHA_K + '0 0 0\n' + STRECHA_R + '0 0\n32 24\n', r'row 8 \(centre C\)'),
    (STRECHA_K + '0 0 0\nnan 0 0\n0 1 0\n0 0 1\n0 0 0\n32 24\n', r'row 5 \(R row 1\)'),
    (STRECHA_K + '0 0 0\n' + STRECHA_R + 'inf 0 0\n32 24\n', r'row 8 .*finite'),
    (STRECHA_K + '0 0 0\n' + STRECHA_R + '0 0 0\n32.5 24\n', 'positive whole numbers'),
    (STRECHA_K + '0 0 0\n1 0 0\n0 1 0\n0 0 -1\n0 0 0\n32 24\n', 'not a rotation'),
    (STRECHA_K + '0 0 0\n1 0 0\n0 1 0\n0 0 0.9\n0 0 0\n32 24\n', 'not a rotation'),
    ('-30 0 16\n0 30 12\n0 0 1\n0 0 0\n' + STRECHA_R + '0 0 0\n32 24\n', 'focal lengths'),
], ids=['2-distortion', '2-centre', 'nan-R', 'inf-C', 'half-pixel-size', 'reflection',
        'skewed-R', 'negative-focal'])
def test_broken_strecha_camera_rows_are_named(tmp_path, content, message):
    """Short rows, NaN/inf, a reflection or a skewed R in a camera file -> DatasetError."""
    root = tmp_path / 'strecha'
    (root / 'images').mkdir(parents=True)
    (root / 'cameras').mkdir()
    cv2.imwrite(str(root / 'images' / '0000.jpg'), np.zeros((24, 32, 3), np.uint8))
    (root / 'cameras' / '0000.jpg.camera').write_text(content)
    with pytest.raises(DatasetError, match='0000.jpg.camera.*' + message):
        open_dataset(root)
    # The same file with a drifting (0.9998) but real rotation opens.
    drift = STRECHA_K + '0 0 0\n0.9998 0 0\n0 1 0\n0 0 1\n1 2 3\n32 24\n'
    (root / 'cameras' / '0000.jpg.camera').write_text(drift)
    pose = open_dataset(root).frames['0000'].T_world_camera
    np.testing.assert_allclose(pose[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(pose[:3, 3], [1.0, 2.0, 3.0])


def colmap_scene(seed: int = 0):
    """Return cameras, poses (camera-to-world), names and 3D points of a small known scene."""
    rng = np.random.default_rng(seed)
    cameras = {1: ('PINHOLE', 640, 480, [500.0, 510.0, 322.5, 237.0]),
               2: ('SIMPLE_RADIAL', 320, 240, [260.0, 160.0, 120.0, -0.05])}
    poses = arc_of_cameras(4, [0.0, 0.0, 0.0], 4.0, 40.0)
    names = ['view_00.png', 'view_01.png', 'view_02.png', 'view_03.png']
    camera_ids = [1, 1, 2, 1]
    points = points_in_box(rng, 30, [0.0, 0.0, 0.0], 0.8)
    return cameras, poses, names, camera_ids, points


def pinhole_of(model):
    """
    Return the PinholeCamera a (name, width, height, params) COLMAP camera must become.

    COLMAP's pixel centres sit at +0.5 (its documented convention), OpenCV's at 0.
    """
    name, width, height, params = model
    if name == 'PINHOLE':
        fx, fy, cx, cy = params
        return PinholeCamera(width, height, fx, fy, cx - 0.5, cy - 0.5)
    f, cx, cy, k = params
    return PinholeCamera(width, height, f, f, cx - 0.5, cy - 0.5, (k, 0.0, 0.0, 0.0))


def world_to_camera(pose):
    """Return COLMAP's (qw, qx, qy, qz) and t of a camera-to-world pose, from scipy."""
    rotation = pose[:3, :3].T
    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    return [w, x, y, z], -rotation @ pose[:3, 3]


def observations_of(scene):
    """Return per image (pixels, point ids): the first 20 points, projected (OpenCV pixels)."""
    cameras, poses, _, camera_ids, points = scene
    result = []
    for pose, camera_id in zip(poses, camera_ids):
        pixels, _ = project(pinhole_of(cameras[camera_id]).undistorted(), pose, points[:20])
        result.append((pixels, np.arange(20)))
    return result


def write_colmap_text(model_dir: Path, scene, empty_image: int = -1) -> None:
    """Write cameras.txt, images.txt and points3D.txt (image ``empty_image`` has no points)."""
    cameras, poses, names, camera_ids, points = scene
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / 'cameras.txt').write_text(
        '# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n' + ''.join(
            f'{cid} {name} {w} {h} ' + ' '.join(f'{p:.17g}' for p in params) + '\n'
            for cid, (name, w, h, params) in cameras.items()))
    lines = ['# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME', '# POINTS2D[]']
    for index, (pose, name, (pixels, ids)) in enumerate(zip(poses, names,
                                                            observations_of(scene))):
        q, t = world_to_camera(pose)
        lines.append(f'{index + 1} ' + ' '.join(f'{v:.17g}' for v in [*q, *t]) +
                     f' {camera_ids[index]} {name}')
        lines.append('' if index == empty_image else
                     ' '.join(f'{u + 0.5:.17g} {v + 0.5:.17g} {i}'   # COLMAP's pixels
                              for (u, v), i in zip(pixels, ids)))
    (model_dir / 'images.txt').write_text('\n'.join(lines) + '\n')
    (model_dir / 'points3D.txt').write_text(''.join(
        f'{i} {x:.17g} {y:.17g} {z:.17g} 128 128 128 0.5 1 {i}\n'
        for i, (x, y, z) in enumerate(points)))


def write_colmap_binary(model_dir: Path, scene) -> None:
    """Write cameras.bin, images.bin and points3D.bin as COLMAP's binary format specifies."""
    cameras, poses, names, camera_ids, points = scene
    model_ids = {'PINHOLE': 1, 'SIMPLE_RADIAL': 2}
    model_dir.mkdir(parents=True, exist_ok=True)
    data = struct.pack('<Q', len(cameras))
    for cid, (name, w, h, params) in cameras.items():
        data += struct.pack('<iiQQ', cid, model_ids[name], w, h)
        data += struct.pack(f'<{len(params)}d', *params)
    (model_dir / 'cameras.bin').write_bytes(data)
    data = struct.pack('<Q', len(poses))
    for index, (pose, name, (pixels, ids)) in enumerate(zip(poses, names,
                                                            observations_of(scene))):
        q, t = world_to_camera(pose)
        data += struct.pack('<i7di', index + 1, *q, *t, camera_ids[index])
        data += name.encode() + b'\x00' + struct.pack('<Q', len(ids))
        for (u, v), i in zip(pixels, ids):
            data += struct.pack('<ddq', u + 0.5, v + 0.5, i)   # COLMAP's pixel convention
    (model_dir / 'images.bin').write_bytes(data)
    data = struct.pack('<Q', len(points))
    for i, xyz in enumerate(points):
        data += struct.pack('<Q3d3Bd', i, *xyz, 128, 128, 128, 0.5)
        data += struct.pack('<Qii', 1, 1, i)
    (model_dir / 'points3D.bin').write_bytes(data)


def write_images(root: Path, scene) -> None:
    """Write placeholder images of the right sizes into root/images."""
    cameras, _, names, camera_ids, _ = scene
    (root / 'images').mkdir(parents=True, exist_ok=True)
    for name, camera_id in zip(names, camera_ids):
        _, width, height, _ = cameras[camera_id]
        cv2.imwrite(str(root / 'images' / name), np.full((height, width, 3), 100, np.uint8))


def check_colmap_dataset(dataset, scene) -> None:
    """Assert that a dataset holds the scene's poses, cameras and 3D observations."""
    cameras, poses, names, camera_ids, points = scene
    assert dataset.layout == 'colmap'
    assert sorted(dataset.frames) == [Path(n).stem for n in names]
    for pose, name, camera_id, (pixels, ids) in zip(poses, names, camera_ids,
                                                    observations_of(scene)):
        frame = dataset.frames[Path(name).stem]
        np.testing.assert_allclose(frame.T_world_camera, pose, atol=1e-9)
        assert frame.camera == pinhole_of(cameras[camera_id])
        assert frame.image_path == dataset.root / 'images' / name
        assert frame.load_image().shape[:2] == (frame.camera.height, frame.camera.width)
        # The stored 2D observations are where the loaded pose and camera project the points.
        seen, _ = project(frame.camera, frame.T_world_camera, points[ids])
        np.testing.assert_allclose(seen, pixels, atol=1e-6)
    model = dataset.colmap_model
    assert len(model.points3d) == len(points)
    np.testing.assert_allclose(model.points3d[7], points[7])


def test_colmap_text_model_is_detected_and_read(tmp_path):
    """A text model under sparse/0 with images/ opens with the poses it was written from."""
    scene = colmap_scene()
    write_colmap_text(tmp_path / 'sparse' / '0', scene)
    write_images(tmp_path, scene)
    (tmp_path / 'split-map.txt').write_text('view_00\nview_02\n')
    assert detect_layout(tmp_path) == 'colmap'
    dataset = open_dataset(tmp_path)
    check_colmap_dataset(dataset, scene)
    assert [f.name for f in dataset.split('map')] == ['view_00', 'view_02']


def test_colmap_binary_model_reads_like_the_text_one(tmp_path):
    """The same scene written in COLMAP's binary format opens with identical content."""
    scene = colmap_scene(seed=1)
    write_colmap_binary(tmp_path / 'sparse', scene)
    write_images(tmp_path, scene)
    check_colmap_dataset(open_dataset(tmp_path), scene)


def test_colmap_image_without_points_keeps_the_model_aligned(tmp_path):
    """An image with an empty POINTS2D line (known-pose models) does not shift the others."""
    scene = colmap_scene(seed=2)
    for empty in (1, 3):  # one in the middle, one at the end
        root = tmp_path / f'empty-{empty}'
        write_colmap_text(root, scene, empty_image=empty)
        write_images(root, scene)
        dataset = open_dataset(root)
        assert len(dataset.frames) == 4
        np.testing.assert_allclose(dataset.frames['view_03'].T_world_camera, scene[1][3],
                                   atol=1e-9)
        images = {image.name: image for image in dataset.colmap_model.images.values()}
        assert len(images[scene[2][empty]].points2d) == 0
        assert len(images[scene[2][0]].points2d) == 20


def test_colmap_points_reach_the_keypoints_they_were_seen_at(kitchen, tmp_path):
    """
    A COLMAP model of real kitchen frames gives each keypoint the 3D point observed there.

    The model follows COLMAP's conventions: pixel centres at +0.5 (principal point and 2D
    observations) and image names with a subfolder under images/.
    """
    features = FeatureConfig(max_keypoints=200)
    frames = [kitchen.frames[f'frame-{i:06d}'] for i in (0, 10, 20)]
    camera = frames[0].camera
    root = tmp_path / 'colmap'
    (root / 'images' / 'seq').mkdir(parents=True)
    cameras = f'1 PINHOLE 640 480 {camera.fx} {camera.fy} {camera.cx + 0.5} {camera.cy + 0.5}\n'
    images, points, expected = [], [], {}
    for index, frame in enumerate(frames):
        (root / 'images' / 'seq' / f'{frame.name}.jpg').symlink_to(frame.image_path)
        seen = collect_observations(kitchen, [frame], features, False)
        keep = np.flatnonzero(seen.valid)[:50]
        q, t = world_to_camera(frame.T_world_camera)
        images.append(f'{index + 1} ' + ' '.join(f'{v:.17g}' for v in [*q, *t]) +
                      f' 1 seq/{frame.name}.jpg')
        images.append(' '.join(f'{u + 0.5:.17g} {v + 0.5:.17g} {len(points) + k}'
                               for k, (u, v) in enumerate(seen.keypoints[keep])))
        expected[frame.name] = (seen.keypoints[keep], seen.xyz[keep])
        points.extend(seen.xyz[keep])
    (root / 'cameras.txt').write_text(cameras)
    (root / 'images.txt').write_text('\n'.join(images) + '\n')
    (root / 'points3D.txt').write_text(''.join(
        f'{i} {x:.9g} {y:.9g} {z:.9g} 128 128 128 0.5 1 {i}\n' for i, (x, y, z) in
        enumerate(points)))
    (root / 'split-map.txt').write_text('seq/frame-000000.jpg\nseq/frame-000010\n')
    dataset = open_dataset(root)
    assert sorted(dataset.frames) == [f'seq/{f.name}' for f in frames]
    assert [f.name for f in dataset.split('map')] == ['seq/frame-000000', 'seq/frame-000010']
    assert dataset.frames['seq/frame-000000'].camera == camera
    observed = collect_observations(dataset, dataset.split('all'), features, False)
    for index, frame in enumerate(frames):
        pixels, xyz = expected[frame.name]
        mine = observed.frame_index == index
        lookup = {tuple(k): x for k, x in zip(observed.keypoints[mine], observed.xyz[mine])}
        np.testing.assert_allclose([lookup[tuple(k)] for k in pixels], xyz, atol=1e-5)


def test_broken_colmap_models(tmp_path):
    """Missing images/, truncated binary files and fisheye cameras give clear errors."""
    scene = colmap_scene()
    write_colmap_text(tmp_path / 'no-images', scene)
    with pytest.raises(DatasetError, match='images/ folder'):
        open_dataset(tmp_path / 'no-images')
    root = tmp_path / 'truncated'
    write_colmap_binary(root, scene)
    write_images(root, scene)
    data = (root / 'images.bin').read_bytes()
    (root / 'images.bin').write_bytes(data[:len(data) // 2])
    with pytest.raises(ColmapError, match='truncated'):
        open_dataset(root)
    root = tmp_path / 'fisheye'
    write_colmap_text(root, scene)
    write_images(root, scene)
    text = (root / 'cameras.txt').read_text().replace('SIMPLE_RADIAL', 'SIMPLE_RADIAL_FISHEYE')
    (root / 'cameras.txt').write_text(text)
    with pytest.raises(ColmapError, match='not supported'):
        open_dataset(root)
    assert issubclass(ColmapError, ValueError)
    root = tmp_path / 'unknown-camera'
    write_colmap_text(root, scene)
    write_images(root, scene)
    text = (root / 'cameras.txt').read_text()
    (root / 'cameras.txt').write_text(text.replace('\n2 SIMPLE_RADIAL', '\n5 SIMPLE_RADIAL'))
    with pytest.raises(DatasetError, match='uses camera 2, which its cameras file'):
        open_dataset(root)


def binary_image(count: int, name: bytes = b'view_00.png', tvec=(0.0, 0.0, 0.0)) -> bytes:
    """Return an images.bin of one image whose 2D point count is ``count`` (no points)."""
    return (struct.pack('<Q', 1) + struct.pack('<i7di', 1, 1.0, 0.0, 0.0, 0.0, *tvec, 1) +
            name + b'\x00' + struct.pack('<Q', count))


def binary_point(track: bytes) -> bytes:
    """Return a points3D.bin of one point followed by ``track`` (length and entries)."""
    return struct.pack('<Q', 1) + struct.pack('<Q3d3Bd', 1, 0.0, 0.0, 0.0, 1, 1, 1, 0.5) + track


@pytest.mark.parametrize('part, data, message', [
    ('images', binary_image(2 ** 62), 'truncated .*claims 4611686018427387904 entries'),
    ('images', binary_image(2 ** 40), 'truncated .*claims 1099511627776 entries'),
    ('images', binary_image(10 ** 8), 'truncated .*claims 100000000 entries'),
    ('images', struct.pack('<Q', 2 ** 63), 'truncated .*claims 9223372036854775808 images'),
    ('images', binary_image(0)[:-9], 'image name has no end'),
    ('images', binary_image(0, tvec=(0.0, float('nan'), 0.0)), 'non-finite pose'),
    ('points3D', binary_point(struct.pack('<Q', 2 ** 61)), 'truncated .*point 1 track'),
    ('points3D', binary_point(struct.pack('<Q', 5) + b'\x00' * 3), 'truncated .*point 1'),
    ('cameras', struct.pack('<Q', 1) + struct.pack('<iiQQ', 1, 99, 640, 480),
     'unknown model id 99'),
], ids=['points2D-2^62', 'points2D-2^40', 'points2D-1e8', 'images-2^63', 'unterminated-name',
        'nan-tvec', 'track-2^61', 'truncated-track', 'unknown-model-id'])
def test_hostile_binary_colmap_models_are_colmap_errors(tmp_path, part, data, message):
    """
    Counts larger than the file, truncated tracks and NaN poses -> ColmapError, at once.

    The counts are checked against the bytes left before anything is allocated: 2^62 gave an
    OverflowError, 2^40 a MemoryError, and a 5-entry track of 3 bytes was accepted.
    """
    scene = colmap_scene()
    write_colmap_binary(tmp_path, scene)
    write_images(tmp_path, scene)
    (tmp_path / f'{part}.bin').write_bytes(data)
    with pytest.raises(ColmapError, match=message):
        open_dataset(tmp_path)


@pytest.mark.parametrize('cameras, images, points, message', [
    ('1 PINHOLE 640 480 500 500 320\n', None, None, 'PINHOLE expects 4 parameters, got 3'),
    ('1 FOO 640 480 500\n', None, None, 'camera model FOO of camera 1 is not supported'),
    ('1 PINHOLE 640 480 500 nan 320 240\n', None, None, 'non-finite parameters'),
    (None, '1 1 0 0 0 nan 0 0 1 view_00.png\n\n', None, 'line 1 has a non-finite pose'),
    (None, '1 nan 0 0 0 0 0 0 1 view_00.png\n\n', None, 'line 1 has a non-finite pose'),
    (None, '1 1 0 0 0 0 0 0 1 view_00.png\n1 nan 3\n', None, '2D points has non-finite'),
    (None, '1 1 0 0 0 0 0 0 1 view_00.png\n1 2\n', None, 'X Y POINT3D_ID triplets'),
    (None, '1 1 0 0 0 0 0 0 1\n\n', None, 'expected IMAGE_ID'),
    (None, None, '1 nan 0 0 1 1 1 0\n', 'points3D.txt line 1: the point has non-finite'),
], ids=['short-params', 'unknown-model', 'nan-param', 'nan-tvec', 'nan-qvec', 'nan-point2d',
        'odd-point2d', 'no-name', 'nan-point3d'])
def test_broken_text_colmap_models_are_named(tmp_path, cameras, images, points, message):
    """Wrong parameter counts, unknown models and non-finite values -> ColmapError."""
    scene = colmap_scene()
    write_colmap_text(tmp_path, scene)
    write_images(tmp_path, scene)
    for part, text in (('cameras', cameras), ('images', images), ('points3D', points)):
        if text is not None:
            (tmp_path / f'{part}.txt').write_text(text)
    with pytest.raises(ColmapError, match=message):
        open_dataset(tmp_path)


def test_colmap_images_must_exist_and_name_distinct_frames(tmp_path):
    """
    Missing image files are named at open time, like the other layouts do.

    Two images differing only in suffix (a.png, a.jpg) would both be frame 'a', one silently
    replacing the other: refused.
    """
    scene = colmap_scene()
    write_colmap_text(tmp_path, scene)
    write_images(tmp_path, scene)
    (tmp_path / 'images' / 'view_01.png').unlink()
    (tmp_path / 'images' / 'view_03.png').unlink()
    with pytest.raises(DatasetError, match=r"2 images .* are not in .*view_01.png', "
                                           r"'view_03.png'"):
        open_dataset(tmp_path)
    cv2.imwrite(str(tmp_path / 'images' / 'a.png'), np.zeros((480, 640, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'images' / 'a.jpg'), np.zeros((480, 640, 3), np.uint8))
    (tmp_path / 'images.txt').write_text('1 1 0 0 0 0 0 0 1 a.png\n\n'
                                         '2 1 0 0 0 1 0 0 1 a.jpg\n\n')
    with pytest.raises(DatasetError, match="images a.png and a.jpg .* both make frame 'a'"):
        open_dataset(tmp_path)
