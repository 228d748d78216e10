"""The TRL adapter exposes exactly each environment's tools and scores rollouts with the env's checker."""

import inspect
import json

import gymnasium
import pytest
from transformers.utils import get_json_schema
from transformers.utils.chat_template_utils import render_jinja_template

import envs  # noqa: F401  (registers the ids)
from training.adapter import make_environment_factory
from training.datasets import grpo_dataset, sft_dataset
from training.models import tool_chat_template

ENV_IDS = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))


def trl_tools(instance) -> dict:
    """The tools TRL's GRPOTrainer takes from an environment instance, by the rule it uses."""
    members = inspect.getmembers(type(instance), predicate=inspect.isfunction)
    return {n: getattr(instance, n) for n, _ in members if n not in ("reset", "get_reward") and not n.startswith("_")}


def row(task_seed=0, split="train", seed=0, faults=None) -> dict:
    return grpo_dataset([task_seed], split=split, faults=faults, seed=seed)[0]


def test_there_are_environments_to_train_on():
    assert len(ENV_IDS) >= 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_tools_have_the_environments_names_and_schemas(env_id):
    env = gymnasium.make(env_id)
    expected = {s["function"]["name"]: s for s in env.unwrapped.tool_schemas()}
    tools = trl_tools(make_environment_factory(env_id)())
    assert set(tools) == set(expected) == set(env.unwrapped.tool_methods())
    for name, method in tools.items():
        assert get_json_schema(method) == expected[name], name


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sft_and_grpo_prompts_render_identically(env_id):
    """Demonstrations must show the model the same system prompt (tool list, in TRL's order) as GRPO rollouts."""
    instance = make_environment_factory(env_id)()
    prompt = instance.reset(**row(3))
    demo = sft_dataset(env_id, [3], noise=0.0, only_successful=False)[0]
    assert demo["messages"][0] == {"role": "user", "content": prompt}
    template = tool_chat_template()
    grpo_text = render_jinja_template(
        [[{"role": "user", "content": prompt}]], tools=list(trl_tools(instance).values()), chat_template=template
    )[0][0]
    sft_text = render_jinja_template([[demo["messages"][0]]], tools=json.loads(demo["tools"]), chat_template=template)[
        0
    ][0]
    assert grpo_text == sft_text


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_takes_the_row_and_reproduces_the_task(env_id):
    factory = make_environment_factory(env_id)
    a, b = factory(), factory()
    assert a.reset(**row(5)) == b.reset(**row(5))
    assert a.reset(**row(5)) != a.reset(**row(6))
    assert a.reset(**row(5, split="train")) != a.reset(**row(5, split="heldout"))


def run_reference(instance) -> int:
    """Drive the adapter with the env's privileged reference policy; returns the number of tool calls."""
    calls = 0
    while instance._episode.done is None and calls < 100:
        action = json.loads(instance._env.unwrapped.reference_action())
        getattr(instance, action["name"])(**action["arguments"])
        calls += 1
    return calls


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("task_seed", [0, 1, 2])
def test_get_reward_is_the_checker_score(env_id, task_seed):
    instance = make_environment_factory(env_id)()
    instance.reset(**row(task_seed))
    assert instance.get_reward() == instance._env.unwrapped.check().score == 0.0  # nothing done yet
    assert run_reference(instance) > 0
    assert instance.get_reward() == instance._env.unwrapped.check().score == 1.0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_a_reused_instance_starts_clean(env_id):
    instance = make_environment_factory(env_id)()
    instance.reset(**row(1))
    run_reference(instance)
    instance.reset(**row(1))
    assert instance._episode.calls == [] and instance._episode.done is None
    assert instance.get_reward() == 0.0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_tool_errors_are_the_environments_messages(env_id):
    instance = make_environment_factory(env_id)()
    instance.reset(**row(0))
    name = next(iter(trl_tools(instance)))
    observation = getattr(instance, name)(no_such_argument="x")
    env = gymnasium.make(env_id)
    env.reset(seed=0, options={"task_seed": 0, "split": "train"})
    expected, *_ = env.step(json.dumps({"name": name, "arguments": {"no_such_argument": "x"}}))
    assert observation == expected
    assert "no_such_argument" in observation


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_no_tool_runs_after_the_episode_ended(env_id):
    instance = make_environment_factory(env_id)()
    instance.reset(**row(0))
    run_reference(instance)
    score, calls = instance.get_reward(), len(instance._episode.calls)
    name = next(iter(trl_tools(instance)))
    assert "episode is over" in getattr(instance, name)()
    assert len(instance._episode.calls) == calls and instance.get_reward() == score


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_fault_settings_come_from_the_row(env_id):
    kinds = list(gymnasium.make(env_id).unwrapped.fault_kinds)
    per_call = [k for k in ("transient_error", "rate_limit") if k in kinds]
    if not per_call:
        pytest.skip(f"{env_id} has no per-call fault")
    instance = make_environment_factory(env_id)()
    instance.reset(**row(0, faults={per_call[0]: 1.0}))
    action = json.loads(instance._env.unwrapped.reference_action())
    getattr(instance, action["name"])(**action["arguments"])
    assert instance._episode.info["faults"], "a fault at rate 1 must fire on the first call"
    instance.reset(**row(0))
    getattr(instance, action["name"])(**action["arguments"])
    assert not instance._episode.info["faults"]
