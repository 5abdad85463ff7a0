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
Bag-of-visual-words retrieval: which map voxels (or map frames) a query image sees.

A small vocabulary (spherical k-means over unit descriptor vectors) turns an image into a tf-idf
histogram; places are ranked by cosine similarity. Cheap enough to run on every frame.
"""

from dataclasses import dataclass

import numpy as np
import torch


def spherical_kmeans(vectors: np.ndarray, clusters: int, iterations: int = 15,
                     seed: int = 0) -> np.ndarray:
    """Cluster unit vectors by cosine similarity; returns (clusters, D) unit centroids."""
    generator = np.random.default_rng(seed)
    data = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    clusters = min(clusters, len(data))
    centroids = data[torch.from_numpy(generator.choice(len(data), clusters, replace=False))]
    for _ in range(iterations):
        assignment = _nearest(data, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, data)
        counts = torch.bincount(assignment, minlength=clusters)
        empty = counts == 0
        if empty.any():
            # Re-seed empty clusters with random points so every word stays in use.
            sums[empty] = data[torch.from_numpy(generator.choice(len(data), int(empty.sum())))]
        centroids = torch.nn.functional.normalize(sums, dim=1)
    return centroids.numpy()


def _nearest(data: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    return torch.cat([(data[i:i + chunk] @ centroids.T).argmax(dim=1)
                      for i in range(0, len(data), chunk)])


@dataclass
class Vocabulary:
    """Visual words plus their inverse document frequencies."""

    words: np.ndarray  # (W, D) float32 unit vectors
    idf: np.ndarray    # (W,) float32

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Word index of each descriptor vector."""
        if len(vectors) == 0:
            return np.zeros(0, np.int64)
        return _nearest(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)),
                        torch.from_numpy(self.words)).numpy()

    def histogram(self, word_ids: np.ndarray) -> np.ndarray:
        """L2-normalised tf-idf histogram of a set of word ids."""
        counts = np.bincount(word_ids, minlength=len(self.words)).astype(np.float32)
        weighted = counts * self.idf
        norm = np.linalg.norm(weighted)
        return weighted / norm if norm > 0 else weighted


def train_vocabulary(vectors: np.ndarray, document_ids: np.ndarray, size: int,
                     seed: int = 0, max_samples: int = 200000) -> Vocabulary:
    """Learn words from descriptor vectors; ``document_ids`` groups them for the idf."""
    generator = np.random.default_rng(seed)
    sample = vectors
    if len(vectors) > max_samples:
        sample = vectors[generator.choice(len(vectors), max_samples, replace=False)]
    words = spherical_kmeans(sample, size, seed=seed)
    vocabulary = Vocabulary(words.astype(np.float32), np.ones(len(words), np.float32))
    word_ids = vocabulary.assign(vectors)
    documents = max(int(document_ids.max()) + 1, 1) if len(document_ids) else 1
    present = np.zeros((documents, len(words)), bool)
    present[document_ids, word_ids] = True
    frequency = present.sum(axis=0)
    vocabulary.idf = np.log((documents + 1.0) / (frequency + 1.0)).astype(np.float32) + 1e-3
    return vocabulary


def document_histograms(vocabulary: Vocabulary, word_ids: np.ndarray,
                        document_ids: np.ndarray, documents: int) -> np.ndarray:
    """(documents, W) tf-idf histograms of words grouped by document."""
    counts = np.zeros((documents, len(vocabulary.words)), np.float32)
    np.add.at(counts, (document_ids, word_ids), 1.0)
    weighted = counts * vocabulary.idf
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    return weighted / np.maximum(norms, 1e-12)


def rank(query_histogram: np.ndarray, histograms: np.ndarray, top_k: int) -> np.ndarray:
    """Return the indices of the ``top_k`` most similar documents, best first."""
    scores = histograms @ query_histogram
    top_k = min(top_k, len(scores))
    best = np.argpartition(-scores, top_k - 1)[:top_k]
    return best[np.argsort(-scores[best], kind='stable')]
