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
rosbag2 tools: dataset -> bag (sqlite3 and mcap), bag -> dataset, offline evaluation, CLI.

Bags are written from real 7-Scenes frames and read back with rosbags, independently of the
code under test where it matters (topics, QoS, stamps, the TF tree against ground truth).
"""

import json

import cv2
from neumap_testing import cached_map, QUERY_FRAMES, SCENE, write_split
import numpy as np
import pytest

from neumap_ros.core.bags import bag_to_dataset, BagError, BagReader, dataset_to_bag, \
    DEFAULT_START_NS, default_T_base_camera, evaluate_bag, odom_drift, read_tum, typestore
from neumap_ros.core.datasets import open_dataset
from neumap_ros.core.geometry import invert_transform, make_transform, pose_errors, \
    rotation_from_quaternion_xyzw

FRAMES = QUERY_FRAMES[:6]


@pytest.fixture(scope='module')
def kitchen(shared_data_dir):
    """Return the kitchen dataset."""
    return open_dataset(shared_data_dir / SCENE)


@pytest.fixture(scope='module')
def bags(tmp_path_factory, shared_data_dir):
    """Write one sqlite3 bag (bgr8, with depth) and one mcap bag (rgb8, best effort)."""
    root = tmp_path_factory.mktemp('bags')
    split = write_split(root / 'split.txt', FRAMES)
    sqlite = dataset_to_bag(shared_data_dir / SCENE, str(split), root / 'sqlite', 'sqlite3',
                            fps=5.0, depth_topic='/camera/depth/image_raw')
    mcap = dataset_to_bag(shared_data_dir / SCENE, str(split), root / 'mcap', 'mcap', fps=5.0,
                          encoding='rgb8', image_reliable=False)
    return {'sqlite3': sqlite, 'mcap': mcap, 'root': root, 'split': split}


@pytest.fixture(scope='module')
def feature_map(tmp_path_factory, shared_data_dir):
    """Return the session's small feature map of the kitchen."""
    return cached_map(tmp_path_factory, shared_data_dir)


def read_all(path):
    """Return {topic: [(log_time, message)]} and {topic: connection} of a bag, via rosbags."""
    from rosbags.rosbag2 import Reader
    store = typestore()
    messages, connections = {}, {}
    with Reader(path) as reader:
        for connection in reader.connections:
            connections[connection.topic] = connection
        for connection, stamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(
                (stamp, store.deserialize_cdr(raw, connection.msgtype)))
    return messages, connections


def matrix(transform):
    """Return a TransformStamped's transform as a 4x4 matrix."""
    t, q = transform.transform.translation, transform.transform.rotation
    return make_transform(rotation_from_quaternion_xyzw([q.x, q.y, q.z, q.w]), [t.x, t.y, t.z])


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_bag_holds_a_robot_recording(bags, kitchen, storage):
    """Topics, types, QoS, stamps, frames and the TF tree are those of a real robot bag."""
    from rosbags.interfaces import QosDurability, QosReliability
    summary = bags[storage]
    messages, connections = read_all(summary.path)
    assert (summary.path / 'metadata.yaml').is_file()
    expected_types = {'/tf': 'tf2_msgs/msg/TFMessage', '/tf_static': 'tf2_msgs/msg/TFMessage',
                      '/camera/color/image_raw': 'sensor_msgs/msg/Image',
                      '/camera/color/camera_info': 'sensor_msgs/msg/CameraInfo',
                      '/ground_truth/camera_pose': 'geometry_msgs/msg/PoseStamped'}
    if storage == 'sqlite3':
        expected_types['/camera/depth/image_raw'] = 'sensor_msgs/msg/Image'
    assert {t: c.msgtype for t, c in connections.items()} == expected_types
    static_qos = connections['/tf_static'].ext.offered_qos_profiles[0]
    assert static_qos.durability == QosDurability.TRANSIENT_LOCAL
    image_qos = connections['/camera/color/image_raw'].ext.offered_qos_profiles[0]
    assert image_qos.reliability == (QosReliability.RELIABLE if storage == 'sqlite3'
                                     else QosReliability.BEST_EFFORT)

    images = messages['/camera/color/image_raw']
    stamps = [m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec for _, m in images]
    assert stamps == [DEFAULT_START_NS + i * 200_000_000 for i in range(len(FRAMES))]
    assert stamps == summary.stamps_ns
    first = images[0][1]
    assert first.header.frame_id == 'camera_color_optical_frame'
    assert first.encoding == ('bgr8' if storage == 'sqlite3' else 'rgb8')
    pixels = first.data.reshape(480, 640, 3)
    original = kitchen.frames[FRAMES[0]].load_image()
    if storage == 'mcap':
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(pixels, original)
    info = messages['/camera/color/camera_info'][0][1]
    np.testing.assert_allclose(info.k.reshape(3, 3), kitchen.frames[FRAMES[0]].camera.K)
    assert info.header.stamp == first.header.stamp

    [(_, static)] = messages['/tf_static']
    [mount] = static.transforms
    assert (mount.header.frame_id, mount.child_frame_id) == (
        'base_link', 'camera_color_optical_frame')
    T_base_camera = matrix(mount)
    np.testing.assert_allclose(T_base_camera, default_T_base_camera(), atol=1e-9)
    assert np.linalg.norm(T_base_camera[:3, 3]) > 0.3  # a real lever arm, not identity
    # odom -> base_link is the ground truth seen through the drifting map -> odom.
    assert len(messages['/tf']) == len(messages['/ground_truth/camera_pose']) == len(FRAMES)
    for index, ((_, tf), (_, truth)) in enumerate(zip(messages['/tf'],
                                                      messages['/ground_truth/camera_pose'])):
        [odom_base] = tf.transforms
        assert (odom_base.header.frame_id, odom_base.child_frame_id) == ('odom', 'base_link')
        assert odom_base.header.stamp == truth.header.stamp == images[index][1].header.stamp
        T_map_camera = odom_drift(index * 0.2) @ matrix(odom_base) @ T_base_camera
        expected = kitchen.frames[FRAMES[index]].T_world_camera
        t_err, r_err = pose_errors(T_map_camera, expected)
        assert t_err < 1e-9 and r_err < 1e-6
        p, q = truth.pose.position, truth.pose.orientation
        T_truth = make_transform(rotation_from_quaternion_xyzw([q.x, q.y, q.z, q.w]),
                                 [p.x, p.y, p.z])
        np.testing.assert_allclose(T_truth, expected, atol=1e-9)
    assert not np.allclose(odom_drift(0.0), odom_drift(1.0))


def test_bag_to_dataset_round_trip(bags, kitchen, tmp_path):
    """A bag's frames come back as a dataset with the same pixels, poses and depth."""
    summary = bag_to_dataset(bags['sqlite3'].path, tmp_path / 'ds',
                             depth_topic='/camera/depth/image_raw', split_name='mapping')
    assert summary.frames == len(FRAMES) and summary.has_depth
    assert summary.pose_source == 'topic /ground_truth/camera_pose'
    dataset = open_dataset(tmp_path / 'ds')
    assert dataset.has_depth and sorted(dataset.splits) == ['mapping']
    for index, name in enumerate(FRAMES):
        frame = dataset.frames[f'frame-{index:06d}']
        original = kitchen.frames[name]
        np.testing.assert_allclose(frame.T_world_camera, original.T_world_camera, atol=1e-8)
        np.testing.assert_array_equal(frame.load_image(), original.load_image())
        np.testing.assert_allclose(frame.load_depth(), original.load_depth(), atol=1e-6)
        assert frame.camera == original.camera
    stamps = (tmp_path / 'ds' / 'timestamps.txt').read_text().split()
    assert int(stamps[1]) == DEFAULT_START_NS
    with pytest.raises(BagError, match='already holds frames'):
        bag_to_dataset(bags['sqlite3'].path, tmp_path / 'ds')


def test_bag_to_dataset_from_tf(bags, kitchen, tmp_path):
    """Without a pose topic, poses come from TF: world frame odom -> the image's frame."""
    summary = bag_to_dataset(bags['mcap'].path, tmp_path / 'ds', gt_topic='',
                             world_frame='odom', every=2)
    assert summary.pose_source.startswith('tf odom')
    dataset = open_dataset(tmp_path / 'ds')
    assert len(dataset.frames) == len(FRAMES[::2])
    for index, name in enumerate(FRAMES[::2]):
        T_odom_camera = invert_transform(odom_drift(index * 0.4)) @ \
            kitchen.frames[name].T_world_camera
        np.testing.assert_allclose(dataset.frames[f'frame-{index:06d}'].T_world_camera,
                                   T_odom_camera, atol=1e-8)
    with pytest.raises(BagError, match='no image of .* has a pose'):
        bag_to_dataset(bags['mcap'].path, tmp_path / 'none', gt_topic='',
                       world_frame='nowhere')


DROP = object()


def copy_bag(source, target, edit):
    """
    Copy a bag through ``edit(topic, msg)``.

    It returns None to keep the message, a message to replace it (of any type), a
    (topic, message) pair to move it, a list of such pairs to write several, or DROP.
    """
    from rosbags.rosbag2 import Reader, Writer
    store = typestore()
    connections = {}
    with Reader(source) as reader, Writer(target, version=9) as writer:
        for connection, stamp, raw in reader.messages():
            out = edit(connection.topic, store.deserialize_cdr(raw, connection.msgtype))
            if out is DROP:
                continue
            if out is None:
                outputs = [(connection.topic, connection.msgtype, raw)]
            else:
                pairs = out if isinstance(out, list) else [
                    out if isinstance(out, tuple) else (connection.topic, out)]
                outputs = [(topic, msg.__msgtype__,
                            store.serialize_cdr(msg, msg.__msgtype__)) for topic, msg in pairs]
            for topic, msgtype, data in outputs:
                if (topic, msgtype) not in connections:
                    connections[topic, msgtype] = writer.add_connection(topic, msgtype,
                                                                        typestore=store)
                writer.write(connections[topic, msgtype], stamp, data)


def test_bag_to_dataset_of_rectified_images(bags, kitchen, tmp_path):
    """
    With rectified_input the images are kept as recorded, with the camera of P.

    The camera_info of an image_rect topic still carries the lens distortion; undistorting
    such images a second time would bend them.
    """
    def distort(topic, msg):
        if msg.__msgtype__ == 'sensor_msgs/msg/CameraInfo':
            msg.d = np.array([0.1, -0.05, 0.0, 0.0, 0.0])
            return msg

    bag = tmp_path / 'rect'
    copy_bag(bags['mcap'].path, bag, distort)
    rectified = bag_to_dataset(bag, tmp_path / 'rectified', rectified_input=True)
    distorted = bag_to_dataset(bag, tmp_path / 'distorted')
    assert rectified.frames == distorted.frames == len(FRAMES)
    kept = open_dataset(tmp_path / 'rectified').frames['frame-000000']
    undistorted = open_dataset(tmp_path / 'distorted').frames['frame-000000']
    original = kitchen.frames[FRAMES[0]]
    np.testing.assert_array_equal(kept.load_image(), original.load_image())
    assert kept.camera == original.camera
    assert np.abs(undistorted.load_image().astype(int) - original.load_image()).mean() > 2.0


def ground_truth_as(kind, frame_id='map', shift_ns=0):
    """Return an edit for copy_bag that turns the PoseStamped ground truth into ``kind``."""
    store = typestore()
    msg = store.types

    def edit(topic, pose_stamped):
        if topic != '/ground_truth/camera_pose':
            return None
        header = pose_stamped.header
        stamp_ns = header.stamp.sec * 10 ** 9 + header.stamp.nanosec + shift_ns
        header = msg['std_msgs/msg/Header'](
            stamp=msg['builtin_interfaces/msg/Time'](sec=stamp_ns // 10 ** 9,
                                                     nanosec=stamp_ns % 10 ** 9),
            frame_id=frame_id)
        pose, covariance = pose_stamped.pose, np.zeros(36)
        with_covariance = msg['geometry_msgs/msg/PoseWithCovariance'](
            pose=pose, covariance=covariance)
        if kind == 'PoseStamped':
            out = msg['geometry_msgs/msg/PoseStamped'](header=header, pose=pose)
        elif kind == 'PoseWithCovarianceStamped':
            out = msg['geometry_msgs/msg/PoseWithCovarianceStamped'](header=header,
                                                                     pose=with_covariance)
        elif kind == 'Odometry':
            twist = msg['geometry_msgs/msg/TwistWithCovariance'](
                twist=msg['geometry_msgs/msg/Twist'](
                    linear=msg['geometry_msgs/msg/Vector3'](x=0.0, y=0.0, z=0.0),
                    angular=msg['geometry_msgs/msg/Vector3'](x=0.0, y=0.0, z=0.0)),
                covariance=covariance)
            out = msg['nav_msgs/msg/Odometry'](header=header, child_frame_id='camera',
                                               pose=with_covariance, twist=twist)
        else:
            p = pose.position
            out = msg['geometry_msgs/msg/TransformStamped'](
                header=header, child_frame_id='camera', transform=msg[
                    'geometry_msgs/msg/Transform'](translation=msg['geometry_msgs/msg/Vector3'](
                        x=p.x, y=p.y, z=p.z), rotation=pose.orientation))
        return '/gt', out
    return edit


@pytest.mark.parametrize('kind', ['PoseWithCovarianceStamped', 'Odometry', 'TransformStamped'])
def test_ground_truth_of_other_pose_types(bags, kitchen, tmp_path, kind):
    """Mocap and localizer outputs (with covariance, odometry, transforms) are ground truth."""
    bag = tmp_path / 'bag'
    copy_bag(bags['mcap'].path, bag, ground_truth_as(kind))
    summary = bag_to_dataset(bag, tmp_path / 'ds', gt_topic='/gt')
    assert summary.frames == len(FRAMES)
    dataset = open_dataset(tmp_path / 'ds')
    for index, name in enumerate(FRAMES):
        np.testing.assert_allclose(dataset.frames[f'frame-{index:06d}'].T_world_camera,
                                   kitchen.frames[name].T_world_camera, atol=1e-8)


def test_ground_truth_is_interpolated_and_checked(bags, kitchen, tmp_path):
    """
    Ground truth between images' stamps is interpolated; a wrong frame or type is refused.

    The samples are moved half a frame later, so every image but the first lies halfway
    between two of them (0.2 s apart): its pose is their midpoint (linear, slerp).
    """
    from scipy.spatial.transform import Rotation, Slerp
    bag = tmp_path / 'shifted'
    copy_bag(bags['mcap'].path, bag, ground_truth_as('PoseStamped', shift_ns=100_000_000))
    summary = bag_to_dataset(bag, tmp_path / 'ds', gt_topic='/gt')
    assert summary.frames == len(FRAMES) - 1 and summary.skipped_without_pose == 1
    dataset = open_dataset(tmp_path / 'ds')
    for index in range(1, len(FRAMES)):
        before, after = (kitchen.frames[FRAMES[i]].T_world_camera for i in (index - 1, index))
        rotation = Slerp([0.0, 1.0], Rotation.from_matrix([before[:3, :3], after[:3, :3]]))
        got = dataset.frames[f'frame-{index - 1:06d}'].T_world_camera
        np.testing.assert_allclose(got[:3, 3], (before[:3, 3] + after[:3, 3]) / 2, atol=1e-6)
        np.testing.assert_allclose(got[:3, :3], rotation(0.5).as_matrix(), atol=1e-6)

    odom = tmp_path / 'odom'
    copy_bag(bags['mcap'].path, odom, ground_truth_as('Odometry', frame_id='odom'))
    with pytest.raises(BagError, match='given in frame "odom", not in the world frame "map"'):
        BagReader(odom, gt_topic='/gt')
    with pytest.raises(BagError, match='ground truth topic /camera/color/image_raw carries '
                                       'sensor_msgs/msg/Image'):
        BagReader(bags['mcap'].path, gt_topic='/camera/color/image_raw')
    with pytest.raises(BagError, match='depth topic /camera/color/camera_info carries '
                                       'sensor_msgs/msg/CameraInfo'):
        BagReader(bags['mcap'].path, depth_topic='/camera/color/camera_info')


def test_unstamped_images_are_named(bags, tmp_path):
    """Images with header stamp 0 get no pose (not the latest one), and the error says why."""
    def unstamp(topic, msg):
        if topic == '/camera/color/image_raw':
            msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
            return msg

    bag = tmp_path / 'bag'
    copy_bag(bags['mcap'].path, bag, unstamp)
    with pytest.raises(BagError, match=f'images skipped: {len(FRAMES)} header stamp 0'):
        bag_to_dataset(bag, tmp_path / 'ds', gt_topic='', world_frame='odom')


def test_depth_of_another_size_is_refused(bags, tmp_path):
    """Depth not registered to the colour image would put points at the wrong pixels."""
    def halve_depth(topic, msg):
        if topic == '/camera/depth/image_raw':
            depth = msg.data.view('<u2').reshape(msg.height, msg.width)[::2, ::2]
            msg.height, msg.width, msg.step = depth.shape[0], depth.shape[1], depth.shape[1] * 2
            msg.data = np.ascontiguousarray(depth).view(np.uint8).reshape(-1)
            return msg

    bag = tmp_path / 'small_depth'
    copy_bag(bags['sqlite3'].path, bag, halve_depth)
    with pytest.raises(BagError, match='depth on /camera/depth/image_raw is 320x240 but the '
                                       'images are 640x480'):
        bag_to_dataset(bag, tmp_path / 'ds', depth_topic='/camera/depth/image_raw')


def test_a_failed_bag_to_dataset_leaves_nothing_behind(shared_data_dir, tmp_path):
    """
    A bag that fails half-way (its calibration changes) writes no frames, and may be rerun.

    Frames without their intrinsics would open later with the layout's default camera.
    """
    source, scene = shared_data_dir / 'strecha' / 'fountain-P11', tmp_path / 'scene'
    (scene / 'images').mkdir(parents=True)
    (scene / 'cameras').mkdir()
    for index in range(3):
        name = f'{index:04d}.jpg'
        (scene / 'images' / name).symlink_to(source / 'images' / name)
        lines = (source / 'cameras' / f'{name}.camera').read_text().splitlines()
        if index == 2:   # another focal length for the last image
            row = lines[0].split()
            lines[0] = ' '.join([str(float(row[0]) * 1.01)] + row[1:])
        (scene / 'cameras' / f'{name}.camera').write_text('\n'.join(lines) + '\n')
    bag = dataset_to_bag(scene, None, tmp_path / 'bag', 'mcap', drift=False)
    out = tmp_path / 'out'
    with pytest.raises(BagError, match='calibration changes'):
        bag_to_dataset(bag.path, out)
    assert not out.exists() or not any(out.iterdir())   # not even the staging folder
    with pytest.raises(BagError, match='calibration changes'):   # not "already holds frames"
        bag_to_dataset(bag.path, out)


def test_bad_bag_requests(bags, tmp_path):
    """Missing bags and topics, and existing outputs, are errors that name the problem."""
    with pytest.raises(BagError, match='does not exist'):
        BagReader(tmp_path / 'missing')
    with pytest.raises(BagError, match='has no topic /nope'):
        BagReader(bags['mcap'].path, image_topic='/nope')
    with pytest.raises(BagError, match='exists already'):
        dataset_to_bag(bags['root'], None, bags['mcap'].path)


def test_evaluate_bag(bags, feature_map, tmp_path):
    """Offline evaluation localizes the bag's frames and writes report, TUM and plot."""
    paths = {name: tmp_path / name for name in ('r.json', 'e.tum', 'g.tum', 'p.png')}
    report = evaluate_bag(feature_map, bags['mcap'].path, paths['r.json'], paths['e.tum'],
                          paths['g.tum'], paths['p.png'])
    assert report['queries'] == len(FRAMES)
    assert report['localized'] >= len(FRAMES) - 1
    assert report['median_translation_m'] < 0.05 and report['median_rotation_deg'] < 2.0
    assert report['recall']['0.10m_5deg'] >= 0.8
    saved = json.loads(paths['r.json'].read_text())
    assert saved['method'] == 'features' and saved['ground_truth'].startswith('topic')
    assert {'recall', 'latency_ms', 'per_query', 'status_counts'} <= set(saved)
    estimate, truth = read_tum(paths['e.tum']), read_tum(paths['g.tum'])
    assert len(truth) == len(FRAMES) and len(estimate) == report['localized']
    assert truth[0, 0] == pytest.approx(DEFAULT_START_NS / 1e9)
    np.testing.assert_allclose(np.linalg.norm(truth[:, 4:], axis=1), 1.0)
    # Stamps are written from their nanoseconds, not through a float of epoch seconds.
    written = [line.split()[0] for line in paths['g.tum'].read_text().splitlines()[1:]]
    assert written == [f'{ns // 10 ** 9}.{ns % 10 ** 9:09d}' for ns in bags['mcap'].stamps_ns]
    matched = {row[0]: row for row in truth}
    errors = [np.linalg.norm(row[1:4] - matched[row[0]][1:4]) for row in estimate]
    assert np.median(errors) < 0.05
    assert paths['p.png'].read_bytes()[:4] == b'\x89PNG'


def test_cli_bag_commands(bags, feature_map, shared_data_dir, tmp_path, capsys):
    """The CLI commands dataset-to-bag, bag-to-dataset and evaluate-bag work end to end."""
    from neumap_ros.cli import main
    assert main(['dataset-to-bag', str(shared_data_dir / SCENE), '--split',
                 str(bags['split']), '--out', str(tmp_path / 'bag'), '--storage', 'mcap',
                 '--max-frames', '3', '--fps', '2']) == 0
    assert 'wrote' in capsys.readouterr().out
    assert main(['bag-to-dataset', str(tmp_path / 'bag'), '--out', str(tmp_path / 'ds')]) == 0
    assert len(open_dataset(tmp_path / 'ds').frames) == 3
    assert main(['evaluate-bag', str(feature_map), str(tmp_path / 'bag'), '--json',
                 str(tmp_path / 'r.json'), '--tum', str(tmp_path / 'e.tum')]) == 0
    assert json.loads((tmp_path / 'r.json').read_text())['queries'] == 3
    assert 'features' in capsys.readouterr().out
    assert main(['bag-to-dataset', str(tmp_path / 'missing'), '--out', str(tmp_path / 'x')]) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_the_camera_info_beside_the_image_is_taken(bags, tmp_path):
    """With colour and depth calibrations in one bag, the image's sibling camera_info wins."""
    store = typestore()

    def depth_calibration_too(topic, msg):
        if topic == '/camera/color/camera_info':
            depth_info = store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__),
                                               msg.__msgtype__)
            depth_info.k = depth_info.k * 0.5   # another camera
            return [(topic, msg), ('/camera/depth/camera_info', depth_info)]
        return None

    bag = tmp_path / 'bag'
    copy_bag(bags['mcap'].path, bag, depth_calibration_too)
    with BagReader(bag) as reader:
        assert reader.camera_info_topic == '/camera/color/camera_info'

    def moved_image(topic, msg):
        return depth_calibration_too(topic, msg) or (
            ('/other/image_raw', msg) if topic == '/camera/color/image_raw' else None)

    other = tmp_path / 'other'
    copy_bag(bags['mcap'].path, other, moved_image)
    with pytest.raises(BagError, match='cannot tell which camera_info topic'):
        BagReader(other)


def test_max_frames_counts_frames_used(bags, feature_map, tmp_path):
    """``max_frames`` limits frames written or scored; images without a pose do not count."""
    bag = tmp_path / 'shifted'   # the first image comes before the first ground truth
    copy_bag(bags['mcap'].path, bag, ground_truth_as('PoseStamped', shift_ns=100_000_000))
    summary = bag_to_dataset(bag, tmp_path / 'ds', gt_topic='/gt', max_frames=2)
    assert summary.frames == 2 and summary.skipped_without_pose == 1
    report = evaluate_bag(feature_map, bag, gt_topic='/gt', max_frames=2)
    assert report['queries'] == 2 and report['images_without_ground_truth'] == 1


def test_keyframes_are_chosen_by_camera_motion(bags, kitchen, tmp_path):
    """With keyframe distances only images far enough from the last written one are kept."""
    poses = [kitchen.frames[name].T_world_camera for name in FRAMES]
    steps = [np.linalg.norm(b[:3, 3] - a[:3, 3]) for a, b in zip(poses, poses[1:])]
    threshold = float(np.median(steps)) * 1.5    # some frames fall under it, not all
    expected, last = [0], poses[0]
    for index, T in enumerate(poses[1:], start=1):
        if np.linalg.norm(T[:3, 3] - last[:3, 3]) >= threshold:
            expected.append(index)
            last = T
    assert 1 < len(expected) < len(FRAMES)
    summary = bag_to_dataset(bags['sqlite3'].path, tmp_path / 'ds',
                             keyframe_translation_m=threshold, keyframe_rotation_deg=180.0)
    assert summary.frames == len(expected)
    assert summary.not_keyframes == len(FRAMES) - len(expected)
    dataset = open_dataset(tmp_path / 'ds')
    for written, index in enumerate(expected):
        np.testing.assert_allclose(dataset.frames[f'frame-{written:06d}'].T_world_camera,
                                   poses[index], atol=1e-8)


def test_tf_of_a_long_bag_is_all_kept(shared_data_dir, tmp_path):
    """
    Poses from TF are found for every image of a bag longer than a live TF cache.

    Frames 20 s apart: a buffer keeping 10 s behind the newest sample, as a live node does,
    would have lost all but the last odometry sample by the time the images are read.
    """
    split = write_split(tmp_path / 'split.txt', FRAMES[:4])
    bag = dataset_to_bag(shared_data_dir / SCENE, str(split), tmp_path / 'slow', 'mcap',
                         fps=0.05)
    summary = bag_to_dataset(bag.path, tmp_path / 'ds', gt_topic='', world_frame='odom')
    assert summary.frames == 4 and summary.skipped_without_pose == 0


def test_evaluate_bag_pairing_options(bags, feature_map, tmp_path, capsys):
    """
    Evaluate-bag's flags pair what a recording does not pair by itself.

    ``--sync-tolerance`` pairs calibration stamped apart from its image, ``--camera-frame``
    names the camera for TF poses when the images' frame_id is not in TF.
    """
    from neumap_ros.cli import main

    def offset_info_and_rename(topic, msg):
        if topic == '/camera/color/camera_info':
            msg.header.stamp.nanosec += 3_000_000   # 3 ms after its image
            return msg
        if topic == '/camera/color/image_raw':
            msg.header.frame_id = 'unknown_camera'
            return msg

    bag = tmp_path / 'bag'
    copy_bag(bags['mcap'].path, bag, offset_info_and_rename)
    # The bag's TF has no map frame (the localizer adds map -> odom): poses in odom.
    common = ['evaluate-bag', str(feature_map), str(bag), '--gt-topic', '', '--quiet',
              '--world-frame', 'odom', '--json', str(tmp_path / 'r.json')]
    # No image has a calibration at its stamp: refused (one without is a failed query).
    assert main(common + ['--camera-frame', 'camera_color_optical_frame']) == 2
    assert 'no camera_info for any image' in capsys.readouterr().err
    assert main(common + ['--sync-tolerance', '0.005']) == 2
    assert 'has ground truth' in capsys.readouterr().err
    assert main(common + ['--sync-tolerance', '0.005',
                          '--camera-frame', 'camera_color_optical_frame']) == 0
    report = json.loads((tmp_path / 'r.json').read_text())
    assert report['queries'] == len(FRAMES)
    assert report['ground_truth'] == 'tf odom -> camera_color_optical_frame'
    assert report['localized'] >= len(FRAMES) - 1


def test_tf_of_a_namespaced_robot_is_read(bags, kitchen, tmp_path):
    """A bag of a robot in a namespace has /<ns>/tf: poses come from it, one namespace only."""
    def into(namespace):
        def edit(topic, msg):
            return (f'{namespace}{topic}', msg) if topic in ('/tf', '/tf_static') else None
        return edit

    bag = tmp_path / 'robot1'
    copy_bag(bags['mcap'].path, bag, into('/robot1'))
    summary = bag_to_dataset(bag, tmp_path / 'ds', gt_topic='', world_frame='odom')
    assert summary.frames == len(FRAMES)
    assert summary.pose_source.endswith('(on /robot1/tf, /robot1/tf_static)')
    T_odom_camera = invert_transform(odom_drift(0.0)) @ kitchen.frames[FRAMES[0]].T_world_camera
    np.testing.assert_allclose(open_dataset(tmp_path / 'ds').frames['frame-000000']
                               .T_world_camera, T_odom_camera, atol=1e-8)

    def two_robots(topic, msg):
        if topic in ('/tf', '/tf_static'):
            return [(f'/robot1{topic}', msg), (f'/robot2{topic}', msg)]
        return None

    both = tmp_path / 'both'
    copy_bag(bags['mcap'].path, both, two_robots)
    with pytest.raises(BagError, match=r"TF in several namespaces \['/robot1', '/robot2'\]"):
        BagReader(both, gt_topic='')


def test_one_bad_image_is_one_failed_query(bags, feature_map, tmp_path):
    """An undecodable or mis-sized image fails its query (bad_input); the evaluation goes on."""
    seen = []

    def spoil(topic, msg):
        if topic != '/camera/color/image_raw':
            return None
        seen.append(topic)
        if len(seen) == 2:
            msg.encoding = 'yuv422_mystery'   # not decodable
        elif len(seen) == 3:                  # half the size its camera_info says
            pixels = msg.data.reshape(msg.height, msg.width, 3)[::2, ::2]
            msg.height, msg.width, msg.step = pixels.shape[0], pixels.shape[1], pixels.shape[1] * 3
            msg.data = np.ascontiguousarray(pixels).reshape(-1)
        return msg

    bag = tmp_path / 'spoilt'
    copy_bag(bags['mcap'].path, bag, spoil)
    report = evaluate_bag(feature_map, bag)
    assert report['queries'] == len(FRAMES)
    assert report['status_counts'].get('bad_input') == 2
    assert report['localized'] >= len(FRAMES) - 3
    with pytest.raises(BagError, match='does not match camera_info'):   # not a dataset
        bag_to_dataset(bag, tmp_path / 'ds')
    seen.clear()
    undecodable = tmp_path / 'undecodable'
    copy_bag(bags['mcap'].path, undecodable,
             lambda topic, msg: spoil(topic, msg) if len(seen) < 2 or
             topic != '/camera/color/image_raw' else None)
    summary = bag_to_dataset(undecodable, tmp_path / 'ds2')
    assert summary.frames == len(FRAMES) - 1 and summary.skipped_without_pose == 1


def copy_raw(source, target, edit):
    """
    Copy a bag through ``edit(topic, index, raw)`` on its serialized messages.

    ``index`` counts the topic's messages from 1; edit returns the bytes to write (None drops
    the message). Corrupt bytes can be written this way, unlike through :func:`copy_bag`.
    """
    from rosbags.rosbag2 import Reader, Writer
    store = typestore()
    connections, counts = {}, {}
    with Reader(source) as reader, Writer(target, version=9) as writer:
        for connection in reader.connections:
            connections[connection.topic] = writer.add_connection(
                connection.topic, connection.msgtype, typestore=store)
        for connection, stamp, raw in reader.messages():
            counts[connection.topic] = counts.get(connection.topic, 0) + 1
            out = edit(connection.topic, counts[connection.topic], bytes(raw))
            if out is not None:
                writer.write(connections[connection.topic], stamp, out)


def test_corrupt_messages_are_skipped(bags, feature_map, tmp_path, capsys, monkeypatch):
    """
    A message whose bytes do not deserialize costs that message, not the whole bag.

    A truncated image is an unreadable frame (a bad_input query), a truncated calibration
    leaves its image without one (a no_camera_info query), truncated ground truth and TF are
    skipped and counted; the CLI reports any other rosbags error in one line.
    """
    truncated = {('/camera/color/image_raw', 2), ('/camera/color/camera_info', 3),
                 ('/ground_truth/camera_pose', 4), ('/tf', 5)}

    def truncate(topic, index, raw):
        return raw[:len(raw) // 2] if (topic, index) in truncated else raw

    bag = tmp_path / 'corrupt'
    copy_raw(bags['mcap'].path, bag, truncate)
    with BagReader(bag) as reader:
        frames = list(reader.frames())
    assert [bool(frame.problem) for frame in frames] == [False, True, False, False, False, False]
    assert 'unreadable sensor_msgs/msg/Image' in frames[1].problem
    # The stamp is read from the damaged bytes: the bad image keeps its ground truth.
    assert frames[1].stamp_ns == bags['mcap'].stamps_ns[1]
    assert frames[1].T_world_camera is not None
    summary = bag_to_dataset(bag, tmp_path / 'ds')
    assert summary.frames == len(FRAMES) - 2 and summary.skipped_without_pose == 2
    assert summary.skipped_messages == {'unreadable camera_info': 1,
                                        'unreadable ground truth': 1, 'unreadable tf': 1}
    report = evaluate_bag(feature_map, bag)
    assert report['queries'] == len(FRAMES)
    assert report['status_counts']['bad_input'] == 1
    assert report['status_counts']['no_camera_info'] == 1
    assert report['skipped_messages'] == summary.skipped_messages
    tf_summary = bag_to_dataset(bag, tmp_path / 'tf', gt_topic='', world_frame='odom')
    assert tf_summary.skipped_messages == {'unreadable camera_info': 1, 'unreadable tf': 1}
    assert tf_summary.frames == len(FRAMES) - 2   # TF is interpolated over the lost sample

    from rosbags.rosbag2 import ReaderError

    from neumap_ros.cli import main
    from neumap_ros.core import bags as bags_module

    def broken(*args, **kwargs):
        raise ReaderError('chunk 3 is corrupt')

    monkeypatch.setattr(bags_module, 'bag_to_dataset', broken)
    assert main(['bag-to-dataset', str(bag), '--out', str(tmp_path / 'x')]) == 2
    assert 'error: chunk 3 is corrupt' in capsys.readouterr().err


def test_bad_ground_truth_and_frame_id_cost_one_image(bags, tmp_path):
    """A zero quaternion in the ground truth, an empty frame_id with TF: that image is lost."""
    def zero_quaternion(topic, msg):
        if topic == '/ground_truth/camera_pose' and msg.header.stamp == first:
            orientation = msg.pose.orientation
            orientation.x = orientation.y = orientation.z = orientation.w = 0.0
            return msg

    first = read_all(bags['mcap'].path)[0]['/camera/color/image_raw'][0][1].header.stamp
    bag = tmp_path / 'zero_quaternion'
    copy_bag(bags['mcap'].path, bag, zero_quaternion)
    summary = bag_to_dataset(bag, tmp_path / 'ds')
    # The first image comes before any other sample: nothing to interpolate from.
    assert summary.frames == len(FRAMES) - 1 and summary.skipped_without_pose == 1
    assert summary.skipped_messages == {'invalid ground truth': 1}

    seen = []

    def no_frame_id(topic, msg):
        if topic == '/camera/color/image_raw':
            seen.append(topic)
            if len(seen) == 2:
                msg.header.frame_id = ''
                return msg

    unnamed = tmp_path / 'no_frame_id'
    copy_bag(bags['mcap'].path, unnamed, no_frame_id)
    summary = bag_to_dataset(unnamed, tmp_path / 'tf', gt_topic='', world_frame='odom')
    assert summary.frames == len(FRAMES) - 1 and summary.skipped_without_pose == 1


def test_an_image_without_camera_info_is_a_failed_query(bags, feature_map, tmp_path):
    """A recording started mid-stream: the first image has no calibration yet."""
    seen = []

    def drop_first_info(topic, msg):
        if topic == '/camera/color/camera_info':
            seen.append(topic)
            return DROP if len(seen) == 1 else None

    bag = tmp_path / 'late_info'
    copy_bag(bags['mcap'].path, bag, drop_first_info)
    report = evaluate_bag(feature_map, bag)
    assert report['queries'] == len(FRAMES)
    assert report['status_counts']['no_camera_info'] == 1
    first = report['per_query'][0]
    assert first['status'] == 'no_camera_info' and not first['success']
    assert report['localized'] >= len(FRAMES) - 2


def test_nearest_camera_info_is_found_by_search(bags, tmp_path):
    """
    With a sync tolerance the nearest calibration is the one a full scan would find.

    Each image gets two calibrations 3 ms before and after it (a tie at its own stamp), in
    either log order: of two as near the one first in the bag wins. The lookup must not
    scan every calibration (quadratic on long bags).
    """
    store = typestore()
    seen = []

    def around(topic, msg):
        if topic != '/camera/color/camera_info':
            return None
        seen.append(topic)
        pair = []
        for shift in ((3, -3) if len(seen) % 2 else (-3, 3)):
            info = store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__),
                                         msg.__msgtype__)
            info.header.stamp.nanosec += shift * 1_000_000 + 5_000_000   # no negative ns
            info.k = info.k + (shift > 0)   # which one was taken
            pair.append((topic, info))
        return pair

    bag = tmp_path / 'around'
    copy_bag(bags['mcap'].path, bag, around)
    stamps = [stamp + 5_000_000 for stamp in bags['mcap'].stamps_ns]
    queries = stamps + [s + d for s in stamps for d in (-4_000_000, -2_500_000, 2_999_999,
                                                        3_000_000, 40_000_000)]
    queries += [stamps[0] - 10 ** 9, stamps[-1] + 10 ** 9]
    with BagReader(bag, sync_tolerance_s=0.0035) as reader:
        table = dict(reader.infos)

        def brute(stamp):
            best = min(table, key=lambda s: abs(s - stamp))
            return table[best] if abs(best - stamp) <= reader.tolerance_ns else None

        expected = [brute(stamp) for stamp in queries]
        later_first = [brute(stamp).k[0] > table[stamp - 3_000_000].k[0] for stamp in stamps]
        assert any(later_first) and not all(later_first)   # ties go both ways
        assert sum(info is None for info in expected) > len(stamps)

        class NoScan(dict):
            def __iter__(self):
                raise AssertionError('every calibration scanned for one image')

        reader.infos = NoScan(table)
        assert all(reader._nearest_info(stamp) is info
                   for stamp, info in zip(queries, expected))


def test_a_failed_bag_reader_closes_the_bag(bags, tmp_path, monkeypatch):
    """A BagReader that refuses a bag after opening it leaves no file open."""
    from rosbags.rosbag2 import Reader
    opened = set()
    original_open, original_close = Reader.open, Reader.close

    def track_open(self):
        original_open(self)
        opened.add(id(self))

    def track_close(self):
        opened.discard(id(self))
        original_close(self)

    monkeypatch.setattr(Reader, 'open', track_open)
    monkeypatch.setattr(Reader, 'close', track_close)
    odom = tmp_path / 'odom'
    copy_bag(bags['mcap'].path, odom, ground_truth_as('Odometry', frame_id='odom'))
    with pytest.raises(BagError, match='has no topic /nope'):        # picking the topics
        BagReader(bags['mcap'].path, image_topic='/nope')
    with pytest.raises(BagError, match='given in frame "odom"'):     # indexing
        BagReader(odom, gt_topic='/gt')
    assert not opened
    with BagReader(bags['mcap'].path):
        assert len(opened) == 1
    assert not opened


def test_dataset_to_bag_writes_beside_the_target(shared_data_dir, tmp_path):
    """
    The bag appears at its path only once complete: a killed run does not block a retry.

    It is written in a hidden folder in the same parent and renamed at the end; a run that
    fails leaves nothing behind.
    """
    split = write_split(tmp_path / 'split.txt', FRAMES[:2])
    out = tmp_path / 'bags' / 'run'
    during = []

    def watch(done, total):
        during.append((out.exists(), sorted(p.name for p in out.parent.iterdir())))

    summary = dataset_to_bag(shared_data_dir / SCENE, str(split), out, 'mcap', progress=watch)
    assert len(during) == 2
    for exists, names in during:
        assert not exists
        [staging] = names
        assert staging.startswith('.run.partial-')
    assert summary.path == out and (out / 'metadata.yaml').is_file()
    assert (out / 'run.mcap').is_file()   # named after the bag, not after the staging
    assert sorted(p.name for p in out.parent.iterdir()) == ['run']
    assert len(read_all(out)[0]['/camera/color/image_raw']) == 2

    def crash(done, total):
        raise RuntimeError('disk gone')

    again = tmp_path / 'bags' / 'again'
    with pytest.raises(RuntimeError, match='disk gone'):
        dataset_to_bag(shared_data_dir / SCENE, str(split), again, 'sqlite3', progress=crash)
    assert sorted(p.name for p in out.parent.iterdir()) == ['run']
    assert dataset_to_bag(shared_data_dir / SCENE, str(split), again, 'sqlite3').frames == 2
