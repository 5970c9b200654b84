"""A bounded, thread-safe, content-addressed cache of recent vectors.

Keys are digests of an input's content (text or image bytes). Besides saving work on repeated inputs
(nearImage queries, re-imports), it makes repeated inputs bit-identical even when they were computed
in batches of different composition, where float rounding may differ in the last bits.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def content_key(modality: str, content: bytes | str) -> bytes:
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.blake2b(data, digest_size=20, person=modality.encode()[:16]).digest()


class VectorCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> np.ndarray | None:
        if self.capacity == 0:
            return None
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
            return vector

    def put(self, key: bytes, vector: np.ndarray) -> np.ndarray:
        """Store ``vector`` (made read-only) unless another thread stored one first; return the stored one."""
        if self.capacity == 0:
            return vector
        vector.setflags(write=False)
        with self._lock:
            existing = self._items.get(key)
            if existing is not None:
                self._items.move_to_end(key)
                return existing
            self._items[key] = vector
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return vector

    def __len__(self) -> int:
        return len(self._items)
