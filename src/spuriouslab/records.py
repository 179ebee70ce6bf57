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
    """The array :func:`encode_array` stored; ``ValueError`` (one line) for anything else (a hand-edited or
    truncated record: not a dict, a missing key, bad base64, a shape that does not fit the bytes)."""
    try:
        shape = [int(n) for n in d["shape"]]
        dtype = np.dtype(d["dtype"])
        if dtype.hasobject or any(n < 0 for n in shape):
            raise ValueError("object dtype or negative shape")
        return np.frombuffer(base64.b64decode(d["data"], validate=True), dtype=dtype).reshape(shape)
    except Exception as exc:  # noqa: BLE001 - every malformed entry ends here, in one line
        raise ValueError(f"not an encoded array ({type(exc).__name__})") from None
