"""The contract every registered environment keeps, parametrized over ``envs.ENVIRONMENTS``.

A new environment added to the registry is tested here with no extra code: Gymnasium's checker, determinism,
pickling, task reproduction for GRPO groups, branch starts, schemas equal to transformers', malformed actions,
outcomes and recovery records, and the reference/do-nothing/random floors. Each environment is held to the fault
kinds it supports (``EnvClass.fault_kinds``).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from gymnasium.utils.env_checker import check_env

import envs
from envs.core import FAULT_KINDS, OUTCOMES, RECOVERY_KINDS, FaultConfig
from envs.policies import DoNothingPolicy, NoisyReferencePolicy, RandomPolicy, ReferencePolicy

IDS = list(envs.ENVIRONMENTS)
# Hold environments of your own to the same contract before (or without) registering them here, e.g.
#   RECOVERYGYM_CONTRACT_ENVS="mylab/Pantry-v0=pantry:PantryEnv" python -m pytest tests/test_contract.py
for _extra in filter(None, os.environ.get("RECOVERYGYM_CONTRACT_ENVS", "").split(",")):
    _id, _, _entry_point = _extra.partition("=")
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry_point)
    IDS.append(_id)
CLASSES = {i: load_env_creator(gymnasium.spec(i).entry_point) for i in IDS}
KINDS = {i: cls.fault_kinds for i, cls in CLASSES.items()}  # each environment is held to the kinds it supports


def all_faults(env_id: str, rate: float, kinds=None) -> FaultConfig:
    """Every fault kind ``env_id`` supports (of ``kinds``, if given) at ``rate``."""
    if kinds is None:
        return CLASSES[env_id].all_faults(rate)
    return FaultConfig(**{k: rate for k in KINDS[env_id] if k in kinds})


def rollout(env, policy, *, seed: int, task_seed: int, split: str = "train") -> list:
    """(action, observation, reward, terminated, truncated) for every step, plus the reset observation first."""
    policy.reset(seed)
    obs, info = env.reset(seed=seed, options={"task_seed": task_seed, "split": split})
    steps = [(None, obs, 0.0, False, False)]
    while True:
        action = policy.act(env, obs)
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append((action, obs, reward, terminated, truncated))
        if terminated or truncated:
            return steps, info


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = gymnasium.make(env_id, faults=all_faults(env_id, 0.2)).unwrapped
    check_env(env, skip_render_check=False)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory_and_reward(env_id):
    for policy in (NoisyReferencePolicy(0.3), NoisyReferencePolicy(0.3, near_miss=0.5), RandomPolicy()):
        for k in range(5):
            runs = []
            for _ in range(2):
                env = gymnasium.make(env_id, faults=all_faults(env_id, 0.2))
                runs.append(rollout(env, policy, seed=100 + k, task_seed=k))
            (steps_a, info_a), (steps_b, info_b) = runs
            assert steps_a == steps_b
            assert info_a["faults"] == info_b["faults"] and info_a["score"] == info_b["score"]


@pytest.mark.parametrize("env_id", IDS)
def test_task_seed_fixes_the_start_state_whatever_the_episode_seed(env_id):
    """Every rollout of a GRPO group starts from one state, seeded mistakes included."""
    env = gymnasium.make(env_id, faults=all_faults(env_id, 0.5, kinds=("seeded_error", "transient_error")))
    for k in range(10):
        starts = {env.reset(seed=s, options={"task_seed": k, "split": "heldout"})[0] for s in range(4)}
        assert len(starts) == 1
    prompts = {env.reset(seed=0, options={"task_seed": k})[0] for k in range(10)}
    assert len(prompts) == 10
    train, _ = env.reset(seed=0, options={"task_seed": 3, "split": "train"})
    heldout, _ = env.reset(seed=0, options={"task_seed": 3, "split": "heldout"})
    assert train != heldout


@pytest.mark.parametrize("env_id", IDS)
def test_pickled_env_continues_identically(env_id):
    env = gymnasium.make(env_id, faults=all_faults(env_id, 0.3)).unwrapped
    env.reset(seed=7, options={"task_seed": 7})
    for _ in range(3):
        env.step(env.reference_action())
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(200):
        action = env.reference_action()
        assert clone.reference_action() == action
        a, b = env.step(action), clone.step(action)
        assert a == b
        if a[2] or a[3]:
            break
    assert a[2] and a[1] == 1.0


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_reference_succeeds_and_floors_score_zero(env_id, split):
    faulty = gymnasium.make(env_id, faults=all_faults(env_id, 0.2))
    plain = gymnasium.make(env_id)
    for k in range(30):
        steps, info = rollout(faulty, ReferencePolicy(), seed=k, task_seed=k, split=split)
        assert info["success"] and steps[-1][2] == 1.0, (k, info["faults"], info["reasons"])
        assert all(faulty.observation_space.contains(s[1]) for s in steps)
        for floor in (DoNothingPolicy(), RandomPolicy()):
            steps, info = rollout(plain, floor, seed=k, task_seed=k, split=split)
            assert steps[-1][2] == info["score"] < 1.0 and not info["success"], (k, type(floor).__name__)


@pytest.mark.parametrize("env_id", IDS)
def test_reward_is_zero_until_the_end_then_the_checker_score(env_id):
    env = gymnasium.make(env_id, max_turns=4)
    env.reset(seed=0, options={"task_seed": 0})
    lookups = [s for s in env.unwrapped.tool_specs().values() if not s.write and not s.params]
    action = json.dumps({"name": lookups[0].name, "arguments": {}}) if lookups else "not a tool call"
    for turn in range(1, 5):
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["turn"] == turn and not terminated
        assert truncated == (turn == 4)
    assert reward == info["score"] == env.unwrapped.check().score and "turn limit" in obs
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)


MALFORMED = [
    ("not json at all", "no tool call"),
    ('{"name": "x", "arguments": {', "invalid JSON"),
    ('<tool_call>{"name": 1}</tool_call>', "unknown tool"),
    ('{"name": "definitely_not_a_tool", "arguments": {}}', "unknown tool"),
    ('{"name": "TOOL", "arguments": [1, 2]}', "must be an object"),
    ('{"name": "TOOL", "arguments": {"no_such_argument": 1}}', "has no argument"),
    ('<tool_call>{"name": "TOOL", "arguments": {}}</tool_call><tool_call>{"name": "TOOL"}</tool_call>', "exactly one"),
    ("[" * 100_000, "tool call"),
    ('{"name": "' + "x" * 1_000_000 + '", "arguments": {}}', "unknown tool"),
    ("", "no tool call"),
]


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize(("action", "expect"), MALFORMED, ids=[m[1] + str(i) for i, m in enumerate(MALFORMED)])
def test_malformed_actions_become_error_observations(env_id, action, expect):
    env = gymnasium.make(env_id)
    env.reset(seed=0, options={"task_seed": 0})
    first = next(iter(env.unwrapped.tool_specs()))
    obs, reward, terminated, truncated, info = env.step(action.replace("TOOL", first))
    assert obs.startswith("error: ") and expect in obs, obs[:300]
    assert reward == 0.0 and not terminated and info["invalid_action"] and info["tool"] is None
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", IDS)
def test_wrong_argument_types_name_the_argument_and_the_type(env_id):
    env = gymnasium.make(env_id)
    env.reset(seed=0, options={"task_seed": 0})
    for spec in env.unwrapped.tool_specs().values():
        for param in spec.params:
            wrong = {"string": 12345, "integer": "twelve", "number": "many", "array": "not a list",
                     "boolean": "yes", "object": 3}.get(param.schema.get("type"))
            if wrong is None:
                continue
            right = {"string": "x", "integer": 1, "number": 1.0, "array": [], "boolean": True, "object": {}}
            args = {p.name: right.get(p.schema.get("type"), "x") for p in spec.params if p.required}
            args[param.name] = wrong
            obs, *_, info = env.step(json.dumps({"name": spec.name, "arguments": args}))
            assert info["invalid_action"] and repr(param.name) in obs, (spec.name, obs)


@pytest.mark.parametrize("env_id", IDS)
def test_tool_schemas_equal_transformers_get_json_schema(env_id):
    get_json_schema = pytest.importorskip("transformers.utils").get_json_schema
    cls = gymnasium.spec(env_id).make().unwrapped
    for name, method in cls.tool_methods().items():
        assert cls.tool_specs()[name].schema == get_json_schema(method), name
    names = [s["function"]["name"] for s in cls.tool_schemas()]
    assert "reset" not in names and "get_reward" not in names  # TRL reserves these on environment_factory classes
    assert sum(s.finish for s in cls.tool_specs().values()) == 1


@pytest.mark.parametrize("env_id", IDS)
def test_reset_info_and_validation(env_id):
    env = gymnasium.make(env_id, faults=all_faults(env_id, 1.0, kinds=("seeded_error",)))
    _, info = env.reset(seed=1, options={"task_seed": 2, "split": "heldout"})
    assert {"tools", "task_seed", "split", "template", "required_steps", "max_turns", "faults", "recovery"} <= set(info)
    assert info["task_seed"] == 2 and info["split"] == "heldout" and info["max_turns"] >= info["required_steps"]
    with pytest.raises(ValueError, match="split"):
        env.reset(options={"split": "test"})
    with pytest.raises(ValueError, match="task_seed"):
        env.reset(options={"task_seed": -1})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"task": 1})
    with pytest.raises(ValueError, match="list of action strings"):
        env.reset(options={"actions": "not a list"})
    with pytest.raises(ValueError, match="did you mean 'stale_read'"):
        gymnasium.make(env_id, faults={"stale_reads": 0.1})
    with pytest.raises(ValueError, match="between 0 and 1"):
        gymnasium.make(env_id, faults={"rate_limit": 1.5})


class CheckingReference(ReferencePolicy):
    """The reference, but it reads back each of its writes once (as a careful agent or a scaffold would), which is
    where a stale read shows: the reference alone seldom re-reads what it changed."""

    def reset(self, seed=None):
        self.pending = None

    def act(self, env, observation):
        core = env.unwrapped
        if self.pending is not None:
            call, self.pending = self.pending, None
            return call.to_json()
        call = core.reference_call()
        if core.tool_specs()[call.name].write and not core.tool_specs()[call.name].finish:
            self.pending = core.read_back(call)
        return call.to_json()


@pytest.mark.parametrize(("env_id", "kind"), [(i, k) for i in IDS for k in KINDS[i]])
def test_each_fault_kind_at_rate_one_fires_and_the_reference_still_succeeds(env_id, kind):
    env = gymnasium.make(env_id, faults=FaultConfig.only(kind, 1.0))
    policy = CheckingReference() if kind == "stale_read" else ReferencePolicy()
    fired = 0
    for k in range(20):
        _, info = rollout(env, policy, seed=k, task_seed=k)
        assert info["success"], (k, info["faults"], info["reasons"])
        assert all(r["handled"] for r in info["recovery"]), (k, info["recovery"])  # the reference recovers from all
        fired += any(f["kind"] == kind for f in info["faults"])
    assert fired >= 10, f"{kind} fired in {fired} of 20 episodes"


@pytest.mark.parametrize("env_id", IDS)
def test_a_branch_start_continues_like_the_episode_it_replays(env_id):
    """``reset(options={"actions": ...})`` replays the first actions; the branch then is the original episode."""
    faults = all_faults(env_id, 0.3)
    for k in range(3):
        env = gymnasium.make(env_id, faults=faults)
        steps, _ = rollout(env, NoisyReferencePolicy(0.3, seed=k, near_miss=0.5), seed=k, task_seed=k)
        actions = [s[0] for s in steps[1:]]
        cut = max(1, len(actions) // 2)
        env.reset(seed=k, options={"task_seed": k})
        for action in actions[:cut]:
            env.step(action)
        branch = gymnasium.make(env_id, faults=faults)
        obs, info = branch.reset(seed=k, options={"task_seed": k, "actions": actions[:cut]})
        assert obs == steps[cut][1] and info["prompt"] == steps[0][1] and len(info["history"]) == cut
        for action in actions[cut:]:
            assert branch.unwrapped.reference_action() == env.unwrapped.reference_action()
            assert branch.step(action) == env.step(action)
    with pytest.raises(ValueError, match="ends the episode"):
        gymnasium.make(env_id).reset(seed=0, options={"task_seed": 0, "actions": [actions[-1]] * 2 + actions})


@pytest.mark.parametrize("env_id", IDS)
def test_every_step_says_its_outcome_and_the_recovery_so_far(env_id):
    env = gymnasium.make(env_id, faults=all_faults(env_id, 0.3))
    seen = set()
    for k in range(4):
        policy = NoisyReferencePolicy(0.5, seed=k, near_miss=0.5)
        obs, info = env.reset(seed=k, options={"task_seed": k})
        count = len(info["recovery"])
        while True:
            obs, reward, terminated, truncated, info = env.step(policy.act(env, obs))
            seen.add(info["outcome"])
            assert info["outcome"] in OUTCOMES and (info["outcome"] == "fault") == (info["fault"] is not None)
            assert (info["outcome"] == "invalid") == info["invalid_action"]
            assert len(info["recovery"]) >= count  # cumulative
            count = len(info["recovery"])
            if terminated or truncated:
                break
        for r in info["recovery"]:
            assert set(r) == {"kind", "turn", "tool", "handled", "turns", "detail"} and r["kind"] in RECOVERY_KINDS
            assert isinstance(r["handled"], bool) and (r["turns"] is None) != r["handled"], r
    assert {"ok", "fault"} <= seen


def test_shipped_environments_support_every_fault_kind():
    assert KINDS["recoverygym/SupportDesk-v0"] == KINDS["recoverygym/Spreadsheet-v0"] == FAULT_KINDS


def test_envs_imports_without_torch():
    code = ("import sys, gymnasium, envs; from envs.policies import ReferencePolicy\n"
            "for i in envs.ENVIRONMENTS:\n"
            "    e = gymnasium.make(i); e.reset(seed=0); e.step(e.unwrapped.reference_action())\n"
            "bad = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fault_config_constructors():
    assert FaultConfig.all(0.1).active == FAULT_KINDS
    assert FaultConfig.only("write_timeout", 0.5).active == ("write_timeout",)
    assert FaultConfig.from_dict({"rate_limit": 1}).rate_limit == 1.0
    assert FaultConfig.from_dict(None) == FaultConfig()
    with pytest.raises(ValueError):
        FaultConfig(transient_error=True)
    with pytest.raises(ValueError):
        FaultConfig(transient_error=float("nan"))
    with pytest.raises(TypeError):
        FaultConfig.from_dict([("rate_limit", 0.1)])
    assert np.isclose(FaultConfig.from_dict(FaultConfig.all(0.25)).seeded_error, 0.25)
