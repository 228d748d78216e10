"""Dataset builders: task-seed rows for GRPO and scripted demonstrations for the supervised warm start.

GRPO rows carry no text of their own: the prompt is an empty user turn, and the adapter's ``reset(**row)`` appends
the environment's prompt for that row's task. Demonstrations are the same conversations a model would have through
the adapter (same prompt text, same tool list in the same order), written by the scripted reference policy and its
noisy variant, in TRL's tool-calling message format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from training.adapter import make_env, parse_faults, tool_schemas

__all__ = [
    "FINAL_MESSAGE",
    "demonstration",
    "grpo_dataset",
    "message_features",
    "parse_tool_call",
    "prompt_row",
    "select_task_seeds",
    "sft_dataset",
    "tool_schemas",
]

# What the model says after the episode ends; keeps a trained model from calling tools past the finish.
FINAL_MESSAGE = "Done."


def select_task_seeds(
    env_id: str, *, split: str = "train", start: int = 0, count: int, max_required_steps: int | None = None
) -> list[int]:
    """``count`` task seeds of ``split`` from ``start`` on, skipping tasks whose fault-free reference solution takes
    more than ``max_required_steps`` tool calls (None: no filter, the seeds ``start .. start + count - 1``).

    The filter reads ``info["required_steps"]`` from ``reset``, which every recoverygym environment reports, so it
    chooses tasks by length without naming any environment's templates.
    """
    if max_required_steps is None:
        return list(range(start, start + count))
    env = make_env(env_id)
    seeds, k = [], start
    while len(seeds) < count:
        _, info = env.reset(options={"task_seed": k, "split": split})
        if info["required_steps"] <= max_required_steps:
            seeds.append(k)
        k += 1
        if k - start > 1000 * count:
            raise ValueError(f"only {len(seeds)} of {k - start} {split} tasks of {env_id} need at most "
                             f"{max_required_steps} tool calls, {count} wanted; raise data.max_required_steps or "
                             "set it to null")
    env.close()
    return seeds


def prompt_row(task_seed: int, *, split: str, seed: int, faults: Mapping[str, float] | None) -> dict[str, Any]:
    """One GRPO row: an empty user turn (the environment supplies the text) and what ``reset`` needs."""
    return {
        "prompt": [{"role": "user", "content": ""}],
        "task_seed": int(task_seed),
        "split": split,
        "seed": int(seed),
        "faults": json.dumps(dict(faults or {}), sort_keys=True),
    }


def grpo_dataset(
    task_seeds: Iterable[int],
    *,
    split: str = "train",
    faults: Mapping[str, float] | None = None,
    seed: int = 0,
):
    """A ``datasets.Dataset`` of GRPO rows, one per task seed; the fault seed of row i is ``seed + i``.

    Every rollout of a GRPO group is built from the same row, so it starts from the same task and draws faults
    from the same seed.
    """
    from datasets import Dataset

    rows = [prompt_row(k, split=split, seed=seed + i, faults=faults) for i, k in enumerate(task_seeds)]
    if not rows:
        raise ValueError("grpo_dataset needs at least one task seed")
    return Dataset.from_list(rows)


def parse_tool_call(action: str) -> dict[str, Any] | None:
    """A policy's action text as a TRL tool call, or None when it is not one well-formed call.

    Malformed actions (the random part of a noisy policy) cannot be written as tool calls; a model emitting them in
    a GRPO rollout would end its turn as plain text, so demonstrations leave them out.
    """
    text = action.strip()
    if text.startswith("<tool_call>"):
        text = text.removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return None
    arguments = payload.get("arguments", {})
    if not isinstance(arguments, dict):
        return None
    return {"type": "function", "function": {"name": payload["name"], "arguments": arguments}}


def demonstration(env, policy, *, task_seed: int, split: str, seed: int) -> tuple[list[dict[str, Any]], float]:
    """Run ``policy`` on one task; return the conversation in TRL's tool-calling format and the final score."""
    if hasattr(policy, "reset"):
        policy.reset(seed=seed)
    observation, _ = env.reset(seed=seed, options={"task_seed": int(task_seed), "split": split})
    messages: list[dict[str, Any]] = [{"role": "user", "content": observation}]
    reward, done = 0.0, False
    while not done:
        action = policy.act(env, observation)
        observation, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        call = parse_tool_call(action)
        if call is None:
            continue
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        messages.append({"role": "tool", "name": call["function"]["name"], "content": observation})
    messages.append({"role": "assistant", "content": FINAL_MESSAGE})
    return messages, float(reward)


def message_features():
    """Arrow features for tool-calling conversations.

    Stored as JSON per message: plain Arrow structs would merge argument dicts across rows and fill missing keys
    with nulls, which changes the rendered tool calls.
    """
    from datasets import Features, Json, List, Value

    return Features(
        {
            "messages": List(Json()),
            "tools": Value("string"),
            "task_seed": Value("int64"),
            "policy": Value("string"),
            "score": Value("float64"),
        }
    )


def _policies(noise: float, noisy_share: float, near_miss: float, count: int) -> list[tuple[str, Any]]:
    """Which policy writes demonstration i: the noisy one for a ``noisy_share`` of them, spread evenly."""
    from envs.policies import NoisyReferencePolicy, ReferencePolicy

    share = noisy_share if noise > 0 else 0.0
    noisy_policy = NoisyReferencePolicy(noise, near_miss=near_miss)
    reference, noisy = ("reference", ReferencePolicy()), (noisy_policy.name, noisy_policy)
    return [noisy if int((i + 1) * share) > int(i * share) else reference for i in range(count)]


def sft_dataset(
    env_id: str,
    task_seeds: Sequence[int],
    *,
    split: str = "train",
    faults: Mapping[str, float] | str | None = None,
    max_turns: int | None = None,
    noise: float = 0.1,
    noisy_share: float = 0.5,
    near_miss: float = 0.0,
    seed: int = 0,
    only_successful: bool = True,
):
    """Warm-start conversations from the reference policy and its noisy variant (recovery demonstrations).

    Args:
        env_id: A registered environment id.
        task_seeds: One demonstration per task seed (before filtering).
        split: Task split; keep ``"heldout"`` out of training data.
        faults: Fault rates during the demonstrations: the reference policy's recoveries are what is learned.
        max_turns: Turn limit override.
        noise: Probability that the noisy policy makes a mistake at a step.
        noisy_share: Share of demonstrations written by the noisy policy.
        near_miss: Share of the noisy policy's mistakes that are near misses (``envs.policies.near_miss_call``: the
            reference's own call with one argument wrong) rather than random calls.
        seed: Base seed of fault draws and policy noise (demonstration i uses ``seed + i``).
        only_successful: Drop demonstrations whose final score is below 1.

    Returns:
        A ``datasets.Dataset`` with ``messages`` (TRL tool-calling format), ``tools`` (JSON text, in TRL's order),
        ``task_seed``, ``policy`` and ``score``.
    """
    from datasets import Dataset

    env = make_env(env_id, faults=parse_faults(faults), max_turns=max_turns)
    tools = json.dumps(tool_schemas(env))
    rows = []
    policies = _policies(noise, noisy_share, near_miss, len(task_seeds))
    for i, ((name, policy), task_seed) in enumerate(zip(policies, task_seeds, strict=True)):
        messages, score = demonstration(env, policy, task_seed=task_seed, split=split, seed=seed + i)
        if only_successful and score < 1.0:
            continue
        rows.append({"messages": messages, "tools": tools, "task_seed": int(task_seed), "policy": name, "score": score})
    env.close()
    if not rows:
        raise ValueError(f"no successful demonstrations for {env_id} out of {len(task_seeds)}; check the policies")
    return Dataset.from_list(rows, features=message_features())
