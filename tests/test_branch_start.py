"""Branch starts: ``reset(options={"actions": [...]})`` replays an episode's first actions and continues it exactly.

Scripted episodes (the reference, and ``envs.policies``' noisy and near-miss policies) are played under each fault
kind; each is cut right after a step where a fault fired or a call was rejected, and a fresh env is branch-started
from the actions before the cut. The branch must then be the original: the same observation, history, state and
reference action at the cut, and the same observations, rewards and infos when both continue with the same actions.
"""

from __future__ import annotations

import json

import gymnasium
import pytest
from test_task_identity import canonical

import envs  # noqa: F401  (registers the environments)
from envs.core import FaultConfig
from envs.policies import NoisyReferencePolicy, ReferencePolicy

IDS = ["recoverygym/SupportDesk-v0", "recoverygym/Spreadsheet-v0"]
KINDS = ["transient_error", "rate_limit", "write_timeout", "stale_read", "concurrent_edit", "seeded_error"]
POLICIES = [ReferencePolicy(), NoisyReferencePolicy(0.3), NoisyReferencePolicy(0.3, near_miss=1.0)]


def faults_for(kind: str) -> FaultConfig:
    if kind == "stale_read":  # a stale read needs a change to lag behind: a seeded mistake gives the first reads one
        return FaultConfig(stale_read=0.6, seeded_error=1.0)
    return FaultConfig.only(kind, 0.5 if kind != "seeded_error" else 1.0)


def record(env, policy, seed: int, task_seed: int) -> tuple[str, list[dict]]:
    """The prompt and, per step: the reference's action before it, the action, the step's 5-tuple, the state after."""
    policy.reset(seed)
    obs, _ = env.reset(seed=seed, options={"task_seed": task_seed})
    prompt, steps = obs, []
    while True:
        before = env.unwrapped.reference_action()
        action = policy.act(env, obs)
        result = env.step(action)
        obs = result[0]
        steps.append({"reference": before, "action": action, "result": result,
                      "state": canonical(env.unwrapped.state)})
        if result[2] or result[3]:
            return prompt, steps


def cuts(steps: list[dict]) -> list[int]:
    """Steps after which to branch: where a fault fired or a call was rejected (the episode must go on after)."""
    marked = [i + 1 for i, s in enumerate(steps[:-1])
              if s["result"][4]["outcome"] == "rejected" or s["result"][4]["fault"] is not None]
    return marked[:1] + marked[-1:] if len(marked) > 1 else marked


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_branch_start_continues_the_recorded_episode_exactly(env_id, kind):
    branched = 0
    for policy in POLICIES:
        for k in range(3):
            env = gymnasium.make(env_id, faults=faults_for(kind))
            prompt, steps = record(env, policy, seed=10 + k, task_seed=k)
            for cut in cuts(steps):
                branch = gymnasium.make(env_id, faults=faults_for(kind))
                actions = [s["action"] for s in steps[:cut]]
                obs, info = branch.reset(seed=10 + k, options={"task_seed": k, "actions": actions})
                last = steps[cut - 1]["result"]
                assert obs == last[0] and info["prompt"] == prompt
                assert info["faults"] == last[4]["faults"] and info["recovery"] == last[4]["recovery"]
                assert [h["observation"] for h in info["history"]] == [s["result"][0] for s in steps[:cut]]
                assert [h["outcome"] for h in info["history"]] == [s["result"][4]["outcome"] for s in steps[:cut]]
                assert [h["action"] for h in info["history"]] == actions
                assert canonical(branch.unwrapped.state) == steps[cut - 1]["state"]
                for s in steps[cut:]:  # the reference's next action, then the recorded action's result, step by step
                    assert branch.unwrapped.reference_action() == s["reference"]
                    assert branch.step(s["action"]) == s["result"]
                branched += 1
    assert branched >= 3, f"only {branched} branch points under {kind}"


def test_history_lists_the_faults_each_replayed_action_met():
    env = gymnasium.make(IDS[0], faults=FaultConfig.only("transient_error", 1.0))
    env.reset(seed=0, options={"task_seed": 0})
    first = env.unwrapped.reference_action()
    obs, info = env.reset(seed=0, options={"task_seed": 0, "actions": [first, first, "no tool call"]})
    assert [h["outcome"] for h in info["history"]] == ["fault", "ok", "invalid"]
    assert [len(h["faults"]) for h in info["history"]] == [1, 0, 0]
    assert info["history"][0]["faults"][0]["kind"] == "transient_error" and obs.startswith("error: ")
    assert {"tools", "task_seed", "split", "template", "required_steps", "max_turns"} <= set(info)


def test_no_actions_is_the_plain_start_with_an_empty_history():
    env = gymnasium.make(IDS[1])
    plain, plain_info = env.reset(seed=3, options={"task_seed": 3})
    obs, info = env.reset(seed=3, options={"task_seed": 3, "actions": []})
    assert obs == plain == info["prompt"] and info["history"] == []
    assert {k: v for k, v in info.items() if k not in ("history", "prompt")} == plain_info


@pytest.mark.parametrize("env_id", IDS)
def test_an_action_that_ends_the_episode_is_refused(env_id):
    env = gymnasium.make(env_id, max_turns=3)
    env.reset(seed=0, options={"task_seed": 0})
    finish = next(s.name for s in env.unwrapped.tool_specs().values() if s.finish)
    done = json.dumps({"name": finish, "arguments": {}})
    with pytest.raises(ValueError, match=r"actions'\]\[1\] calls the finishing tool"):
        env.reset(seed=0, options={"task_seed": 0, "actions": ["x", done]})
    with pytest.raises(ValueError, match="turn limit of 3"):
        env.reset(seed=0, options={"task_seed": 0, "actions": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="list of action strings"):
        env.reset(seed=0, options={"task_seed": 0, "actions": "x"})
    with pytest.raises(ValueError, match="list of action strings"):
        env.reset(seed=0, options={"task_seed": 0, "actions": [{"name": finish}]})


def test_asking_the_reference_changes_nothing():
    """The reference's state follows the actions alone: replayed without ever asking it, it answers the same."""
    env_id, faults = IDS[1], FaultConfig(write_timeout=0.5, concurrent_edit=0.5, seeded_error=1.0)
    asked, silent = gymnasium.make(env_id, faults=faults), gymnasium.make(env_id, faults=faults)
    noisy = NoisyReferencePolicy(0.5)
    for k in range(3):
        noisy.reset(k)
        obs, _ = asked.reset(seed=k, options={"task_seed": k})
        actions, answers = [], []
        for _ in range(10):
            actions.append(noisy.act(asked, obs))  # asks the reference on half the steps
            obs, _, terminated, truncated, _ = asked.step(actions[-1])
            if terminated or truncated:
                break
            answers.append(asked.unwrapped.reference_action())
        for cut in range(1, len(answers) + 1, 3):
            silent.reset(seed=k, options={"task_seed": k})
            for action in actions[:cut]:
                silent.step(action)
            assert silent.unwrapped.reference_action() == answers[cut - 1], (k, cut)
