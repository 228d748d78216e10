"""Hostile input against every registered environment, both splits, without faults and with every fault kind.

A trainer feeds ``step()`` millions of model-written actions, so the contract must hold for any text: ``step()``
never raises, every observation lies in the observation space, the reward is finite and in [0, 1] (0 until the end),
``info`` is strict JSON, ``terminated``/``truncated`` are bools, an action that is not one well-formed call is refused
as an invalid action, a refused or read-only call changes nothing, the same seed and actions give the same
trajectory, copies continue exactly as the original, and the reference still solves a task that hostile steps did
not change. Actions come from ``HostileActions`` in scripts/bench_hostile.py (the benchmark that reports the slowest
steps uses the same generator): malformed JSON, every argument of every tool with wrong types, huge and non-finite
numbers, 1-10 MB strings, deep nesting, control characters and non-ASCII, several calls in one action, trailing
text, valid calls with hostile values, mixed with the reference's own actions so that deep states are reached.

The default profile is small and derandomized (the same examples on every run); the long one is marked ``fuzz``::

    python -m pytest tests/test_fuzz.py -q                                   # default profile
    RECOVERYGYM_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py -m fuzz -q   # long profile, random seed
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import sys
from pathlib import Path

import gymnasium
import pytest
from gymnasium.envs.registration import load_env_creator
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st

import envs
from envs.core import SPLITS, FaultConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_hostile import (  # noqa: E402
    BIG,
    FORMULA_TEMPLATES,
    NUMBER_TEXTS,
    ODD_STRINGS,
    UNPARSEABLE,
    Frag,
    Hostile,
    HostileActions,
    _decoded,
    _number,
    fits,
    frag,
)

IDS = list(envs.ENVIRONMENTS)
# As in tests/test_contract.py: hold your own environments to this too, e.g.
#   RECOVERYGYM_CONTRACT_ENVS="mylab/Pantry-v0=pantry:PantryEnv" python -m pytest tests/test_fuzz.py
for _extra in filter(None, os.environ.get("RECOVERYGYM_CONTRACT_ENVS", "").split(",")):
    _id, _, _entry_point = _extra.partition("=")
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry_point)
    IDS.append(_id)
KINDS = {i: load_env_creator(gymnasium.spec(i).entry_point).fault_kinds for i in IDS}

# The default profile does not shrink a failure (that can take minutes per test): the failing example's notes list
# every action it took. RECOVERYGYM_FUZZ_SHRINK=1 shrinks it; the long profile always does.
_PHASES = tuple(Phase) if os.environ.get("RECOVERYGYM_FUZZ_SHRINK") else (Phase.explicit, Phase.generate)
settings.register_profile("fuzz-default", max_examples=30, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck), print_blob=False, phases=_PHASES)
settings.register_profile("fuzz-long", max_examples=int(os.environ.get("RECOVERYGYM_FUZZ_EXAMPLES", "500")),
                          deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)
DEFAULT, LONG = settings.get_profile("fuzz-default"), settings.get_profile("fuzz-long")


def faults_for(env_id: str, case: str) -> FaultConfig | None:
    """'none', 'all' (every kind the environment declares, at 0.3) or one kind alone at 0.6."""
    if case == "none":
        return None
    if case == "all":
        return FaultConfig(**{k: 0.3 for k in KINDS[env_id]})
    return FaultConfig.only(case, 0.6)


MAIN = [(i, s, c) for i in IDS for s in SPLITS for c in ("none", "all")]
EACH_KIND = [(i, k) for i in IDS for k in KINDS[i]]


class HypothesisDraw:
    """``bench_hostile.Draw`` backed by Hypothesis (a failing sequence of actions shrinks to a short one); its
    choices are not printed one by one: the notes of a failure list the actions instead."""

    def __init__(self, data):
        self.random = data.draw(st.randoms(use_true_random=False))

    def integer(self, lo: int, hi: int) -> int:
        return self.random.randint(lo, hi)


def fingerprint(env) -> bytes:
    """What a step may change, as bytes (the state pickles without caches: formulas as text)."""
    return pickle.dumps(env.unwrapped.state)


def claim(hostile: Hostile) -> bool | None:
    """Whether the parser must refuse the action: the generator's claim, kept only for ordinary values (an
    environment may refuse NaN, Infinity or a 400-digit integer as text it cannot read, or accept it)."""
    if hostile.invalid is False and any(x in hostile.text for x in ("NaN", "Infinity", "e999", "9" * 300, "0" * 300)):
        return None
    return hostile.invalid


def checked_step(env, hostile: Hostile, spec_of) -> tuple:
    """``env.step`` with every per-step property checked; returns the step's 5-tuple."""
    if currently_in_test_context():  # shown with a failure, and by --hypothesis-show-statistics
        note(f"turn {env.unwrapped.turn + 1}: {hostile.kind}: {hostile.summary()}")
        event(hostile.kind)
    before = fingerprint(env)
    try:
        result = env.step(hostile.text)
    except Exception as err:
        raise AssertionError(f"step() raised {type(err).__name__} on a {hostile.kind} action "
                             f"{hostile.summary()}: {err}"[:2_000]) from err
    obs, reward, terminated, truncated, info = result
    assert type(terminated) is bool and type(truncated) is bool, (type(terminated), type(truncated))
    assert isinstance(obs, str) and env.observation_space.contains(obs), summary_of(obs)
    assert type(reward) is float and math.isfinite(reward) and 0.0 <= reward <= 1.0, reward
    try:
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"info is not strict JSON ({err}): {info!r}"[:2_000]) from err
    if terminated or truncated:
        assert reward == info["score"], (reward, info["score"])
    else:
        assert reward == 0.0, reward
    expect = claim(hostile)
    if expect is True:
        assert info["invalid_action"] and info.get("outcome", "invalid") == "invalid", (hostile.summary(),
                                                                                       summary_of(obs))
    elif expect is False:
        assert not info["invalid_action"], (hostile.summary(), summary_of(obs))
    tool = info["tool"]
    refused = info["outcome"] in ("invalid", "rejected") if "outcome" in info else obs.startswith("error: ")
    if tool is None or not spec_of[tool].write or refused:
        assert fingerprint(env) == before, f"a refused or read-only call changed the state: {hostile.summary()}"
    return result


def ordinary(value) -> bool:
    """No NaN, Infinity, integer of 300 digits or nesting past 16 levels anywhere (an environment may refuse those
    while it parses the action, before it looks at the arguments)."""
    stack = [(value, 0)]
    while stack:  # not recursive: values nest 990 deep
        v, depth = stack.pop()
        if isinstance(v, float) and not math.isfinite(v) or isinstance(v, int) and abs(v) >= 10**300 or depth > 16:
            return False
        items = v if isinstance(v, list) else v.values() if isinstance(v, dict) else ()
        stack.extend((item, depth + 1) for item in items)
    return True


def summary_of(obs: str) -> str:
    return obs[:300] + ("..." if len(obs) > 300 else "")


def info_text(info: dict) -> str:
    return json.dumps(info, sort_keys=True, default=repr)


def play(env_id: str, faults: FaultConfig | None, split: str, draw, steps: int, kinds=None) -> list:
    """Reset, then ``steps`` hostile actions (a new episode after each end); return the trajectory."""
    env = gymnasium.make(env_id, faults=faults)
    specs = env.unwrapped.tool_specs()
    trajectory = []

    def reset():
        seed, task_seed = draw.integer(0, 2**16), draw.integer(0, 5_000)
        obs, info = env.reset(seed=seed, options={"task_seed": task_seed, "split": split})
        assert env.observation_space.contains(obs)
        json.dumps(info, allow_nan=False)
        trajectory.append(("reset", seed, task_seed, obs, info_text(info)))
        actions = HostileActions(env.unwrapped)
        actions.learn(obs)
        return actions

    actions = reset()
    for _ in range(steps):
        hostile = actions.action(draw, kinds and kinds[draw.integer(0, len(kinds) - 1)])
        obs, reward, terminated, truncated, info = checked_step(env, hostile, specs)
        trajectory.append((hostile.text, obs, reward, terminated, truncated, info_text(info)))
        actions.learn(obs)
        if terminated or truncated:
            actions = reset()
    return trajectory


def replay(env_id: str, faults: FaultConfig | None, split: str, trajectory: list) -> list:
    env = gymnasium.make(env_id, faults=faults)
    again = []
    for entry in trajectory:
        if entry[0] == "reset":
            _, seed, task_seed, *_ = entry
            obs, info = env.reset(seed=seed, options={"task_seed": task_seed, "split": split})
            again.append(("reset", seed, task_seed, obs, info_text(info)))
        else:
            obs, reward, terminated, truncated, info = env.step(entry[0])
            again.append((entry[0], obs, reward, terminated, truncated, info_text(info)))
    return again


def hostile_session(env_id: str, split: str, case: str, data) -> None:
    draw = HypothesisDraw(data)
    faults = faults_for(env_id, case)
    trajectory = play(env_id, faults, split, draw, steps=draw.integer(1, 12))
    again = replay(env_id, faults, split, trajectory)
    for i, (a, b) in enumerate(zip(trajectory, again, strict=True)):
        assert a == b, f"replaying the same seed and actions diverged at event {i}: {str(a)[:300]} != {str(b)[:300]}"
    branch_start_matches(env_id, faults, split, trajectory)


def branch_start_matches(env_id: str, faults: FaultConfig | None, split: str, trajectory: list) -> None:
    """``reset(options={"actions": ...})`` (a branch start, where the core supports one) lands where stepping the
    same hostile actions did: the same observations, the same faults."""
    _, seed, task_seed, *_ = trajectory[0]
    steps = []
    for entry in trajectory[1:]:
        if entry[0] == "reset" or entry[3] or entry[4]:
            break
        steps.append(entry)
    env = gymnasium.make(env_id, faults=faults)
    try:
        obs, info = env.reset(seed=seed, options={"task_seed": task_seed, "split": split,
                                                  "actions": [e[0] for e in steps]})
    except ValueError as err:
        if "actions" in str(err) and "unknown reset option" in str(err):
            return  # this environment has no branch starts
        raise
    assert obs == (steps[-1][1] if steps else trajectory[0][3])
    assert [h["observation"] for h in info.get("history", [])] == [e[1] for e in steps]


# -- the properties, default profile (and the same under the long profile, marked fuzz) ----------------------------


@pytest.mark.parametrize(("env_id", "split", "case"), MAIN)
@settings(DEFAULT)
@given(data=st.data())
def test_hostile_steps_keep_the_contract_and_replay_identically(env_id, split, case, data):
    hostile_session(env_id, split, case, data)


@pytest.mark.parametrize(("env_id", "kind"), EACH_KIND)
@settings(DEFAULT, max_examples=10)
@given(data=st.data())
def test_hostile_steps_under_each_fault_kind(env_id, kind, data):
    hostile_session(env_id, data.draw(st.sampled_from(list(SPLITS))), kind, data)


def reference_after_hostile_steps(env_id: str, case: str, data) -> None:
    """Hostile steps mixed with the reference's; if none of the hostile ones changed the state, the reference
    must still solve the task (refused calls leave its plan and the state as they were)."""
    draw = HypothesisDraw(data)
    split = data.draw(st.sampled_from(list(SPLITS)))
    env = gymnasium.make(env_id, faults=faults_for(env_id, case), max_turns=400)
    specs = env.unwrapped.tool_specs()
    obs, _ = env.reset(seed=draw.integer(0, 2**16), options={"task_seed": draw.integer(0, 5_000), "split": split})
    actions = HostileActions(env.unwrapped)
    actions.learn(obs)
    changed = False
    kinds = ("reference", "reference_hostile", "call", "wrong_type", "malformed", "multi", "trailing", "unknown",
             "string_arguments")
    terminated = truncated = False
    for _ in range(draw.integer(1, 12)):
        hostile = actions.action(draw, kinds[draw.integer(0, len(kinds) - 1)])
        before = fingerprint(env)
        fired = len(env.unwrapped.fault_log)
        obs, reward, terminated, truncated, info = checked_step(env, hostile, specs)
        edited = any(f["kind"] == "concurrent_edit" for f in info["faults"][fired:])
        changed |= hostile.kind != "reference" and not edited and fingerprint(env) != before
        actions.learn(obs)
        if terminated or truncated:
            break
    while not (terminated or truncated):
        hostile = Hostile("reference", env.unwrapped.reference_action(), False)
        obs, reward, terminated, truncated, info = checked_step(env, hostile, specs)
    if not changed:
        assert info["success"], (info["reasons"], info["faults"])


@pytest.mark.parametrize(("env_id", "case"), [(i, c) for i in IDS for c in ("none", "all")])
@settings(DEFAULT)
@given(data=st.data())
def test_reference_solves_the_task_after_hostile_steps_that_changed_nothing(env_id, case, data):
    reference_after_hostile_steps(env_id, case, data)


def copies_continue(env_id: str, data) -> None:
    """``copy.deepcopy`` and pickling mid-episode (after hostile steps) give envs that continue exactly as the
    original: the same answers to the same actions, the same reference actions, the same final reward."""
    draw = HypothesisDraw(data)
    env = gymnasium.make(env_id, faults=faults_for(env_id, "all"), max_turns=400).unwrapped
    specs = env.tool_specs()
    obs, _ = env.reset(seed=draw.integer(0, 2**16), options={"task_seed": draw.integer(0, 5_000),
                                                               "split": data.draw(st.sampled_from(list(SPLITS)))})
    actions = HostileActions(env)
    actions.learn(obs)
    for _ in range(draw.integer(0, 8)):
        kind = ("reference", "reference_hostile", "call", "malformed")[draw.integer(0, 3)]
        obs, _, terminated, truncated, _ = checked_step(env, actions.action(draw, kind), specs)
        actions.learn(obs)
        if terminated or truncated:
            return
    clones = {"deepcopy": copy.deepcopy(env), "pickle": pickle.loads(pickle.dumps(env))}
    for turn in range(400):
        kind = "reference" if turn >= 8 else ("reference", "reference_hostile", "call")[draw.integer(0, 2)]
        reference = env.reference_action()
        for how, clone in clones.items():
            assert clone.reference_action() == reference, (how, turn, reference, clone.reference_action())
        hostile = actions.action(draw, kind)
        result = checked_step(env, hostile, specs)
        for how, clone in clones.items():
            assert clone.step(hostile.text) == result, (how, turn, hostile.summary())
        if result[2] or result[3]:
            break
    assert result[2], "the reference did not finish within 400 turns"


@pytest.mark.parametrize("env_id", IDS)
@settings(DEFAULT)
@given(data=st.data())
def test_copies_made_mid_episode_continue_like_the_original(env_id, data):
    copies_continue(env_id, data)


@pytest.mark.fuzz
@pytest.mark.parametrize(("env_id", "split", "case"), MAIN)
@settings(LONG)
@given(data=st.data())
def test_long_hostile_steps_keep_the_contract_and_replay_identically(env_id, split, case, data):
    hostile_session(env_id, split, case, data)


@pytest.mark.fuzz
@pytest.mark.parametrize(("env_id", "kind"), EACH_KIND)
@settings(LONG)
@given(data=st.data())
def test_long_hostile_steps_under_each_fault_kind(env_id, kind, data):
    hostile_session(env_id, data.draw(st.sampled_from(list(SPLITS))), kind, data)


@pytest.mark.fuzz
@pytest.mark.parametrize(("env_id", "case"), [(i, c) for i in IDS for c in ("none", "all")])
@settings(LONG)
@given(data=st.data())
def test_long_reference_solves_the_task_after_hostile_steps_that_changed_nothing(env_id, case, data):
    reference_after_hostile_steps(env_id, case, data)


@pytest.mark.fuzz
@pytest.mark.parametrize("env_id", IDS)
@settings(LONG)
@given(data=st.data())
def test_long_copies_made_mid_episode_continue_like_the_original(env_id, data):
    copies_continue(env_id, data)


# -- every argument of every tool, with every hostile value of the catalogue (no randomness) ----------------------


def catalogue() -> list[Frag]:
    """Every hostile value the generator knows, once each: wrong types, numbers, odd strings, formulas, megabytes,
    deep nesting and hostile lists (for list arguments, as items too)."""
    values = [frag(v) for v in (12345, "twelve", True, None, [], {}, ["x", 1, None], {"a": [1]}, 0.5, [[[]]])]
    values += [_number(t) for t in NUMBER_TEXTS]
    values += [frag(s, ensure_ascii=False) for s in ODD_STRINGS] + [frag(s) for s in ODD_STRINGS if not s.isascii()]
    values += [frag(f) for f in FORMULA_TEMPLATES]
    values += [Frag('"' + "x" * BIG[0] + '"', "x"), Frag('"' + "=" * BIG[-1] + '"', "=")]  # 1 MB, 10 MB
    for depth in (2, 500, 990, 1_500, 100_000):
        for opener, closer in (("[", "]"), ('{"a":', "}")):
            text = opener * depth + "1" + closer * depth
            values.append(Frag(text, _decoded(text)))
    scalars = [v for v in values if len(v.text) < 50_000]
    values += [Frag("[" + ", ".join(v.text for v in scalars) + "]", [v.value for v in scalars]),
               Frag("[[" + ", ".join(v.text for v in scalars) + "]]", [[v.value for v in scalars]]),
               Frag("[" + "[1], " * 5_001 + "[1]]", [[1]] * 5_002)]
    return values


@pytest.mark.parametrize("env_id", IDS)
def test_every_argument_of_every_tool_with_every_hostile_value(env_id):
    """Each argument in turn gets each value, the others plausible; wrong types are refused naming the argument.
    One episode per argument, the splits in turn (info grows with the episode); the checker then grades the
    battered state."""
    env = gymnasium.make(env_id, max_turns=10**6)
    specs = env.unwrapped.tool_specs()

    class First:  # the pool's first plausible value of each type
        def integer(self, lo, hi):
            return lo

    values = [(v, ordinary(v.value) and "tool_call>" not in v.text) for v in catalogue()]
    params = [(spec, param) for spec in specs.values() for param in spec.params]
    for k, (spec, param) in enumerate(params):
        obs, _ = env.reset(seed=k, options={"task_seed": k, "split": list(SPLITS)[k % len(SPLITS)]})
        actions = HostileActions(env.unwrapped)
        actions.pool.learn(env.unwrapped.reference_call().arguments)  # the first plausible values: the reference's
        actions.learn(obs)
        for value, plain in values:
            if len(value.text) > BIG[0] + 2 and param.schema.get("type") != "string":
                continue  # 10 MB only where a string is due: elsewhere 1 MB is refused the same way
            args = {p.name: actions.pool.plausible(First(), p.schema) for p in spec.params if p.required}
            args[param.name] = value
            body = ", ".join(f"{json.dumps(k)}: {v.text}" for k, v in args.items())
            wrong = value.value is not UNPARSEABLE and not fits(param.schema, value.value)
            hostile = Hostile("catalogue", f'{{"name": {json.dumps(spec.name)}, "arguments": {{{body}}}}}',
                              True if wrong or value.value is UNPARSEABLE else None)
            obs, *_ = checked_step(env, hostile, specs)
            if wrong and plain:
                assert repr(param.name) in obs, (spec.name, param.name, value.text[:80], summary_of(obs))
        result = env.unwrapped.check()
        assert math.isfinite(result.score) and 0.0 <= result.score <= 1.0, (spec.name, param.name, result)
        json.dumps(result.reasons, allow_nan=False)


@pytest.mark.parametrize("env_id", IDS)
def test_tool_call_tags_inside_a_string_argument_stay_in_the_value(env_id):
    """A call whose text mentions the tags (a reply quoting them, a cell holding them) is still that call."""
    env = gymnasium.make(env_id)
    env.reset(seed=0, options={"task_seed": 0})
    spec = next(s for s in env.unwrapped.tool_specs().values()
                if any(p.required and p.schema.get("type") == "string" for p in s.params))
    args = {p.name: "x" for p in spec.params if p.required}
    args[next(p.name for p in spec.params if p.required and p.schema.get("type") == "string")] = "a </tool_call> b"
    call = json.dumps({"name": spec.name, "arguments": args})
    for text in (call, f"<tool_call>{call}</tool_call>", call.replace("</tool_call>", "<tool_call>")):
        obs, *_, info = env.step(text)
        assert not info["invalid_action"], (text, obs)
