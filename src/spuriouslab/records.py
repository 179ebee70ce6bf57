"""What a record may hold beyond numbers, strings and lists: small arrays (feature visualizations, Grad-CAM maps),
encoded as JSON-safe dicts ``{"shape", "dtype", "data" (base64)}``.  Runs encode, reports decode: neither imports
the other."""

from __future__ import annotations

import base64

import numpy as np


def encode_array(a: np.ndarray) -> dict:
    """An array as a JSON-safe dict (its bytes in base64)."""
    a = np.ascontiguousarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": base64.b64encode(a.tobytes()).decode()}


def decode_array(d: dict) -> np.ndarray:
    """The array :func:`encode_array` stored."""
    return np.frombuffer(base64.b64decode(d["data"]), dtype=d["dtype"]).reshape(d["shape"])
