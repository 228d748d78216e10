"""SupportDesk-v0's reference policy on many tasks, with and without faults; each fault kind at rate 1.0;
the do-nothing and random floors."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the environments)
from envs.core import FaultConfig
from envs.support.env import SupportDeskEnv

FAULT_KINDS = SupportDeskEnv.fault_kinds

ENV_ID = "recoverygym/SupportDesk-v0"
N_TASKS = 500


def run_reference(env, split: str, k: int, seed: int = 0) -> dict:
    env.reset(seed=seed, options={"task_seed": k, "split": split})
    while True:
        _, reward, terminated, truncated, info = env.step(env.unwrapped.reference_action())
        if terminated or truncated:
            info["reward"] = reward
            return info


@pytest.mark.parametrize("split", ["train", "heldout"])
@pytest.mark.parametrize("kind", [None, *FAULT_KINDS])
def test_reference_solves_500_tasks(split, kind):
    faults = FaultConfig.only(kind, 0.3 if kind not in ("seeded_error",) else 1.0) if kind else None
    if kind == "stale_read":  # the reference seldom re-reads what it changed; a seeded mistake gives reads to hide
        faults = FaultConfig(stale_read=0.5, seeded_error=1.0)
    env = gymnasium.make(ENV_ID, faults=faults)
    failed, fired = [], 0
    for k in range(N_TASKS):
        info = run_reference(env, split, k, seed=k)
        fired += any(f["kind"] == kind for f in info["faults"])
        if not info["success"]:
            failed.append((k, info["reasons"]))
    assert not failed, failed[:3]
    if kind:
        assert fired > N_TASKS // 4, f"{kind} fired in only {fired} episodes"


def _first_call_with_fault(kind: str, split: str = "train"):
    env = gymnasium.make(ENV_ID, faults=FaultConfig.only(kind, 1.0))
    for k in range(200):
        prompt, info = env.reset(seed=k, options={"task_seed": k, "split": split})
        yield env, prompt, info


def test_seeded_error_at_rate_one_shows_the_mistake_and_doing_nothing_scores_zero():
    kinds = set()
    for env, prompt, info in _first_call_with_fault("seeded_error"):
        if env.unwrapped.task.template == "policy_question":
            continue
        fired = [f for f in info["faults"] if f["kind"] == "seeded_error"]
        assert fired, info["faults"]
        kinds.add(fired[0].get("what", fired[0].get("mistake", str(fired[0]))))
        assert "Earlier work on this ticket" in prompt
        s = env.unwrapped.state
        assert [t for t in s.transactions if t.by == "earlier"] or [c for c in s.changes if c.by == "earlier"]
        _, reward, terminated, _, _ = env.step(json.dumps({"name": "close_ticket", "arguments": {}}))
        assert terminated and reward == 0.0
    assert len(kinds) >= 5


def test_every_seeded_mistake_kind_occurs_and_is_undone():
    seen = set()
    env = gymnasium.make(ENV_ID, faults=FaultConfig.only("seeded_error", 1.0))
    for k in range(400):
        info = run_reference(env, "train" if k % 2 else "heldout", k, seed=k)
        assert info["success"], info["reasons"]
        seen |= {str(f) for f in info["faults"]}
    for mistake in ("refund_wrong_order", "refund_whole_order", "double_refund", "wrong_credit", "forbidden_refund",
                    "wrong_address", "unrequested_refund"):
        assert any(mistake in s for s in seen), mistake


def test_concurrent_edit_at_rate_one_keeps_the_goal_and_the_reference_does_not_repeat_it():
    env = gymnasium.make(ENV_ID, faults=FaultConfig.only("concurrent_edit", 1.0))
    colleague = 0
    for k in range(200):
        info = run_reference(env, "train", k, seed=k)
        assert info["success"], info["reasons"]
        s = env.unwrapped.state
        colleague += any(t.by == "colleague" for t in s.transactions) or any(c.by == "colleague" for c in s.changes)
    assert colleague > 50


def test_stale_read_shows_the_state_before_the_latest_write_until_read_again():
    env = gymnasium.make(ENV_ID, faults=FaultConfig.only("stale_read", 1.0))
    for k in range(300):
        env.reset(seed=k, options={"task_seed": k, "split": "train"})
        if env.unwrapped.task.template == "damaged_refund":
            break
    task = env.unwrapped.task
    cust = task.world.customers[task.customer_id]
    issue = task.issues[0]
    env.step(json.dumps({"name": "verify_identity", "arguments": {
        "customer_id": task.customer_id, "email": task.email, "postal_code": cust.postal_code}}))
    refunded, *_ = env.step(json.dumps({"name": "refund_items",
                                        "arguments": {"order_id": issue.order_id, "skus": list(issue.skus)}}))
    lookup = json.dumps({"name": "lookup_order", "arguments": {"order_id": issue.order_id}})
    stale, *_, info = env.step(lookup)
    assert info["faults"][-1]["kind"] == "stale_read" and "refunds:" not in stale, (refunded, stale)
    fresh, *_, info = env.step(lookup)
    assert len(info["faults"]) == 1 and "refunds:" in fresh


@pytest.mark.parametrize("kind", ["transient_error", "rate_limit", "write_timeout"])
def test_per_call_faults_at_rate_one_fire_and_say_so(kind):
    env = gymnasium.make(ENV_ID, faults=FaultConfig.only(kind, 1.0))
    observations = []
    for k in range(20):
        env.reset(seed=k, options={"task_seed": k, "split": "train"})
        for _ in range(8):
            obs, _, terminated, truncated, info = env.step(env.unwrapped.reference_action())
            observations.append(obs)
            if terminated or truncated:
                break
        assert any(f["kind"] == kind for f in info["faults"]), (kind, info["faults"])


def test_write_timeout_blind_retry_double_refunds_and_scores_zero():
    env = gymnasium.make(ENV_ID, faults=FaultConfig.only("write_timeout", 1.0))
    for k in range(300):
        env.reset(seed=k, options={"task_seed": k, "split": "train"})
        task = env.unwrapped.task
        if task.template == "partial_refund":
            order = task.world.orders[task.issues[0].order_id]
            price = sum(task.world.products[sku].price for sku in task.issues[0].skus)
            if 2 * price <= sum(c.amount for c in order.charges):  # a double refund fits under the amount paid
                break
    cust = task.world.customers[task.customer_id]
    issue = task.issues[0]
    call = {"name": "refund_items", "arguments": {"order_id": issue.order_id, "skus": list(issue.skus)}}
    verify = json.dumps({"name": "verify_identity", "arguments": {
        "customer_id": task.customer_id, "email": task.email, "postal_code": cust.postal_code}})
    while task.customer_id not in env.unwrapped.state.verified:
        env.step(verify)
    for _ in range(8):  # retry blindly until two refunds went through
        env.step(json.dumps(call))
        if len(env.unwrapped.state.active("refund")) >= 2:
            break
    assert len(env.unwrapped.state.active("refund")) >= 2
    assert env.unwrapped.check().score == 0.0


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_do_nothing_and_random_policies_score_zero(split):
    env = gymnasium.make(ENV_ID)
    rng = np.random.default_rng(0)
    schemas = None
    for k in range(150):
        _, info = env.reset(seed=k, options={"task_seed": k, "split": split})
        _, reward, terminated, _, _ = env.step(json.dumps({"name": "close_ticket", "arguments": {}}))
        assert terminated and reward == 0.0
        prompt, info = env.reset(seed=k, options={"task_seed": k, "split": split})
        schemas = info["tools"]
        reward = _random_episode(env, prompt, schemas, rng)
        assert reward == 0.0, (k, env.unwrapped.task.template, env.unwrapped.check().reasons)


def _random_episode(env, prompt: str, schemas: list[dict], rng) -> float:
    """Random tool calls whose string arguments are ids seen on screen (like the evaluation RandomPolicy)."""
    import re

    ids = re.compile(r"\b[A-Z]{1,4}-[A-Z0-9]{1,8}\b|[\w.+-]+@[\w-]+\.[\w.]+")
    seen = prompt
    while True:
        words = sorted(set(ids.findall(seen))) or ["x"]
        fn = schemas[int(rng.integers(len(schemas)))]["function"]
        args = {}
        for name, s in fn["parameters"]["properties"].items():
            kind = s.get("type")
            if kind == "number":
                args[name] = float(rng.integers(1, 5000)) / 100
            elif kind == "array":
                args[name] = [words[int(rng.integers(len(words)))]]
            else:
                args[name] = words[int(rng.integers(len(words)))]
        obs, reward, terminated, truncated, _ = env.step(json.dumps({"name": fn["name"], "arguments": args}))
        seen = prompt + obs
        if terminated or truncated:
            return reward
