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

"""Image/CameraInfo pairing by stamp: only the newest complete pair is kept."""

import pytest

from neumap_ros.core.stamp_sync import StampSynchronizer

MS = 1_000_000


def test_pairs_by_exact_stamp_in_either_order():
    """An image and an info with the same stamp pair, whichever arrives first."""
    sync = StampSynchronizer()
    assert sync.add_image(10 * MS, 'img10') and not sync.has_pair
    sync.add_info(10 * MS, 'info10')
    pair = sync.take()
    assert (pair.stamp, pair.image, pair.info) == (10 * MS, 'img10', 'info10')
    sync.add_info(20 * MS, 'info20')
    sync.add_image(20 * MS, 'img20')
    assert sync.take().image == 'img20'
    assert sync.take() is None
    assert sync.counters.pairs == 2 and sync.counters.taken == 2 and sync.counters.dropped == 0


def test_only_the_latest_pair_is_kept():
    """Pairs not taken before a newer one forms are dropped and counted."""
    sync = StampSynchronizer()
    for t in (1, 2, 3):
        sync.add_image(t * MS, f'img{t}')
        sync.add_info(t * MS, f'info{t}')
    assert sync.take().image == 'img3'
    assert sync.counters.dropped == 2


def test_unmatched_older_images_are_dropped_when_a_newer_pair_forms():
    """Images whose info never came are dropped once a newer image is paired."""
    sync = StampSynchronizer()
    sync.add_image(1 * MS, 'img1')
    sync.add_image(2 * MS, 'img2')
    sync.add_image(3 * MS, 'img3')
    sync.add_info(3 * MS, 'info3')
    assert sync.take().image == 'img3'
    assert sync.counters.dropped == 2 and sync.pending_images == 0
    # A late info for a dropped image pairs nothing and never resurrects it.
    assert sync.add_info(2 * MS, 'late') is False
    assert not sync.has_pair


def test_out_of_order_and_duplicate_stamps_are_rejected():
    """Images not newer than the previous one are refused and counted."""
    sync = StampSynchronizer()
    assert sync.add_image(5 * MS, 'a')
    assert not sync.add_image(4 * MS, 'older')
    assert not sync.add_image(5 * MS, 'duplicate')
    assert sync.counters.out_of_order == 2
    sync.add_info(5 * MS, 'info')
    assert sync.take().image == 'a'


def test_stamps_far_back_restart_the_history():
    """A stamp seconds older than any seen (a looped bag) restarts pairing; reordering not."""
    sync = StampSynchronizer(restart_after=1000 * MS)
    for t in (5000, 5100):
        sync.add_image(t * MS, f'img{t}')
        sync.add_info(t * MS, f'info{t}')
    assert sync.take().image == 'img5100'
    assert not sync.add_image(5050 * MS, 'reordered')      # 50 ms back: rejected
    assert sync.counters.out_of_order == 1 and sync.counters.restarts == 0
    # The loop starts again at 0; its info may come before its image or after it.
    assert sync.add_info(0, 'info0')
    assert sync.counters.restarts == 1
    assert sync.add_image(0, 'img0')
    assert sync.take().image == 'img0'
    assert sync.add_image(10 * MS, 'img10') and sync.add_info(10 * MS, 'info10')
    assert sync.take().image == 'img10' and sync.counters.restarts == 1
    # A CameraInfo stamped 0 next to stamped images (latched calibration) restarts nothing.
    latest = StampSynchronizer(latest_info=True, restart_after=1000 * MS)
    for t in (5000, 5100, 5200):
        latest.add_info(0, 'calibration')
        latest.add_image(t * MS, f'img{t}')
        assert latest.take().image == f'img{t}'
    assert latest.counters.restarts == 0
    # Without restart_after the same loop is rejected for ever (the old behaviour, opt-in).
    strict = StampSynchronizer()
    strict.add_image(5000 * MS, 'a')
    assert not strict.add_image(0, 'b') and strict.counters.restarts == 0
    with pytest.raises(ValueError, match='restart_after'):
        StampSynchronizer(restart_after=-1)


def test_tolerance():
    """Stamps a few ms apart pair only when the tolerance allows it."""
    exact = StampSynchronizer(tolerance=0)
    exact.add_image(100 * MS, 'img')
    exact.add_info(103 * MS, 'info')
    assert not exact.has_pair
    loose = StampSynchronizer(tolerance=5 * MS)
    loose.add_image(100 * MS, 'img')
    loose.add_info(103 * MS, 'info')
    pair = loose.take()
    assert pair.image == 'img' and pair.info_stamp == 103 * MS


def test_latest_info_mode_and_bounds():
    """latest_info pairs any image with the newest info; pending images are bounded."""
    sync = StampSynchronizer(latest_info=True)
    sync.add_info(1 * MS, 'calibration')
    sync.add_image(50 * MS, 'img')
    assert sync.take().info == 'calibration'
    bounded = StampSynchronizer(max_pending=3)
    for t in range(1, 6):
        bounded.add_image(t * MS, t)
    assert bounded.pending_images == 3 and bounded.counters.dropped == 2
    bounded.reset()
    assert bounded.add_image(1 * MS, 'after reset')
    with pytest.raises(ValueError):
        StampSynchronizer(tolerance=-1)
