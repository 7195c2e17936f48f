import pytest

from bot4jax import config as cfg
from bot4jax.errors import ConfigError


def test_defaults_roundtrip_through_toml(tmp_path):
    c = cfg.TrainConfig()
    p = tmp_path / "c.toml"
    p.write_text(cfg.dumps(c))
    assert cfg.load(cfg.TrainConfig, p) == c


def test_file_then_flags_override(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('seed = 3\n[model]\nepochs = 5\n[data]\npath = "x.json"\n')
    c = cfg.load(cfg.TrainConfig, p, {"model.epochs": 9, "data.repair": True, "quick": None})
    assert (c.seed, c.model.epochs, c.data.path, c.data.repair, c.quick) == (3, 9, "x.json", True, False)
    assert c.model.hidden == cfg.ModelConfig().hidden


def test_int_accepted_for_float():
    assert cfg.from_dict(cfg.EvalConfig, {"fee_bps": 10}).fee_bps == 10.0


@pytest.mark.parametrize("values, match", [
    ({"sede": 1}, "unknown config key"),
    ({"model": {"epochs": "ten"}}, "model.epochs"),
    ({"model": 3}, "is a section"),
    ({"quick": 1}, "expected bool"),
])
def test_bad_values_name_the_key(values, match):
    with pytest.raises(ConfigError, match=match):
        cfg.from_dict(cfg.TrainConfig, values)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load(cfg.TrainConfig, tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        cfg.load(cfg.TrainConfig, bad)


def test_shipped_experiment_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))
    assert configs
    for path in configs:
        assert isinstance(cfg.load(cfg.TrainConfig, path), cfg.TrainConfig)
    assert cfg.load(cfg.TrainConfig, configs[0].parent / "baseline.toml") == cfg.TrainConfig()
