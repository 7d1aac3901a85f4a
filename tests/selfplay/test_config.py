from pathlib import Path

import pytest

from selfplay.config import EMBEDDED_MODEL, Config, ConfigError, load_config


def test_defaults_are_the_embedded_laptop_setup():
    config = Config()
    assert config.model.challenger == config.model.solver == EMBEDDED_MODEL
    assert config.generate.samples_per_task == 8
    assert (config.labels.frontier_low, config.labels.frontier_high) == (0.3, 0.8)


def test_yaml_then_overrides(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("generate:\n  tasks: 4\n  kinds: [math]\nwarehouse:\n  path: w.duckdb\n")
    config = load_config(path, ["generate.tasks=7", "sampling.solver.temperature=0.5"])
    assert config.generate.tasks == 7
    assert config.generate.kinds == ["math"]
    assert config.sampling.solver.temperature == 0.5
    assert config.sampling.challenger.temperature == 1.0  # untouched default
    assert config.warehouse.path == Path("w.duckdb")


def test_list_override_is_parsed_as_yaml():
    assert load_config(None, ["generate.kinds=[mcq]"]).generate.kinds == ["mcq"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["generate.tasks=0"], "generate.tasks: Input should be greater than or equal to 1"),
        (
            ["generate.kinds=[poetry]"],
            "generate.kinds.0: Input should be 'math', 'mcq', 'code_o', 'code_i' or 'code_f'",
        ),
        (["generate.nonsense=1"], "generate.nonsense: Extra inputs are not permitted"),
        (["labels.frontier_low=0.9"], "frontier_low (0.9) must not exceed labels.frontier_high"),
        (["tasks"], "override 'tasks' must look like section.field=value"),
    ],
)
def test_bad_overrides_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_config(None, overrides)
    assert message in str(raised.value)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("generate: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(scalar)


def test_fingerprint_follows_content():
    assert Config().fingerprint() == Config().fingerprint()
    assert Config().fingerprint() != load_config(None, ["run.seed=1"]).fingerprint()


PROFILES = sorted((Path(__file__).resolve().parents[2] / "docs" / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_config_profiles_load(profile: Path):
    config = load_config(profile)
    assert config.model.solver == "Qwen/Qwen3-4B-Base"
    assert config.training.device == "cuda" and config.engine.backend == "vllm"


def test_there_are_profiles_to_check():
    assert {p.stem for p in PROFILES} >= {"gpu-qwen3-4b", "cluster-qwen3-4b"}


def test_schedules_take_cron_or_interval_not_both():
    config = load_config(None, ["flows.run_schedule.cron=0 3 * * *"])
    assert config.flows.run_schedule.cron == "0 3 * * *"
    with pytest.raises(ConfigError, match="cron or interval_minutes, not both"):
        load_config(
            None,
            ["flows.run_schedule.cron=0 3 * * *", "flows.run_schedule.interval_minutes=60"],
        )
