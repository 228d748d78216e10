"""Training from branch starts: through the TRL adapter every rollout of a group starts from the same state, TRL
keeps the row's multi-turn prompt, GRPO on branch starts trains; recovery behaviour metrics and the table."""

import json
from pathlib import Path

import gymnasium
import pytest

import envs  # noqa: F401  (registers the ids)
from training.adapter import make_environment_factory
from training.branches import BranchConfig, branch_dataset, replay, scripted_branches
from training.evaluation.metrics import recovery_behaviour

ENV_IDS = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))
SUPPORT = "recoverygym/SupportDesk-v0"
FAULTS = {"transient_error": 0.2, "rate_limit": 0.1, "write_timeout": 0.2, "stale_read": 0.3,
          "concurrent_edit": 0.3, "seeded_error": 0.3}


def _probe(instance, calls):
    """Make the same tool calls through an adapter instance's public tools; what each answered, and the reward."""
    answers = [getattr(instance, name)(**arguments) for name, arguments in calls]
    return answers, instance.get_reward()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_rollout_of_a_group_starts_from_the_same_state(env_id):
    """TRL builds one adapter instance per rollout and calls ``reset(**row)`` on each with the same row: each replays
    the row's actions (returning None, so TRL keeps the row's prompt) and continues identically, faults included;
    an instance reused from another row's rollout continues exactly like a fresh one."""
    rows = scripted_branches(env_id, range(4), faults=FAULTS, config=BranchConfig(per_task=2), seed=4)
    assert rows
    factory = make_environment_factory(env_id, faults=FAULTS)
    reused = factory()
    for row in rows:
        env = gymnasium.make(env_id, faults=json.loads(row["faults"]))
        observation, _ = replay(row, env=env)
        assert row["prompt"][-1]["content"] == observation
        calls = []  # the reference's next calls from the branch state, as a model would make them
        for _ in range(4):
            call = env.unwrapped.reference_call()
            calls.append((call.name, dict(call.arguments)))
            _, _, terminated, truncated, _ = env.step(call.to_json())
            if terminated or truncated:
                break
        results = []
        for instance in [factory() for _ in range(3)] + [reused]:
            assert instance.reset(**row) is None
            results.append(_probe(instance, calls))
        assert all(r == results[0] for r in results), row["branch_id"]
        assert results[0][0] and results[0][0][0] is not None


def test_whole_episode_rows_still_get_the_prompt_from_reset():
    from training.datasets import grpo_dataset

    instance = make_environment_factory(SUPPORT)()
    prompt = instance.reset(**grpo_dataset([2], faults={}, seed=0)[0])
    assert isinstance(prompt, str) and prompt.startswith("You are")


def test_trl_keeps_the_branch_prompt_and_every_rollout_continues_from_it(tmp_path):
    """One GRPO step of a random tiny model on branch starts, through TRL itself: the conversation TRL renders for
    each rollout is the row's prompt (the earlier tool calls and the fault's or the refusal's error), unchanged."""
    import trl

    from training.models import build_tiny_model, load_model_and_tokenizer

    rows = scripted_branches(SUPPORT, range(8), faults=FAULTS, config=BranchConfig(per_task=1), seed=2)
    rows = [r for r in rows if r["branch_turn"] >= 2][:2]
    assert len(rows) == 2
    texts = ["find_customer lookup_order reply_to_customer close_ticket <tool_call> </tool_call>"] * 4
    folder = build_tiny_model(tmp_path / "tiny", texts=texts, hidden_size=16, num_layers=1, vocab_size=300,
                              architecture="llama")
    model, tokenizer = load_model_and_tokenizer(str(folder))
    seen = []

    def record_prompts(prompts, completions, **row):
        seen.extend(zip(row["branch_id"], prompts, strict=True))
        return [0.0] * len(prompts)

    args = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), max_steps=1, num_generations=2,
                          per_device_train_batch_size=4, max_completion_length=8, report_to=[], use_cpu=True,
                          logging_steps=1, save_strategy="no", bf16=False,
                          activation_checkpointing=False)
    trainer = trl.GRPOTrainer(model=model, args=args, processing_class=tokenizer, reward_funcs=[record_prompts],
                              train_dataset=branch_dataset(rows),
                              environment_factory=make_environment_factory(SUPPORT, faults=FAULTS))
    trainer.train()
    by_id = {r["branch_id"]: r for r in rows}
    assert len(seen) == 4
    for branch_id, prompt in seen:
        assert prompt == by_id[branch_id]["prompt"]
        assert prompt[-1]["role"] == "tool" and prompt[-2]["role"] == "assistant"


def test_grpo_on_branch_starts_end_to_end(tmp_path):
    """Warm-start a tiny model on two short tasks, then GRPO on branch starts of them under faults, through
    ``recoverygym train`` (``data.grpo_starts: branches``): the loss moves."""
    from tests.test_training_run import tiny_run
    from training.train import run_training

    results = run_training(None, overrides=tiny_run(
        tmp_path, "model.tiny.hidden_size=64", "model.tiny.vocab_size=2048", "data.sft_tasks=2", "data.sft_noise=0",
        "data.grpo_tasks=2", "data.grpo_task_offset=0", "data.max_required_steps=3", "sft.max_steps=80",
        "sft.per_device_train_batch_size=2", "sft.learning_rate=5.0e-3", "grpo.max_steps=3", "grpo.num_generations=4",
        "grpo.per_device_train_batch_size=4", "grpo.max_completion_length=256", "grpo.temperature=1.0",
        "eval.points=[]", "env.faults={transient_error: 0.5, rate_limit: 0.3}", "data.grpo_starts=branches",
        "branches.sources=[reference]", "branches.per_task=2"))
    grpo = [h for h in results["stages"]["grpo"]["log_history"] if "loss" in h]
    assert results["stages"]["grpo"]["grpo_rows"]["starts"] == "branches"
    assert len(grpo) == 3 and any(h["loss"] != 0.0 for h in grpo), grpo
    assert (Path(tmp_path) / "grpo" / "final" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Recovery behaviour from the environment's records


def _episode(records, success=False):
    return {"env_id": "e", "split": "heldout", "fault_kind": "all", "task_seed": 0, "sample": 0, "success": success,
            "score": float(success), "recovery": records}


def _rec(kind, turn, handled, turns=None):
    return {"kind": kind, "turn": turn, "tool": None if kind == "seeded_error" else "t", "handled": handled,
            "turns": turns, "detail": ""}


def test_recovery_behaviour_counts_the_environments_records_per_kind():
    """Timeout then read-back (handled, 1 turn) against a blind retry (not handled), a repeated rejected call (not
    handled) against a changed one (handled), an undone seeded error (handled after 6 turns); records only, no text."""
    episodes = [
        _episode([_rec("write_timeout", 3, True, 1), _rec("rejected_call", 5, False)], success=True),
        _episode([_rec("write_timeout", 2, False), _rec("rejected_call", 1, True, 1),
                  _rec("rejected_call", 4, True, 1)]),
        _episode([_rec("seeded_error", 0, True, 6)], success=True),
        _episode([]),
    ]
    stats = recovery_behaviour(episodes)
    assert stats["write_timeout"]["events"] == 2 and stats["write_timeout"]["handled"] == 1
    assert stats["write_timeout"]["handled_rate"] == 0.5 and stats["write_timeout"]["mean_turns_to_handle"] == 1.0
    assert stats["rejected_call"]["handled"] == 2 and stats["rejected_call"]["events"] == 3
    assert stats["seeded_error"]["mean_turns_to_handle"] == 6.0
    lo, hi = stats["rejected_call"]["handled_ci95"]
    assert 0.2 < lo < 2 / 3 < hi < 1.0  # Wilson 2/3: [0.208, 0.939]
    assert stats["all"]["events"] == 6 and stats["all"]["handled"] == 4
    assert stats["all"]["episodes_with_event"] == 3
    assert recovery_behaviour([_episode([])]) == {}
