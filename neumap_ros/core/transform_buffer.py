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
A time-indexed transform tree, the part of tf2's buffer the nodes need (ROS-free).

Frames form a tree: every child frame has one parent. Static transforms hold at all times;
dynamic ones are kept for ``cache_time`` seconds and interpolated between samples (linear
translation, spherical-linear rotation). A lookup chains the transforms from the source frame
up to the common ancestor and down to the target frame, all evaluated at one stamp, and fails
with a message that names the problem (unknown frame, frames in two separate trees, a stamp
outside the buffered interval) instead of returning a stale transform.

Stamps are seconds (float); transforms follow the project convention: ``lookup(a, b)`` returns
``T_a_b``, which maps points in frame ``b`` into frame ``a`` (tf2's
``lookup_transform(target_frame=a, source_frame=b)``).
"""

import bisect
import math
import threading
from typing import Dict, List, Optional, Tuple

import numpy as np

from neumap_ros.core.geometry import make_transform, quaternion_xyzw, \
    rotation_from_quaternion_xyzw


class TransformError(Exception):
    """Base class of lookup failures; the message says which frames and stamps were involved."""


class UnknownFrameError(TransformError):
    """A frame of the lookup was never published."""


class ConnectivityError(TransformError):
    """The two frames exist but are not in the same tree."""


class ExtrapolationError(TransformError):
    """The stamp lies outside the buffered interval of a transform on the chain."""


def _clean_frame(frame: str) -> str:
    # tf2 ignores a leading slash (a ROS 1 habit); an empty name is never valid.
    if not isinstance(frame, str):
        raise ValueError(f'frame id must be a string, got {frame!r}')
    frame = frame.lstrip('/')
    if not frame:
        raise ValueError('frame id is empty')
    return frame


def slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    """
    Interpolate unit quaternions (x, y, z, w) along the shorter arc.

    ``fraction`` 0 gives ``q0`` and 1 gives ``q1``; the result has unit length.
    """
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        # Nearly parallel: normalized linear interpolation avoids dividing by sin(~0).
        result = q0 + fraction * (q1 - q0)
    else:
        theta = math.acos(min(dot, 1.0))
        sin_theta = math.sin(theta)
        result = (math.sin((1.0 - fraction) * theta) * q0
                  + math.sin(fraction * theta) * q1) / sin_theta
    return result / np.linalg.norm(result)


class _Edge:
    """The transforms of one child frame relative to its parent, sorted by stamp."""

    def __init__(self, parent: str, static: bool):
        self.parent = parent
        self.static = static
        self.stamps: List[float] = []
        self.translations: List[np.ndarray] = []
        self.rotations: List[np.ndarray] = []

    def insert(self, stamp: float, translation: np.ndarray, rotation: np.ndarray) -> None:
        if self.static:
            self.stamps, self.translations, self.rotations = [stamp], [translation], [rotation]
            return
        index = bisect.bisect_left(self.stamps, stamp)
        if index < len(self.stamps) and self.stamps[index] == stamp:
            # A second sample for the same stamp replaces the first, as tf2 does.
            self.translations[index], self.rotations[index] = translation, rotation
            return
        self.stamps.insert(index, stamp)
        self.translations.insert(index, translation)
        self.rotations.insert(index, rotation)

    def prune(self, oldest: float) -> None:
        # Drop samples older than the cache window, as tf2 does; the newest always stays.
        index = bisect.bisect_left(self.stamps, oldest)
        if index and index < len(self.stamps):
            del self.stamps[:index], self.translations[:index], self.rotations[:index]

    def at(self, stamp: float, tolerance: float, child: str) -> Tuple[np.ndarray, np.ndarray]:
        if self.static:
            return self.translations[0], self.rotations[0]
        first, last = self.stamps[0], self.stamps[-1]
        if stamp > last:
            if stamp - last > tolerance:
                raise ExtrapolationError(
                    f'lookup of {self.parent} -> {child} at t={stamp:.6f} would extrapolate '
                    f'into the future: newest data is {stamp - last:.6f} s older (t={last:.6f}'
                    f', tolerance {tolerance:.3f} s)')
            return self.translations[-1], self.rotations[-1]
        if stamp < first:
            if first - stamp > tolerance:
                raise ExtrapolationError(
                    f'lookup of {self.parent} -> {child} at t={stamp:.6f} would extrapolate '
                    f'into the past: oldest data is {first - stamp:.6f} s newer (t={first:.6f}'
                    f', tolerance {tolerance:.3f} s)')
            return self.translations[0], self.rotations[0]
        index = bisect.bisect_left(self.stamps, stamp)
        if self.stamps[index] == stamp:
            return self.translations[index], self.rotations[index]
        t0, t1 = self.stamps[index - 1], self.stamps[index]
        fraction = (stamp - t0) / (t1 - t0)
        translation = self.translations[index - 1] + fraction * (
            self.translations[index] - self.translations[index - 1])
        return translation, slerp(self.rotations[index - 1], self.rotations[index], fraction)


class TransformBuffer:
    """
    Static and dynamic transforms between named frames, queryable at any buffered stamp.

    Thread-safe: message callbacks may insert while a worker thread looks up.
    """

    def __init__(self, cache_time: float = 10.0):
        """Keep dynamic transforms ``cache_time`` seconds behind the newest one of each edge."""
        if not cache_time > 0:
            raise ValueError(f'cache_time must be positive, got {cache_time}')
        self.cache_time = float(cache_time)
        self._edges: Dict[str, _Edge] = {}
        self._lock = threading.Lock()
        # Samples older than the cache (tf2 logs TF_OLD_DATA for these) and parent changes.
        self.old_data_count = 0
        self.reparent_count = 0

    def set_transform(self, parent: str, child: str, stamp: float, translation,
                      quaternion_xyzw, static: bool = False) -> bool:
        """
        Add ``T_parent_child`` at ``stamp`` (translation x, y, z; quaternion x, y, z, w).

        Returns False when the sample is older than the cache and was ignored. Raises
        ValueError for malformed input (empty or equal frame ids, non-finite numbers, a zero
        quaternion).
        """
        parent, child = _clean_frame(parent), _clean_frame(child)
        if parent == child:
            raise ValueError(f'transform from frame "{parent}" to itself')
        stamp = float(stamp)
        translation = np.asarray(translation, dtype=float).reshape(3)
        rotation = np.asarray(quaternion_xyzw, dtype=float).reshape(4)
        if not (math.isfinite(stamp) and np.all(np.isfinite(translation))):
            raise ValueError(f'non-finite transform {parent} -> {child}')
        norm = float(np.linalg.norm(rotation))
        if not math.isfinite(norm) or norm < 1e-6:
            raise ValueError(f'invalid quaternion {rotation.tolist()} for {parent} -> {child}')
        rotation = rotation / norm
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                if edge is not None and edge.parent != parent:
                    self.reparent_count += 1
                edge = self._edges[child] = _Edge(parent, static)
            elif not static and edge.stamps and stamp < edge.stamps[-1] - self.cache_time:
                self.old_data_count += 1
                return False
            edge.insert(stamp, translation, rotation)
            if not static:
                edge.prune(edge.stamps[-1] - self.cache_time)
        return True

    def set_matrix(self, parent: str, child: str, stamp: float, transform: np.ndarray,
                   static: bool = False) -> bool:
        """Add ``T_parent_child`` given as a 4x4 rigid transform (see :meth:`set_transform`)."""
        transform = np.asarray(transform, dtype=float)
        return self.set_transform(parent, child, stamp, transform[:3, 3],
                                  quaternion_xyzw(transform[:3, :3]), static)

    def clear(self) -> None:
        """
        Forget every dynamic transform (e.g. after time jumped backwards).

        Static transforms stay, as in tf2: they hold at every time, and a publisher latches
        them once (robot_state_publisher), so nothing would send them again.
        """
        with self._lock:
            for child in [c for c, edge in self._edges.items() if not edge.static]:
                del self._edges[child]

    def frames(self) -> List[str]:
        """Return every known frame, sorted."""
        with self._lock:
            names = set(self._edges) | {edge.parent for edge in self._edges.values()}
        return sorted(names)

    def parent_of(self, frame: str) -> Optional[str]:
        """Return the parent of ``frame``, or None for a root or an unknown frame."""
        with self._lock:
            edge = self._edges.get(_clean_frame(frame))
            return edge.parent if edge else None

    def _chain(self, frame: str) -> List[str]:
        chain = [frame]
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame in chain:
                raise ConnectivityError(f'the transform tree has a loop through "{frame}"')
            chain.append(frame)
        return chain

    def _known(self, frame: str) -> bool:
        return frame in self._edges or any(e.parent == frame for e in self._edges.values())

    def _path(self, target: str, source: str):
        for frame in (target, source):
            if not self._known(frame):
                known = ', '.join(sorted(set(self._edges) | {
                    e.parent for e in self._edges.values()})) or 'none'
                raise UnknownFrameError(f'frame "{frame}" does not exist (known frames: {known})')
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((f for f in up_source if f in up_target), None)
        if common is None:
            raise ConnectivityError(
                f'"{target}" and "{source}" are not connected: their trees are rooted at '
                f'"{up_target[-1]}" and "{up_source[-1]}"')
        return (up_source[:up_source.index(common)], up_target[:up_target.index(common)])

    def _latest_common(self, children: List[str]) -> Optional[float]:
        newest = [self._edges[c].stamps[-1] for c in children if not self._edges[c].static]
        return min(newest) if newest else None

    def _compose(self, children: List[str], stamp: Optional[float], tolerance: float):
        transform = np.eye(4)
        for child in children:  # child-most first: T_anc_src = T_anc_x ... T_y_src
            edge = self._edges[child]
            translation, rotation = edge.at(stamp if stamp is not None else 0.0, tolerance,
                                            child)
            transform = make_transform(rotation_from_quaternion_xyzw(rotation),
                                       translation) @ transform
        return transform

    def lookup(self, target: str, source: str, stamp: Optional[float] = None,
               tolerance: float = 0.0) -> np.ndarray:
        """
        Return ``T_target_source`` at ``stamp`` as a 4x4 matrix.

        ``stamp`` None (or 0, tf2's "latest") uses the newest stamp that every transform on the
        chain has. ``tolerance`` (s) lets a lookup use the nearest sample when the stamp lies
        that little outside the buffered interval. Raises UnknownFrameError, ConnectivityError
        or ExtrapolationError.
        """
        target, source = _clean_frame(target), _clean_frame(source)
        if target == source:
            return np.eye(4)
        with self._lock:
            up, down = self._path(target, source)
            if not stamp:
                stamp = self._latest_common(up + down)
            T_common_source = self._compose(up, stamp, tolerance)
            T_common_target = self._compose(down, stamp, tolerance)
        return np.linalg.solve(T_common_target, T_common_source)

    def can_transform(self, target: str, source: str, stamp: Optional[float] = None,
                      tolerance: float = 0.0) -> bool:
        """Tell whether :meth:`lookup` would succeed."""
        try:
            self.lookup(target, source, stamp, tolerance)
        except TransformError:
            return False
        return True

    def latest_common_time(self, target: str, source: str) -> Optional[float]:
        """Return the newest stamp a lookup between the frames can use (None: all static)."""
        target, source = _clean_frame(target), _clean_frame(source)
        if target == source:
            return None
        with self._lock:
            up, down = self._path(target, source)
            return self._latest_common(up + down)
