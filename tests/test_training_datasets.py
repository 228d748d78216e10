"""Dataset builders: GRPO task rows and scripted tool-calling demonstrations in TRL's format."""

import json

import gymnasium
import pytest

import envs  # noqa: F401
from training.datasets import FINAL_MESSAGE, grpo_dataset, select_task_seeds, sft_dataset

ENV_IDS = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))


def test_grpo_rows_carry_what_reset_needs():
    data = grpo_dataset(range(10, 14), split="train", faults={"transient_error": 0.1}, seed=3)
    assert data.column_names == ["prompt", "task_seed", "split", "seed", "faults"]
    assert data["task_seed"] == [10, 11, 12, 13] and data["seed"] == [3, 4, 5, 6]
    assert data[0]["prompt"] == [{"role": "user", "content": ""}]
    assert json.loads(data[0]["faults"]) == {"transient_error": 0.1}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_demonstrations_are_tool_calling_conversations(env_id):
    data = sft_dataset(env_id, list(range(12)), noise=0.3, noisy_share=0.5)
    assert len(data) >= 6 and set(data["score"]) == {1.0}
    assert {p.split("-")[0] for p in data["policy"]} == {"reference", "noisy"}
    names = {s["function"]["name"] for s in json.loads(data[0]["tools"])}
    for messages in data["messages"]:
        assert messages[0]["role"] == "user" and messages[-1] == {"role": "assistant", "content": FINAL_MESSAGE}
        for call, result in zip(messages[1:-1:2], messages[2:-1:2], strict=True):
            (tool_call,) = call["tool_calls"]
            assert tool_call["function"]["name"] in names and isinstance(tool_call["function"]["arguments"], dict)
            assert result["role"] == "tool" and result["name"] == tool_call["function"]["name"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_arguments_are_stored_as_written(env_id):
    """Arrow structs would merge argument keys across rows and fill the gaps with nulls; JSON storage does not."""
    data = sft_dataset(env_id, list(range(8)), noise=0.0)
    for messages in data["messages"]:
        for message in messages:
            for call in message.get("tool_calls") or []:
                assert None not in call["function"]["arguments"].values()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_failed_demonstrations_are_dropped_unless_asked(env_id):
    kept = sft_dataset(env_id, list(range(10)), noise=0.3, noisy_share=1.0)
    every = sft_dataset(env_id, list(range(10)), noise=0.3, noisy_share=1.0, only_successful=False)
    assert len(every) == 10 and len(kept) == sum(s == 1.0 for s in every["score"])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_task_filter_keeps_only_short_tasks_and_counts_kept_ones(env_id):
    env = gymnasium.make(env_id)

    def steps(k):
        return env.reset(options={"task_seed": k, "split": "train"})[1]["required_steps"]

    lengths = [steps(k) for k in range(200)]
    limit = sorted(lengths)[len(lengths) // 3]  # keeps about a third: the filter must skip seeds
    seeds = select_task_seeds(env_id, start=0, count=10, max_required_steps=limit)
    assert len(seeds) == 10 and seeds == sorted(set(seeds))
    assert all(lengths[k] <= limit for k in seeds)
    assert [k for k in range(seeds[-1] + 1) if lengths[k] <= limit] == seeds, "a short task was skipped"
    assert seeds != list(range(10))
    assert select_task_seeds(env_id, start=5, count=3) == [5, 6, 7]


def test_near_miss_demonstrations_show_a_rejected_argument_then_the_right_call():
    data = sft_dataset("recoverygym/SupportDesk-v0", list(range(20)), noise=0.3, noisy_share=1.0, near_miss=1.0)
    assert set(data["policy"]) == {"near-miss-reference-0.3"}
    corrected = 0
    for messages in data["messages"]:
        pairs = zip(messages[1:-1:2], messages[2:-1:2], strict=True)
        calls = [(m["tool_calls"][0]["function"], r["content"]) for m, r in pairs]
        for (wrong, result), (right, _) in zip(calls, calls[1:], strict=False):
            same_tool = wrong["name"] == right["name"] and wrong["arguments"].keys() == right["arguments"].keys()
            corrected += result.startswith("error") and same_tool and wrong["arguments"] != right["arguments"]
    assert corrected >= 5
