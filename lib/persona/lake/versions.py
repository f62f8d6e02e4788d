"""Content versions: a short digest of what made a table or a model, so that the same
inputs give the same version on every run."""
from __future__ import annotations

import hashlib
import json

import numpy as np


def content_version(content, arrays=(), sort_keys: bool = False) -> str:
    """12 hex digits of the SHA-1 of ``content`` as JSON (keys sorted when ``sort_keys``),
    followed by the raw bytes of each of ``arrays`` (e.g. a model's weights)."""
    digest = hashlib.sha1(json.dumps(content, sort_keys=sort_keys).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]
