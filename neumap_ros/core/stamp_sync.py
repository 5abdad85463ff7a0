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
Pairing of camera images with their CameraInfo by stamp, keeping only the newest pair (ROS-free).

A camera driver publishes an Image and a CameraInfo with the same header stamp. This
synchronizer matches them (exactly, or within a tolerance) and holds at most ONE complete pair:
the newest. A consumer slower than the camera therefore always gets the freshest frame instead
of working through a backlog of stale ones; every frame that is superseded before it is taken
is counted as dropped. Stamps that go backwards a little (reordering, a misbehaving driver) are
rejected and counted, so an old frame can never replace a newer one. Stamps that go back by
more than ``restart_after`` mean the source started again (a looped bag, a restarted driver):
the history is forgotten and counted as a restart, so pairing carries on.

Stamps are integers (nanoseconds in the nodes) so that "equal" means equal.
"""

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class SyncCounters:
    """What happened to the messages given to a :class:`StampSynchronizer`."""

    images: int = 0
    infos: int = 0
    pairs: int = 0           # complete pairs formed
    taken: int = 0           # pairs handed to the consumer
    dropped: int = 0         # frames that will never be processed (superseded or unmatched)
    out_of_order: int = 0    # images or infos whose stamp did not increase
    restarts: int = 0        # stamps that went back by more than restart_after


@dataclass
class SyncedPair:
    """An image and the CameraInfo matched to it."""

    stamp: int
    image: Any
    info: Any
    info_stamp: int


class StampSynchronizer:
    """
    Match images and camera infos by stamp; keep the latest complete pair only.

    ``tolerance`` is the largest stamp difference that still counts as a match (0: exact).
    With ``latest_info=True`` an image is paired with the newest CameraInfo whatever its stamp,
    for drivers that publish calibration rarely or with unrelated stamps. ``max_pending``
    bounds how many unmatched messages of each kind wait for their partner. A stamp more than
    ``restart_after`` older than the newest one seen restarts the history (0: never).
    """

    def __init__(self, tolerance: int = 0, max_pending: int = 10, latest_info: bool = False,
                 restart_after: int = 0):
        """Create an empty synchronizer."""
        if tolerance < 0:
            raise ValueError(f'tolerance must be >= 0, got {tolerance}')
        if max_pending < 1:
            raise ValueError(f'max_pending must be >= 1, got {max_pending}')
        if restart_after < 0:
            raise ValueError(f'restart_after must be >= 0, got {restart_after}')
        self.tolerance = tolerance
        self.restart_after = restart_after
        self.max_pending = int(max_pending)
        self.latest_info = bool(latest_info)
        self.counters = SyncCounters()
        self._images: 'OrderedDict[int, Any]' = OrderedDict()
        self._infos: 'OrderedDict[int, Any]' = OrderedDict()
        self._last_image: Optional[int] = None
        self._last_info: Optional[int] = None
        self._last_paired: Optional[int] = None
        self._pair: Optional[SyncedPair] = None

    def reset(self) -> None:
        """Forget pending messages and stamp history (e.g. after time jumped backwards)."""
        self._images.clear()
        self._infos.clear()
        self._last_image = self._last_info = self._last_paired = None
        self._pair = None

    @property
    def has_pair(self) -> bool:
        """Tell whether a complete pair is waiting to be taken."""
        return self._pair is not None

    @property
    def pending_images(self) -> int:
        """Return how many images wait for their CameraInfo."""
        return len(self._images)

    def _restart_if_far_back(self, stamp: int, *history) -> bool:
        # Each stream against its own history: a latched CameraInfo stamped 0 and republished
        # next to stamped images is no restart. After a loop, whichever stream comes first
        # restarts both.
        seen = [s for s in history if s is not None]
        if self.restart_after and seen and stamp < max(seen) - self.restart_after:
            self.reset()
            self.counters.restarts += 1
            return True
        return False

    def add_image(self, stamp: int, image: Any) -> bool:
        """Add an image; return False when its stamp is not newer than the last image's."""
        self.counters.images += 1
        self._restart_if_far_back(stamp, self._last_image, self._last_paired)
        if self._last_image is not None and stamp <= self._last_image or \
                self._last_paired is not None and stamp <= self._last_paired:
            self.counters.out_of_order += 1
            return False
        self._last_image = stamp
        self._images[stamp] = image
        if len(self._images) > self.max_pending:
            self._images.popitem(last=False)
            self.counters.dropped += 1
        self._match()
        return True

    def add_info(self, stamp: int, info: Any) -> bool:
        """Add a camera info; return False when its stamp is older than the last info's."""
        self.counters.infos += 1
        self._restart_if_far_back(stamp, self._last_info)
        # An equal stamp is a repeated calibration (latched or republished): keep the newer.
        if self._last_info is not None and stamp < self._last_info:
            self.counters.out_of_order += 1
            return False
        self._last_info = stamp
        self._infos[stamp] = info
        self._infos.move_to_end(stamp)
        while len(self._infos) > self.max_pending:
            self._infos.popitem(last=False)
        self._match()
        return True

    def take(self) -> Optional[SyncedPair]:
        """Return the newest complete pair and forget it, or None when there is none."""
        pair, self._pair = self._pair, None
        if pair is not None:
            self.counters.taken += 1
        return pair

    def _partner(self, stamp: int) -> Optional[int]:
        if not self._infos:
            return None
        if self.latest_info:
            return next(reversed(self._infos))
        best = min(self._infos, key=lambda info_stamp: abs(info_stamp - stamp))
        return best if abs(best - stamp) <= self.tolerance else None

    def _match(self) -> None:
        # The newest image that has a partner wins; older pending images can never be used.
        for stamp in sorted(self._images, reverse=True):
            info_stamp = self._partner(stamp)
            if info_stamp is None:
                continue
            if self._pair is not None:
                self.counters.dropped += 1
            self._pair = SyncedPair(stamp, self._images[stamp], self._infos[info_stamp],
                                    info_stamp)
            self.counters.pairs += 1
            self._last_paired = stamp
            older = [s for s in self._images if s <= stamp]
            self.counters.dropped += len(older) - 1
            for s in older:
                del self._images[s]
            if not self.latest_info:
                for s in [s for s in self._infos if s <= info_stamp]:
                    del self._infos[s]
            return
