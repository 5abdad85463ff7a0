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
Voxel grid, descriptor matching, feature tracks and bag-of-words retrieval on built data.

Every input is constructed so the right answer is known by design: point clusters in chosen
voxels, descriptors shared by the observations of one 3D point, documents made of chosen
clusters of descriptors.
"""

import numpy as np
import pytest
from synthetic_views import arc_of_cameras, CAMERA, look_at

from neumap_ros.core.matching import match_descriptors
from neumap_ros.core.observations import Observations
from neumap_ros.core.retrieval import document_histograms, rank, spherical_kmeans, \
    train_vocabulary, Vocabulary
from neumap_ros.core.tracks import build_tracks, neighbouring_frames
from neumap_ros.core.voxels import build_voxel_grid, VoxelGrid, voxels_in_view


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Return the rows of ``matrix`` scaled to unit length."""
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def cluster(rng, centre, frames_and_counts):
    """Return points within 0.4 of ``centre`` and their frame ids, per (frame, count)."""
    frames = np.concatenate([np.full(count, frame) for frame, count in frames_and_counts])
    points = np.asarray(centre, dtype=float) + rng.uniform(-0.4, 0.4, (len(frames), 3))
    return points, frames


@pytest.fixture(scope='module')
def voxel_data():
    """Return clusters of points (name -> (points, frames)) built for known voxel decisions."""
    rng = np.random.default_rng(0)
    return {
        'kept': cluster(rng, [0.5, 0.5, 0.5], [(f, 15) for f in range(4)]),
        'negative': cluster(rng, [-3.5, 2.5, -1.5], [(f, 10) for f in range(6)]),
        'one_frame': cluster(rng, [5.5, 0.5, 0.5], [(0, 60)]),
        'too_few': cluster(rng, [0.5, 5.5, 0.5], [(f, 5) for f in range(4)]),
        # 60 points, but only frame 3 contributes the 5 points a frame needs to count.
        'thin_frames': cluster(rng, [2.5, 2.5, 2.5], [(0, 4), (1, 4), (2, 4), (3, 48)]),
    }


def test_voxel_grid_keeps_only_supported_voxels(voxel_data):
    """Voxels need 50 points and 3 frames with 5 points each; NaN points are ignored."""
    points = np.vstack([p for p, _ in voxel_data.values()] + [np.full((5, 3), np.nan)])
    frames = np.concatenate([f for _, f in voxel_data.values()] + [np.zeros(5, int)])
    grid = build_voxel_grid(points, frames, 1.0, min_points=50, min_frames=3,
                            min_points_per_frame=5)
    assert len(grid) == 2
    for name in ('kept', 'negative'):
        cluster_points = voxel_data[name][0]
        ids = grid.lookup(cluster_points)
        assert len(set(ids.tolist())) == 1 and ids[0] >= 0
        voxel = ids[0]
        low = grid.origin + grid.indices[voxel] * grid.voxel_size
        assert np.all((cluster_points >= low) & (cluster_points < low + 1.0))
        # The anchor is the per-axis median of the voxel's points.
        np.testing.assert_allclose(grid.anchors[voxel], np.median(cluster_points, axis=0),
                                   rtol=1e-6)
    for name in ('one_frame', 'too_few', 'thin_frames'):
        assert np.all(grid.lookup(voxel_data[name][0]) == -1), name
    assert np.all(grid.lookup(np.array([[np.nan, 0.0, 0.0], [100.0, 100.0, 100.0]])) == -1)
    # Lowering the per-frame requirement brings the thin-frames voxel in.
    relaxed = build_voxel_grid(points, frames, 1.0, min_points=50, min_frames=3,
                               min_points_per_frame=4)
    assert len(relaxed) == 3


def test_voxel_lookup_floors_cells_below_the_origin_and_ends_at_the_grid_limit():
    """
    Points below the origin fall in negative cells (floor, not truncation toward zero).

    Cells 2^20 voxels or more from the origin are outside the grid: their packed keys once
    overflowed into the next axis (z = 2^21 cells read as y + 1).
    """
    grid = VoxelGrid(np.zeros(3), 0.05, np.array([[-1, -1, -1], [0, 0, 0], [0, 1, 0]], np.int32),
                     np.zeros((3, 3), np.float32))
    near = np.array([[-0.01, -0.01, -0.01], [0.01, 0.01, 0.01], [-0.01, 0.01, 0.01]])
    assert grid.lookup(near).tolist() == [0, 1, -1]
    far = np.array([[0.01, 0.01, 0.05 * (1 << 21) + 0.01], [0.01, 0.01, 0.05 * (1 << 20)],
                    [0.01, -0.05 * (1 << 20) - 0.01, 0.01], [1e300, 0.01, 0.01],
                    [np.inf, 0.01, 0.01]])
    assert grid.lookup(far).tolist() == [-1] * len(far)


def test_voxel_grid_drops_points_beyond_its_limit(voxel_data, caplog):
    """Far outliers, even a supported cluster of them, are dropped with a warning, not wrapped."""
    points, frames = voxel_data['kept']
    far = [points + [0.0, 0.0, float(1 << 21)], points + [1e15, 0.0, 0.0]]
    with caplog.at_level('WARNING', logger='neumap_ros.core.voxels'):
        grid = build_voxel_grid(np.vstack([points] + far), np.tile(frames, 3), 1.0,
                                min_points=50, min_frames=3, min_points_per_frame=5)
    assert len(grid) == 1 and f'{2 * len(points)} of {3 * len(points)} 3D points' in caplog.text
    assert np.all(grid.lookup(points) == 0)
    assert np.all(grid.lookup(np.vstack(far)) == -1)


def test_voxel_offsets_and_box_distances(voxel_data):
    """Offsets are in voxel units and invert; distance to a voxel box is 0 inside."""
    points, frames = voxel_data['kept']
    grid = build_voxel_grid(points, frames, 0.5, min_points=1, min_frames=1,
                            min_points_per_frame=1)
    ids = grid.lookup(points)
    assert np.all(ids >= 0)
    offsets = grid.normalized_offsets(points, ids)
    np.testing.assert_allclose(offsets * 0.5 + grid.anchors[ids], points, atol=1e-6)
    np.testing.assert_allclose(grid.to_world(offsets, ids), points, atol=1e-6)
    voxel = ids[0]
    low = grid.origin + grid.indices[voxel] * 0.5
    queries = np.array([low + 0.25, low + [0.75, 0.25, 0.25], low + 1.5, low - [0.3, 0.4, 0.0]])
    np.testing.assert_allclose(grid.distance_outside(queries, voxel),
                               [0.0, 0.25, np.sqrt(3.0), 0.5], atol=1e-12)


def test_voxel_grid_rejects_bad_input():
    """A non-positive voxel size or no finite point raises ValueError."""
    points = np.zeros((10, 3))
    with pytest.raises(ValueError, match='voxel size'):
        build_voxel_grid(points, np.zeros(10, int), 0.0)
    with pytest.raises(ValueError, match='voxel size'):
        build_voxel_grid(points, np.zeros(10, int), float('nan'))
    with pytest.raises(ValueError, match='no 3D points'):
        build_voxel_grid(np.full((10, 3), np.nan), np.zeros(10, int), 1.0)


def test_match_descriptors_recovers_a_permutation_best_first():
    """Noisy shuffled copies match back to their originals, ordered by distance ratio."""
    rng = np.random.default_rng(1)
    query = unit_rows(rng.normal(size=(100, 64)))
    permutation = rng.permutation(100)
    reference = unit_rows(query[permutation] + rng.normal(scale=0.02, size=(100, 64)))
    matches = match_descriptors(query, reference, ratio=0.8)
    assert matches.dtype == np.int64 and len(matches) == 100
    np.testing.assert_array_equal(permutation[matches[:, 1]], matches[:, 0])
    distances = np.linalg.norm(query[:, None] - reference[None], axis=2)
    ordered = np.sort(distances, axis=1)
    ratios = (ordered[:, 0] / ordered[:, 1])[matches[:, 0]]
    assert np.all(np.diff(ratios) >= -1e-6)


def test_match_descriptors_ratio_test_and_mutual_check():
    """Ambiguous neighbours are dropped; mutual=True keeps one query per reference."""
    rng = np.random.default_rng(2)
    reference = unit_rows(rng.normal(size=(20, 32)))
    reference[1] = reference[0]                       # two identical reference vectors
    query = reference[[0, 5, 6]].copy()
    matches = match_descriptors(query, reference, ratio=0.8)
    assert sorted(matches.tolist()) == [[1, 5], [2, 6]]   # query 0 is ambiguous: dropped
    # Two queries whose nearest reference is the same: only the closer is mutual.
    reference = unit_rows(rng.normal(size=(20, 32)))
    query = unit_rows(np.stack([reference[3] + 0.01 * rng.normal(size=32),
                                reference[3] + 0.2 * rng.normal(size=32)]))
    assert len(match_descriptors(query, reference, ratio=0.95)) == 2
    mutual = match_descriptors(query, reference, ratio=0.95, mutual=True)
    assert mutual.tolist() == [[0, 3]]
    empty = match_descriptors(query[:0], reference)
    assert empty.shape == (0, 2)
    assert match_descriptors(query, reference[:1]).shape == (0, 2)


def test_neighbouring_frames_by_distance_and_view_direction():
    """Nearest centres come first; a frame turned beyond the angle limit is never one."""
    poses = np.array([look_at([x, 0.0, 0.0], [x, 10.0, 0.0]) for x in (0.0, 1.0, 3.0, 4.5)]
                     + [look_at([0.5, 0.0, 0.0], [10.5, 0.0, 0.0])])  # turned 90 deg
    assert neighbouring_frames(poses, 1) == [[1], [0], [3], [2], []]
    assert neighbouring_frames(poses, 2)[2] == [3, 1]
    assert neighbouring_frames(poses, 10)[0] == [1, 2, 3]
    # With a wider angle limit the turned frame is the nearest neighbour of frame 0.
    assert neighbouring_frames(poses, 1, max_angle_deg=100.0)[0] == [4]


def sift_like(rng, count):
    """Return sparse uint8 descriptors (about 30% non-zero bins, like SIFT)."""
    values = rng.integers(20, 256, (count, 128)) * (rng.random((count, 128)) < 0.3)
    return values.astype(np.uint8)


def test_tracks_group_observations_of_the_same_point():
    """
    Tracks are pure and complete on multi-view data with two traps.

    A keypoint that looks like point 10 but sits 0.5 m away, and one with a NaN 3D point,
    must join no track.
    """
    rng = np.random.default_rng(3)
    poses = np.array(arc_of_cameras(5, [0.0, 0.0, 0.0], 4.0, 20.0))
    count = 80
    truth_xyz = rng.uniform(-1.0, 1.0, (count, 3))
    descriptors = sift_like(rng, count)
    visible = rng.random((5, count)) < 0.7
    visible[1, 10] = False
    visible[0, 11] = False
    frame_index, desc, xyz, point_id = [], [], [], []
    for frame in range(5):
        ids = np.flatnonzero(visible[frame])
        noisy = np.clip(descriptors[ids].astype(int) + rng.integers(-2, 3, (len(ids), 128)),
                        0, 255)
        frame_index.append(np.full(len(ids), frame))
        desc.append(noisy)
        xyz.append(truth_xyz[ids] + rng.normal(scale=0.003, size=(len(ids), 3)))
        point_id.append(ids)
    # The traps: an impostor of point 10 in frame 1 and a depthless keypoint in frame 0.
    frame_index += [np.array([1]), np.array([0])]
    desc += [descriptors[[10]].astype(int), descriptors[[11]].astype(int)]
    xyz += [truth_xyz[[10]] + [0.5, 0.0, 0.0], np.full((1, 3), np.nan)]
    point_id += [np.array([-2]), np.array([-3])]
    frame_index, point_id = np.concatenate(frame_index), np.concatenate(point_id)
    observations = Observations(
        'sift', [f'f{i}' for i in range(5)], frame_index.astype(np.int32),
        rng.uniform(0.0, 400.0, (len(frame_index), 2)).astype(np.float32),
        np.concatenate(desc).astype(np.uint8), np.concatenate(xyz).astype(np.float32),
        poses, [CAMERA] * 5)
    tracks = build_tracks(observations, neighbours=4)
    assert tracks.shape == (len(point_id),)
    assert tracks[point_id == -2] == -1 and tracks[point_id == -3] == -1
    for track in np.unique(tracks[tracks >= 0]):
        assert len(set(point_id[tracks == track].tolist())) == 1  # pure
    for point in range(count):
        members = tracks[point_id == point]
        if len(members) >= 2:
            assert members[0] >= 0 and np.all(members == members[0]), point  # complete
        else:
            assert np.all(members == -1)
    used = np.unique(tracks[tracks >= 0])
    np.testing.assert_array_equal(used, np.arange(len(used)))  # compact ids


def separated_clusters(rng, clusters: int, per_cluster: int, dim: int = 32, noise=0.05):
    """Return unit vectors around ``clusters`` random unit centres, their labels and centres."""
    centres = unit_rows(rng.normal(size=(clusters, dim)))
    labels = np.repeat(np.arange(clusters), per_cluster)
    vectors = unit_rows(centres[labels] + noise * rng.normal(size=(len(labels), dim)))
    return vectors.astype(np.float32), labels, centres


def test_spherical_kmeans_separates_well_separated_clusters():
    """With a vocabulary larger than the cluster count no word straddles two clusters."""
    rng = np.random.default_rng(4)
    vectors, labels, centres = separated_clusters(rng, 4, 50)
    words = spherical_kmeans(vectors, 12, seed=0)
    assert words.shape == (12, 32)
    np.testing.assert_allclose(np.linalg.norm(words, axis=1), 1.0, rtol=1e-5)
    assignment = (vectors @ words.T).argmax(axis=1)
    for word in np.unique(assignment):
        assert len(set(labels[assignment == word].tolist())) == 1
        # A converged centroid is the normalised mean of its members, near its cluster centre.
        mean = vectors[assignment == word].mean(axis=0)
        np.testing.assert_allclose(words[word], mean / np.linalg.norm(mean), atol=1e-4)
        assert words[word] @ centres[labels[assignment == word][0]] > 0.95
    assert len(np.unique(assignment)) >= 4
    # Asking for more words than points gives one word per point.
    assert spherical_kmeans(vectors[:5], 10).shape == (5, 32)


def test_idf_weights_common_words_down():
    """A word in every document weighs (almost) nothing; a word of one document weighs most."""
    rng = np.random.default_rng(5)
    vectors, labels, _ = separated_clusters(rng, 3, 30)
    # Every vector of cluster 0 occurs in all three documents; clusters 1 and 2 in one each.
    common_vectors = vectors[labels == 0]
    vectors = np.vstack([common_vectors] * 3 + [vectors[labels > 0]])
    documents = np.concatenate([np.full(len(common_vectors), d) for d in range(3)]
                               + [labels[labels > 0]])
    labels = np.concatenate([np.zeros(3 * len(common_vectors), int), labels[labels > 0]])
    vocabulary = train_vocabulary(vectors, documents, 9, seed=1)
    words = vocabulary.assign(vectors)
    common = np.unique(words[labels == 0])
    rare = np.unique(words[labels == 2])
    assert np.all(vocabulary.idf[common] < 0.01)
    assert np.all(vocabulary.idf[rare] > 0.5)
    histogram = vocabulary.histogram(vocabulary.assign(vectors[:10]))
    assert np.linalg.norm(histogram) == pytest.approx(1.0, rel=1e-5)
    assert vocabulary.assign(np.zeros((0, 32), np.float32)).shape == (0,)
    assert np.all(vocabulary.histogram(np.zeros(0, np.int64)) == 0)


def test_rank_orders_by_cosine_similarity():
    """Ranking returns the top-k documents best first and clips k to the document count."""
    histograms = np.eye(5, dtype=np.float32)
    query = np.array([0.1, 0.5, 0.2, 0.9, 0.0], np.float32)
    assert rank(query, histograms, 3).tolist() == [3, 1, 2]
    assert sorted(rank(query, histograms, 50).tolist()) == [0, 1, 2, 3, 4]
    assert rank(query, histograms, 1).tolist() == [3]


def test_retrieval_finds_the_document_a_query_comes_from():
    """Fresh descriptors of a document's clusters retrieve that document first."""
    rng = np.random.default_rng(6)
    vectors, labels, centres = separated_clusters(rng, 20, 20, dim=64)
    documents = labels // 2                                    # 10 documents of 2 clusters
    vocabulary = train_vocabulary(vectors, documents, 40, seed=0)
    histograms = document_histograms(vocabulary, vocabulary.assign(vectors), documents, 10)
    np.testing.assert_allclose(np.linalg.norm(histograms, axis=1), 1.0, rtol=1e-5)
    for document in range(10):
        picks = rng.choice([2 * document, 2 * document + 1], 15)
        query = unit_rows(centres[picks] + 0.05 * rng.normal(size=(15, 64)))
        histogram = vocabulary.histogram(vocabulary.assign(query.astype(np.float32)))
        assert rank(histogram, histograms, 3)[0] == document
    # A query mostly from document 3 and partly from document 5 ranks them 3, then 5.
    picks = np.array([6] * 10 + [7] * 10 + [10] * 6)
    query = unit_rows(centres[picks] + 0.05 * rng.normal(size=(len(picks), 64)))
    histogram = vocabulary.histogram(vocabulary.assign(query.astype(np.float32)))
    assert rank(histogram, histograms, 2).tolist() == [3, 5]


def test_document_histograms_leave_empty_documents_at_zero():
    """A document without descriptors has an all-zero histogram (no NaN)."""
    vocabulary = Vocabulary(unit_rows(np.eye(4, dtype=np.float32)), np.ones(4, np.float32))
    histograms = document_histograms(vocabulary, np.array([0, 1, 1, 1]), np.array([0, 0, 0, 2]),
                                     3)
    assert np.all(histograms[1] == 0)
    np.testing.assert_allclose(histograms[0], [1 / np.sqrt(5), 2 / np.sqrt(5), 0.0, 0.0],
                               rtol=1e-6)


def test_voxels_in_view_follow_the_view_cone_not_the_neighbourhood():
    """Far voxels ahead are candidates; voxels behind or beside the camera are not."""
    camera_pose = look_at([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])     # looking along +x
    ahead = [[d, 0.0, 0.0] for d in (2.0, 5.0, 12.0)] + [[6.0, 1.5, 0.0]]   # 14 deg off axis
    behind = [[-4.0, 0.0, 0.0], [-8.0, 1.0, 0.0]]
    beside = [[0.5, 6.0, 0.0], [0.0, 0.0, -7.0]]
    close_behind = [[-0.5, 0.0, 0.0]]                           # the camera may stand in it
    anchors = np.array(ahead + behind + beside + close_behind)
    selected = voxels_in_view(anchors, 0.5, camera_pose, 640, 480, 500.0, radius=0.5,
                              angle_margin_deg=10.0)
    assert selected.tolist() == [0, 1, 2, 3, 8]
    # A larger rotation error admits the voxels beside the camera, never those behind it.
    selected = voxels_in_view(anchors, 0.5, camera_pose, 640, 480, 500.0, radius=0.5,
                              angle_margin_deg=60.0)
    assert selected.tolist() == [0, 1, 2, 3, 6, 7, 8]


def test_frames_without_keypoints_have_no_tracks():
    """A scene where nothing was detected (a blank render) gives an empty int track array."""
    empty = Observations('sift', ['a', 'b'], np.zeros(0, np.int32), np.zeros((0, 2), np.float32),
                         np.zeros((0, 128), np.uint8), np.zeros((0, 3), np.float32),
                         np.stack([np.eye(4)] * 2), [CAMERA] * 2)
    tracks = build_tracks(empty)
    assert tracks.shape == (0,) and tracks.dtype.kind == 'i'
