import numpy as np
import pytest

from bot4jax.registry.checkpoints import CheckpointError, CheckpointStore, load_model, save_model


def _params():
    return {"scaler": {"mean": np.arange(3.0), "std": np.ones(3)},
            "net": {"w1": np.ones((3, 2), np.float32), "b2": np.float32(0.5)}}


def test_save_load_register_latest(tmp_path):
    run = tmp_path / "run1"
    save_model(run / "model", _params(), {"kind": "baseline_mlp", "horizon": 1})
    ck = load_model(run)  # a run directory resolves to its model/
    np.testing.assert_array_equal(ck.params["scaler"]["mean"], np.arange(3.0))
    assert ck.params["net"]["w1"].dtype == np.float32
    assert ck.meta["horizon"] == 1
    store = CheckpointStore(tmp_path / "store")
    with pytest.raises(CheckpointError, match="no model"):
        store.latest()
    store.register(run, "run1")
    save_model(tmp_path / "run2" / "model", _params(), {"kind": "baseline_mlp", "horizon": 2})
    store.register(tmp_path / "run2", "run2")
    assert store.latest().name == "run2"
    assert [e["name"] for e in store.list()] == ["run1", "run2"]
    assert load_model(store.latest()).meta["horizon"] == 2
    with pytest.raises(CheckpointError, match="already exists"):
        store.register(run, "run1")
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".")]


def test_never_overwrites_and_explains_bad_paths(tmp_path):
    save_model(tmp_path / "m", _params(), {})
    with pytest.raises(CheckpointError, match="never overwritten"):
        save_model(tmp_path / "m", _params(), {})
    with pytest.raises(CheckpointError, match="is not a model"):
        load_model(tmp_path)


def test_corrupt_index_is_reported(tmp_path):
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        CheckpointStore(tmp_path).latest()
