"""Write JSON so that a crash never leaves a half-written file: temp file beside it, fsync, rename."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as JSON to `path` (parents created); NumPy scalars and arrays are allowed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
