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

"""Nearest-neighbour descriptor matching with Lowe's ratio test."""

import numpy as np
import torch


def match_descriptors(query: np.ndarray, reference: np.ndarray, ratio: float = 0.8,
                      mutual: bool = False) -> np.ndarray:
    """
    Match unit descriptor vectors; returns (K, 2) index pairs (query, reference).

    Pairs are sorted by their distance ratio, most distinctive first.

    The ratio test compares Euclidean distances of the best and second-best neighbours;
    for unit vectors ``|a - b|^2 = 2 - 2 a.b`` so one matrix product gives both.
    """
    if len(query) == 0 or len(reference) < 2:
        return np.zeros((0, 2), np.int64)
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    similarity = q @ r.T
    best, index = similarity.topk(2, dim=1)
    distances = torch.sqrt(torch.clamp(2.0 - 2.0 * best, min=0.0))
    keep = distances[:, 0] < ratio * distances[:, 1]
    if mutual:
        reverse = similarity.argmax(dim=0)
        keep &= reverse[index[:, 0]] == torch.arange(len(q))
    rows = torch.nonzero(keep).squeeze(1)
    ratios = distances[rows, 0] / distances[rows, 1].clamp(min=1e-12)
    rows = rows[torch.argsort(ratios, stable=True)]
    return torch.stack([rows, index[rows, 0]], dim=1).numpy()
