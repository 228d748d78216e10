"""Scripted mistakes for recovery demonstrations: near misses are the reference's call with one argument wrong."""

import json

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401
from envs.policies import NoisyReferencePolicy, _typo, near_miss_call, random_call

IDS = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))


def _states(env_id, count=12):
    """(env, observation) at every step of reference episodes, the env left at that step."""
    env = gymnasium.make(env_id)
    for k in range(count):
        observation, _ = env.reset(seed=k, options={"task_seed": k, "split": "train"})
        done = False
        while not done:
            yield env, observation
            observation, _, terminated, truncated, _ = env.step(env.unwrapped.reference_action())
            done = terminated or truncated


@pytest.mark.parametrize("env_id", IDS)
def test_near_miss_changes_exactly_one_argument_of_the_reference_call(env_id):
    changed = renamed = 0
    for i, (env, observation) in enumerate(_states(env_id)):
        reference = json.loads(env.unwrapped.reference_action())
        spec = env.unwrapped.tool_specs()[reference["name"]]
        miss = json.loads(near_miss_call(env, observation, np.random.default_rng(i)))
        if spec.finish or not reference["arguments"]:  # nothing to get wrong: a random call instead
            assert miss == json.loads(random_call(env, observation, np.random.default_rng(i)))
            continue
        assert miss["name"] == reference["name"]
        wrong, right = ({(k, json.dumps(v)) for k, v in c["arguments"].items()} for c in (miss, reference))
        assert len(wrong - right) == len(right - wrong) == 1, (reference, miss)  # one argument differs
        renamed += miss["arguments"].keys() != reference["arguments"].keys()
        changed += 1
    assert changed > 20 and 0 < renamed < changed / 2


def test_typo_always_changes_the_text():
    rng = np.random.default_rng(0)
    for text in ["a", "aa", "ab", "O-44191", "ravi68@mail.example.org", "Sales!A1:G11", "zz"] * 50:
        typo = _typo(text, rng)
        assert typo != text and abs(len(typo) - len(text)) <= 1


@pytest.mark.parametrize("env_id", IDS)
def test_noisy_policy_with_near_misses_makes_mistakes_and_mostly_recovers(env_id):
    env = gymnasium.make(env_id)
    policy, solved, rejected = NoisyReferencePolicy(0.3, near_miss=1.0), 0, 0
    for k in range(30):
        policy.reset(seed=k)
        observation, _ = env.reset(seed=k, options={"task_seed": k, "split": "train"})
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy.act(env, observation))
            rejected += observation.startswith("error")
            done = terminated or truncated
        solved += reward >= 1.0
    assert policy.name == "near-miss-reference-0.3"
    assert rejected >= 10 and solved >= 24


@pytest.mark.parametrize("near_miss", [0.0, 0.5])
def test_demonstrations_and_evaluation_run_one_noisy_policy(near_miss):
    """The evaluation's noisy baseline is envs.policies' policy on the batch interface, not a second definition: given
    the same generator it makes the same mistakes at the same steps as the policy the demonstrations use, and both
    have the same default rate and name."""
    from training.evaluation.episode import Episode, Turn
    from training.evaluation.policies import NoisyReferencePolicy as EvalNoisy

    assert EvalNoisy().name == NoisyReferencePolicy().name == "noisy-reference-0.2"
    own, batch = NoisyReferencePolicy(0.4, near_miss=near_miss), EvalNoisy(0.4, near_miss=near_miss)
    env_a, env_b = gymnasium.make("recoverygym/SupportDesk-v0"), gymnasium.make("recoverygym/SupportDesk-v0")
    actions = required = 0
    for k in range(4):
        own.reset(seed=k)
        observation, info = env_a.reset(seed=k, options={"task_seed": k})
        env_b.reset(seed=k, options={"task_seed": k})
        episode = Episode(env=env_b, prompt=observation, info=info, rng=np.random.default_rng(k))
        required += info["required_steps"]
        done = False
        while not done:
            a, b = own.act(env_a, observation), batch.act([episode])[0].text
            assert a == b
            actions += 1
            observation, _, terminated, truncated, _ = env_a.step(a)
            env_b.step(b)
            episode.history.append(Turn(actions, b, observation, None, False, True))
            done = terminated or truncated
    assert actions > required  # it made mistakes (which cost turns) and the two made the same ones
