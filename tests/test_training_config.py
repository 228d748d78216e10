"""Strict experiment configs: misspelt keys name the key and suggest the fix; TRL validates its own sections."""

from pathlib import Path

import pytest
import yaml

from training.config import ConfigError, ExperimentConfig, eval_config, load_config, trl_config

# recoverygym train configs; the recovery experiment's (scripts/recovery_experiment.py) name one as train_config
CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "configs").glob("*.yaml")
                 if "train_config" not in (yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"modle": {}}, "unknown key 'modle' (did you mean 'model'?)"),
        ({"model": {"name_or_pth": "tiny"}}, "unknown key 'model.name_or_pth' (did you mean 'name_or_path'?)"),
        ({"model": {"tiny": {"hiden_size": 32}}}, "unknown key 'model.tiny.hiden_size' (did you mean 'hidden_size'?)"),
        ({"model": {"lora": {"rank": 8}}}, "unknown key 'model.lora.rank'"),
        ({"eval": {"task": 5}}, "(did you mean 'tasks'?)"),
        ({"eval": {"tasks": 0}}, "eval: EvalConfig.tasks must be >= 1, got 0"),  # the runner's own check
        ({"eval": {"max_turns": "many"}}, "eval.max_turns: expected an integer, got 'many'"),
        ({"eval": {"seed": 3}}, "eval.seed is set by the run; set run.seed instead"),
        ({"eval": {"fault_kinds": ["all"]}}, "set eval.faults (or env.faults) instead"),
        ({"eval": {"faults": {"rate_limt": 0.1}}}, "(did you mean 'rate_limit'?)"),
        ({"sft": {"learning_rat": 1.0e-3}}, "unknown key 'sft.learning_rat' (did you mean 'learning_rate'?)"),
        ({"grpo": {"num_generation": 4}}, "unknown key 'grpo.num_generation' (did you mean 'num_generations'?)"),
        ({"run": {"seed": "zero"}}, "run.seed: expected an integer, got 'zero'"),
        ({"run": {"stages": ["sft", "ppo"]}}, "each stage must be one of ['sft', 'grpo']"),
        ({"data": {"sft_noise": 1.5}}, "data.sft_noise"),
        ({"data": {"sft_near_miss": -0.1}}, "data.sft_near_miss"),
        ({"env": {"max_turns": 0}}, "env.max_turns=0"),
        ({"sft": {"output_dir": "elsewhere"}}, "sft.output_dir is set by the run; set run.output_dir instead"),
        ({"grpo": {"seed": 3}}, "set run.seed instead"),
        ({"grpo": {"num_generations": 3, "per_device_train_batch_size": 4}}, "divisible by num_generations"),
    ],
)
def test_config_errors_name_the_key_and_suggest(data, expected):
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert expected in str(err.value)


def test_unknown_key_in_a_file_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run:\n  output_dri: runs/x\n")
    with pytest.raises(ConfigError, match=r"'run.output_dri' \(did you mean 'output_dir'\?\)"):
        load_config(path)


def test_yaml_1_1_number_and_word_quirks(tmp_path):
    path = tmp_path / "quirks.yaml"
    path.write_text(
        "model:\n  lora:\n    dropout: 1e-2\n"
        "sft:\n  learning_rate: 1e-6\n  save_strategy: no\n"
        "grpo:\n  learning_rate: 5E-7\n  beta: 0\n"
    )
    assert yaml.safe_load(path.read_text())["sft"]["learning_rate"] == "1e-6"  # the quirk being handled
    config = load_config(path)
    assert config.model.lora.dropout == pytest.approx(0.01)
    assert config.sft["learning_rate"] == pytest.approx(1e-6)
    sft = trl_config(config, "sft")
    assert sft.learning_rate == pytest.approx(1e-6) and str(sft.save_strategy.value) == "no"
    assert trl_config(config, "grpo").learning_rate == pytest.approx(5e-7)


def test_run_owned_fields_and_defaults(tmp_path):
    config = load_config({"run": {"output_dir": str(tmp_path / "r"), "seed": 7}})
    sft, grpo = trl_config(config, "sft"), trl_config(config, "grpo")
    assert sft.output_dir == str(tmp_path / "r" / "sft") and grpo.output_dir == str(tmp_path / "r" / "grpo")
    assert sft.seed == grpo.seed == 7
    assert sft.assistant_only_loss is True
    assert "tensorboard" in sft.report_to and "tensorboard" in grpo.report_to


def test_overrides_apply_on_top_of_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("grpo:\n  max_steps: 50\n")
    config = load_config(path, ["grpo.max_steps=3", "run.stages=[grpo]", "env.faults={transient_error: 0.2}"])
    assert config.grpo["max_steps"] == 3
    assert config.run.stages == ("grpo",)
    assert config.env.faults == {"transient_error": 0.2}
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["grpo.max_steps"])


def test_config_round_trips_through_yaml():
    config = load_config({"model": {"lora": {"r": 4}}, "sft": {"max_steps": 2}})
    again = load_config(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    assert isinstance(again, ExperimentConfig)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    import torch

    data = yaml.safe_load(path.read_text())
    overrides = []
    if not torch.cuda.is_available():  # GPU configs ask for bf16, which TRL rejects on a CPU-only machine
        overrides = [f"{s}.bf16=false" for s in ("sft", "grpo") if data.get(s, {}).get("bf16")]
    config = load_config(path, overrides)
    assert config.run.stages


def test_each_evaluation_set_is_one_runner_config():
    """The eval section holds when and on which sets; what an evaluation is comes from the runner's EvalConfig,
    passed through unchanged (the one definition recoverygym eval uses)."""
    config = load_config({"env": {"faults": {"transient_error": 0.05, "rate_limit": 0.1}, "max_turns": 14},
                          "data": {"max_required_steps": 6}, "run": {"seed": 3},
                          "eval": {"tasks": 7, "splits": ["heldout", "train", "seen"], "task_offset": 500,
                                   "batch_size": 4}})
    held, train, seen = (eval_config(config, s) for s in ("heldout", "train", "seen"))
    assert held.splits == ("heldout",) and held.task_offset == 0 and held.max_required_steps is None
    assert train.splits == ("train",) and train.task_offset == 500 and train.max_required_steps == 6
    assert seen.splits == ("train",) and seen.task_offset == 0 and seen.max_required_steps == 6
    for runner in (held, train, seen):
        assert runner.env_ids == ("recoverygym/SupportDesk-v0",) and runner.seed == 3 and runner.tasks == 7
        assert runner.fault_kinds == ("rate_limit=0.1+transient_error=0.05",) and runner.batch_size == 4
        assert runner.samples == 1 and runner.max_turns == 14  # greedy: one sample; training's own turn limit
    assert eval_config(load_config({"eval": {"max_turns": 9, "faults": {}}}), "heldout").fault_kinds == ("none",)
    assert config.to_dict()["eval"]["tasks"] == 7 and "runner" not in config.to_dict()["eval"]


def test_our_defaults_and_configs_raise_no_deprecation_or_cpu_warnings():
    """TRL's default gradient_checkpointing=True reaches transformers under its deprecated name unless the run
    passes the current one; pinned memory warns on a machine without an accelerator."""
    import warnings

    import torch

    for path in [None, *[p for p in CONFIGS if p.name in ("quickstart.yaml", "multi-gpu.yaml",
                                                                   "qwen2.5-0.5b-vllm.yaml")]]:
        data = yaml.safe_load(path.read_text()) if path else {}
        overrides = []
        if not torch.cuda.is_available():
            overrides = [f"{s}.bf16=false" for s in ("sft", "grpo") if data.get(s, {}).get("bf16")]
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            config = load_config(path, overrides)
            for stage in ("sft", "grpo"):
                args = trl_config(config, stage)
                assert args.activation_checkpointing == data.get(stage, {}).get("activation_checkpointing", True)
                assert torch.cuda.is_available() or args.dataloader_pin_memory is False


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU's bf16 support is what is tested")
@pytest.mark.parametrize("native", [True, False])
def test_bf16_fast_is_bf16_autocast_only_where_the_cpu_computes_it(native, monkeypatch):
    """An SFT step of SmolLM2 under bf16 autocast took 580 s on a CPU that emulates bf16, ~10x float32's; ``fast``
    picks bf16 only where it is native, and asking for bf16 where it is not warns."""
    import warnings

    import training.models

    monkeypatch.setattr(training.models, "cpu_supports_bf16", lambda: native)
    config = load_config({"sft": {"bf16": "fast", "max_steps": 1}, "grpo": {"bf16": "fast"}})
    for stage in ("sft", "grpo"):
        args = trl_config(config, stage)
        assert args.bf16 is native and args.use_cpu is native  # TRL takes bf16 on a CPU only with use_cpu
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trl_config(load_config({"sft": {"bf16": True, "use_cpu": True}}), "sft")
    assert any("emulates bfloat16" in str(w.message) for w in caught) is not native
