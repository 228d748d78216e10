"""SupportDesk-v0 through the Gymnasium API: every tool's error paths, malformed actions, prompts and tool schemas."""

from __future__ import annotations

import json

import gymnasium
import pytest

try:
    from envs.core import FaultConfig, ToolEnv  # noqa: F401
except ImportError:  # envs/core/__init__.py has not landed yet: these tests need the Gymnasium-level env
    pytest.skip("envs.core (ToolEnv, FaultConfig) is not available yet", allow_module_level=True)

import envs  # noqa: E402,F401  (registers the environments)
from envs.support.tasks import SupportTask  # noqa: E402

ENV_ID = "recoverygym/SupportDesk-v0"


def reset_to(template: str, split: str = "train", **make) -> gymnasium.Env:
    """An env reset to the first task of ``split`` that uses ``template``."""
    env = gymnasium.make(ENV_ID, **make)
    for k in range(3000):
        env.reset(seed=0, options={"task_seed": k, "split": split})
        if env.unwrapped.task.template == template:
            return env
    raise AssertionError(f"no {template} task in 3000 seeds")


def act(env, name: str, **arguments) -> str:
    obs, _, _, _, _ = env.step(json.dumps({"name": name, "arguments": arguments}))
    return obs


def snapshot(env) -> tuple:
    s = env.unwrapped.state
    return (dict(s.status), dict(s.address), dict(s.stock), dict(s.exchanges), len(s.transactions),
            [t.voided for t in s.transactions], list(s.escalations), list(s.replies), set(s.verified))


def _task(env) -> SupportTask:
    return env.unwrapped.task


def _issue_order(env):
    return env.unwrapped.state.world.orders[_task(env).issues[0].order_id]


def _other_order(env):
    t = _task(env)
    return next(o for o in t.world.orders.values() if o.customer_id != t.customer_id)


def _verify(env):
    t = _task(env)
    cust = t.world.customers[t.customer_id]
    act(env, "verify_identity", customer_id=t.customer_id, email=t.email, postal_code=cust.postal_code)


# (template, setup before the call, tool name, arguments from the env, words the error must contain)
ERRORS = [
    ("damaged_refund", None, "find_customer", lambda e: {"email": "nobody@example.com"}, ["no customer", "exact"]),
    ("damaged_refund", None, "lookup_order", lambda e: {"order_id": "O-99"}, ["unknown order 'O-99'", "has orders"]),
    ("damaged_refund", None, "lookup_product", lambda e: {"sku": "ZZ-1"}, ["unknown sku", "lookup_order"]),
    ("damaged_refund", None, "verify_identity",
     lambda e: {"customer_id": "C-0", "email": "x", "postal_code": "1"}, ["unknown customer", "find_customer"]),
    ("damaged_refund", None, "refund_items", lambda e: {"order_id": "O-99", "skus": ["X"]}, ["unknown order"]),
    ("damaged_refund", None, "refund_items", lambda e: {"order_id": _issue_order(e).order_id, "skus": []},
     ["skus is empty"]),
    ("damaged_refund", None, "refund_items", lambda e: {"order_id": _issue_order(e).order_id, "skus": ["NOPE"]},
     ["has no item 'NOPE'", "its items are"]),
    ("partial_refund", None, "refund_items",
     lambda e: {"order_id": _issue_order(e).order_id, "skus": [_issue_order(e).skus[0]] * 2}, ["listed twice"]),
    ("cancel_order", None, "refund_items",
     lambda e: {"order_id": _issue_order(e).order_id, "skus": list(_issue_order(e).skus)}, ["processing", "cancel"]),
    ("damaged_refund", _verify, "refund_items", "twice_full", ["exceeds", "still refundable"]),
    ("damaged_refund", None, "refund_charge", lambda e: {"order_id": _issue_order(e).order_id, "charge_id": "CH-0"},
     ["no charge 'CH-0'", "its charges are"]),
    ("damaged_refund", None, "refund_charge",
     lambda e: {"order_id": _issue_order(e).order_id, "charge_id": _issue_order(e).charges[0].charge_id},
     ["charged once", "refund_items"]),
    ("duplicate_charge", "refund_dup", "refund_charge",
     lambda e: {"order_id": _issue_order(e).order_id, "charge_id": _issue_order(e).charges[0].charge_id},
     ["already refunded"]),
    ("damaged_refund", None, "void_transaction", lambda e: {"transaction_id": "R-9"},
     ["unknown transaction", "none yet"]),
    ("damaged_refund", "refund_and_void", "void_transaction", lambda e: {"transaction_id": "R-1"},
     ["already voided"]),
    ("exchange", None, "exchange_item", lambda e: {"order_id": _issue_order(e).order_id,
                                                   "sku": _task(e).issues[0].skus[0], "new_sku": "XX-1"},
     ["is not another size", "other sizes are"]),
    ("exchange", "exchange_once", "exchange_item", "exchange_args", ["already has an exchange pending"]),
    ("exchange_out_of_stock", None, "exchange_item", "exchange_args", ["out of stock", "in stock"]),
    ("cancel_order", None, "exchange_item",
     lambda e: {"order_id": _issue_order(e).order_id, "sku": _issue_order(e).skus[0], "new_sku": "X"},
     ["status is 'processing'"]),
    ("cancel_shipped", None, "cancel_order", lambda e: {"order_id": _issue_order(e).order_id},
     ["cannot be cancelled", "'shipped'"]),
    ("cancel_shipped", None, "change_shipping_address",
     lambda e: {"order_id": _issue_order(e).order_id, "address": "1 A St, B 12345"}, ["cannot change", "'shipped'"]),
    ("address_change", None, "change_shipping_address", lambda e: {"order_id": _issue_order(e).order_id,
                                                                   "address": "home"},
     ["does not look like an address"]),
    ("late_delivery", None, "issue_store_credit", lambda e: {"customer_id": _task(e).customer_id, "amount": -5.0},
     ["positive number"]),
    ("late_delivery", None, "issue_store_credit", lambda e: {"customer_id": _task(e).customer_id, "amount": 1.005},
     ["two decimals"]),
    ("late_delivery", None, "issue_store_credit", lambda e: {"customer_id": _task(e).customer_id, "amount": 900.0},
     ["exceeds", "limit"]),
    ("late_delivery", None, "issue_store_credit", lambda e: {"customer_id": _task(e).customer_id, "amount": 1e307},
     ["exceeds", "limit"]),
    ("late_delivery", None, "issue_store_credit", lambda e: {"customer_id": _task(e).customer_id, "amount": 1.7e308},
     ["exceeds", "limit"]),
    ("late_delivery", None, "issue_store_credit", lambda e: {"customer_id": "C-0", "amount": 5.0},
     ["unknown customer"]),
    ("refund_over_limit", None, "escalate_to_human", lambda e: {"order_id": _issue_order(e).order_id, "reason": ""},
     ["reason is empty"]),
    ("refund_over_limit", None, "escalate_to_human", lambda e: {"order_id": "O-1", "reason": "too much money"},
     ["unknown order"]),
    ("damaged_refund", None, "reply_to_customer", lambda e: {"message": "  "}, ["message is empty"]),
]


def _prepare(env, setup):
    if setup is None:
        return
    if callable(setup):
        setup(env)
        return
    order = _issue_order(env)
    _verify(env)
    if setup == "refund_dup":
        act(env, "refund_charge", order_id=order.order_id, charge_id=order.charges[1].charge_id)
    elif setup == "refund_and_void":
        act(env, "refund_items", order_id=order.order_id, skus=[order.skus[0]])
        act(env, "void_transaction", transaction_id="R-1")
    elif setup == "exchange_once":
        issue = _task(env).issues[0]
        act(env, "exchange_item", order_id=order.order_id, sku=issue.skus[0], new_sku=issue.new_skus[0])


def _arguments(env, args):
    order = _issue_order(env)
    if args == "twice_full":
        act(env, "refund_items", order_id=order.order_id, skus=list(order.skus))
        return {"order_id": order.order_id, "skus": list(order.skus)}
    if args == "exchange_args":
        issue = _task(env).issues[0]
        return {"order_id": order.order_id, "sku": issue.skus[0], "new_sku": issue.new_skus[0]}
    return args(env)


@pytest.mark.parametrize(("template", "setup", "tool", "args", "words"), ERRORS,
                         ids=[f"{e[2]}-{n}" for n, e in enumerate(ERRORS)])
def test_tool_error_paths_explain_and_change_nothing(template, setup, tool, args, words):
    split = "heldout" if template == "exchange_out_of_stock" else "train"
    env = reset_to(template, split)
    _prepare(env, setup)
    arguments = _arguments(env, args)
    before = snapshot(env)
    obs = act(env, tool, **arguments)
    for word in words:
        assert word in obs, obs
    assert snapshot(env) == before


def test_failed_verification_says_so_and_verifies_nobody():
    env = reset_to("identity_mismatch")
    t = _task(env)
    obs = act(env, "verify_identity", customer_id=t.customer_id, email=t.email, postal_code=t.postal_code)
    assert "verification failed" in obs and "Make no changes" in obs
    assert not env.unwrapped.state.verified


def test_other_customers_order_can_be_read_but_changing_it_scores_zero():
    env = reset_to("other_customer")
    other = _other_order(env)
    assert other.order_id in act(env, "lookup_order", order_id=other.order_id)
    _verify(env)
    if other.status == "processing":
        act(env, "cancel_order", order_id=other.order_id)
    else:
        act(env, "refund_items", order_id=other.order_id, skus=[other.skus[0]])
    _, reward, terminated, _, info = env.step(json.dumps({"name": "close_ticket", "arguments": {}}))
    assert terminated and reward == 0.0 and not info["components"]["no_forbidden_changes"]


@pytest.mark.parametrize("action", [
    "{not json",
    '{"name": "refund_everything", "arguments": {}}',
    '{"name": "refund_items", "arguments": {"order_id": 12, "skus": "X"}}',
    '{"name": "lookup_order", "arguments": {"order": "O-1"}}',
    '{"name": "lookup_order"}',
    '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "O-1"}}</tool_call>' * 2,
    "x" * 1_000_000,
    '{"name": "reply_to_customer", "arguments": {"message": "' + "a" * 1_000_000 + '"}}',
    "",
    "[]",
    '{"name": "issue_store_credit", "arguments": {"customer_id": "C-1", "amount": ' + "9" * 320 + "}}",
    '{"name": "lookup_order", "arguments": {"order_id": ' + "9" * 5000 + "}}",
])
def test_malformed_actions_give_an_error_observation_and_never_raise(action):
    env = reset_to("damaged_refund")
    before = snapshot(env)
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(obs, str) and obs and len(obs) <= 16_000
    assert reward == 0.0 and not terminated
    if action.startswith('{"name": "reply_to_customer"'):  # valid, if long: the reply is kept, bounded
        assert len(env.unwrapped.state.replies[0]) <= 4000
    else:
        assert info["invalid_action"] and snapshot(env) == before


def test_tool_call_wrapper_and_lenient_ids_are_accepted():
    env = reset_to("damaged_refund")
    oid = _issue_order(env).order_id
    call = json.dumps({"name": "lookup_order", "arguments": {"order_id": oid.lower()}})
    obs, *_ = env.step(f"<tool_call>{call}</tool_call>")
    assert obs.startswith(f"order {oid}")


def test_prompt_holds_role_policy_date_and_ticket():
    env = gymnasium.make(ENV_ID)
    prompt, info = env.reset(seed=0, options={"task_seed": 4, "split": "train"})
    task = env.unwrapped.task
    for part in ("support agent", "Policy:", "Today is", task.message, task.email, "void_transaction"):
        assert part in prompt
    assert len(info["tools"]) == 15
    assert info["template"] == task.template and info["required_steps"] == len(env.unwrapped.start_plan)


def test_tool_schemas_match_transformers():
    utils = pytest.importorskip("transformers.utils")
    env = gymnasium.make(ENV_ID).unwrapped
    for name, fn in env.tool_methods().items():
        schema = next(s for s in env.tool_schemas() if s["function"]["name"] == name)
        assert schema == {"type": "function", "function": utils.get_json_schema(fn)["function"]} or \
            schema == utils.get_json_schema(fn)
