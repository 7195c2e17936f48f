"""Model checkpoints: parameters saved with orbax, metadata as JSON, and the store that indexes them.

A model directory holds `params/` (an orbax checkpoint of the parameter pytree) and `model.json`
(what the model needs besides its arrays: kind, feature names, label horizon, decision rule, data
source, metrics). The store (`checkpoints/` by default) keeps one copy per registered run plus
`index.json`; both are written to a temporary name and renamed, so a crash never leaves a half entry.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orbax.checkpoint as ocp

from bot4jax.errors import Bot4jaxError
from bot4jax.jsonio import write_json_atomic

MODEL_JSON = "model.json"
PARAMS_DIR = "params"
INDEX_JSON = "index.json"


class CheckpointError(Bot4jaxError):
    pass


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    params: dict
    meta: dict


def save_model(model_dir: Path, params: dict, meta: dict) -> Path:
    """Write params (orbax) and meta (JSON) into a fresh `model_dir`."""
    model_dir = Path(model_dir).absolute()
    if model_dir.exists():
        raise CheckpointError(f"{model_dir} already exists; a checkpoint is never overwritten")
    model_dir.mkdir(parents=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(model_dir / PARAMS_DIR, params)
    checkpointer.wait_until_finished()
    write_json_atomic(model_dir / MODEL_JSON, meta)
    return model_dir


def resolve_model_dir(path: Path) -> Path:
    """Accept a model directory, a train run directory (holding `model/`) or a store entry."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / MODEL_JSON).is_file() and (candidate / PARAMS_DIR).is_dir():
            return candidate.absolute()
    raise CheckpointError(f"{path} is not a model: expected {MODEL_JSON} and {PARAMS_DIR}/ in it "
                          f"or in its model/ subfolder")


def load_model(path: Path) -> Checkpoint:
    model_dir = resolve_model_dir(path)
    meta = json.loads((model_dir / MODEL_JSON).read_text())
    params = ocp.StandardCheckpointer().restore(model_dir / PARAMS_DIR)
    return Checkpoint(model_dir, params, meta)


class CheckpointStore:
    """A folder of registered models, newest last in `index.json`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _index(self) -> list[dict]:
        p = self.root / INDEX_JSON
        if not p.is_file():
            return []
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{p} is corrupt ({e}); restore it or remove it") from None

    def list(self) -> list[dict]:
        return self._index()

    def register(self, model_dir: Path, name: str, info: dict | None = None) -> Path:
        """Copy a saved model into the store under `name` and append it to the index."""
        model_dir = resolve_model_dir(model_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / name
        if dest.exists():
            raise CheckpointError(f"checkpoint {name} already exists in {self.root}")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}."))
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        os.replace(tmp, dest)
        entry = {"name": name, "path": str(dest.absolute()), "registered_at": time.time(), **(info or {})}
        write_json_atomic(self.root / INDEX_JSON, self._index() + [entry])
        return dest

    def latest(self) -> Path:
        """The most recently registered model that still exists on disk."""
        for entry in reversed(self._index()):
            p = self.root / entry["name"]
            if (p / MODEL_JSON).is_file():
                return p
        raise CheckpointError(f"no model in the checkpoint store {self.root.absolute()}: "
                              f"run `python -m bot4jax.train` first, or pass --model DIR")
