"""Policy wrappers: best-of-k voting and token cost, scaffolding rules, action canonicalisation."""

import json

import gymnasium
import numpy as np

import envs  # noqa: F401  (registers the ids)
from training.evaluation.episode import (
    Action,
    Episode,
    Turn,
    chat_messages,
    tool_call_key,
)
from training.evaluation.policies import BestOfKPolicy, ScaffoldPolicy

SUPPORT = "recoverygym/SupportDesk-v0"


def _call(name, **arguments):
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


class _Scripted:
    """Plays a fixed list of actions, in order, whatever the episode; records how many it was asked for."""

    name = "fixed"

    def __init__(self, texts, tokens=5):
        self.texts, self.tokens, self.asked = list(texts), tokens, 0

    def act(self, episodes):
        out = []
        for _ in episodes:
            out.append(Action(self.texts[self.asked % len(self.texts)], tokens=self.tokens))
            self.asked += 1
        return out

    def config(self):
        return {"policy": "fixed"}


def _episode(history=()):
    """An episode of task 0 of SupportDesk's held-out split (the scaffold asks the real env what a write is)."""
    env = gymnasium.make(SUPPORT)
    prompt, info = env.reset(seed=0, options={"task_seed": 0, "split": "heldout"})
    return Episode(env=env, prompt=prompt, info=info, rng=np.random.default_rng(0), history=list(history))


def _order_id():
    env = gymnasium.make(SUPPORT)
    env.reset(seed=0, options={"task_seed": 0, "split": "heldout"})
    return sorted(env.unwrapped.state.world.orders)[0]


def _turn(action, observation, tool, invalid=False, scripted=False):
    return Turn(turn=1, action=action, observation=observation, tool=tool, invalid_action=invalid, ok=not invalid,
                scripted=scripted)


def test_tool_call_key_canonicalises_format_and_argument_order():
    a = '<tool_call>{"name": "f", "arguments": {"a": 1, "b": 2}}</tool_call>'
    b = '{"arguments": {"b": 2, "a": 1}, "name": "f"}'
    c = '{"name": "f", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}'
    assert tool_call_key(a) == tool_call_key(b) == tool_call_key(c)
    assert tool_call_key("I think I should call f") is None
    assert tool_call_key('{"arguments": {}}') is None


def test_best_of_k_plays_the_majority_call_and_pays_k_times():
    x, y = _call("refund", order_id="O-1"), _call("get_order", order_id="O-1")
    inner = _Scripted([y, x, "garbage", x, y, y])  # episode 0 gets y,x,garbage (tie y/x -> y first); ep 1: x,y,y
    policy = BestOfKPolicy(inner, k=3)
    actions = policy.act([_episode(), _episode()])
    assert [a.text for a in actions] == [y, y]
    assert [a.tokens for a in actions] == [15, 15]
    assert inner.asked == 6
    # nothing parses: the first raw sample is played
    assert BestOfKPolicy(_Scripted(["a", "b"]), k=2).act([_episode()])[0].text == "a"
    assert policy.config() == {"policy": "best-of-k", "k": 3, "inner": {"policy": "fixed"}}


def test_scaffold_retries_errors_then_reads_back_writes_then_asks_the_model():
    inner = _Scripted([_call("close_ticket")])
    policy = ScaffoldPolicy(inner, max_retries=2)
    order = _order_id()
    write = _call("cancel_order", order_id=order)
    ep = _episode([_turn(write, "error 503: the cancel_order service is temporarily unavailable; nothing was done. "
                                "Try again.", "cancel_order")])
    first = policy.act([ep])[0]
    assert first.text == write and first.scripted and first.tokens == 0 and inner.asked == 0

    ep.history.append(_turn(write, f"order {order} cancelled", "cancel_order", scripted=True))
    second = policy.act([ep])[0]  # the env's own read-back of that write
    assert json.loads(tool_call_key(second.text)) == {"name": "lookup_order", "arguments": {"order_id": order}}
    assert second.scripted

    ep.history.append(_turn(second.text, f"order {order} | status cancelled", "lookup_order", scripted=True))
    third = policy.act([ep])[0]
    assert third.text == _call("close_ticket") and not third.scripted and inner.asked == 1


def test_scaffold_reads_back_after_a_timeout_and_a_conflict():
    order = _order_id()
    write = _call("cancel_order", order_id=order)
    for answer in ("error 504: the request timed out; it may or may not have been applied. Check the current state "
                   "before retrying.", "error 409: conflict: the records changed since you last saw them"):
        action = ScaffoldPolicy(_Scripted(["x"])).act([_episode([_turn(write, answer, "cancel_order")])])[0]
        assert action.scripted and json.loads(tool_call_key(action.text))["name"] == "lookup_order"


def test_scaffold_gives_up_retrying_after_max_retries_and_ignores_invalid_actions():
    inner = _Scripted([_call("close_ticket")])
    policy = ScaffoldPolicy(inner, max_retries=1, read_after_write=False)
    call = _call("lookup_order", order_id=_order_id())
    ep = _episode([_turn(call, "error 429: rate limit exceeded for lookup_order; nothing was done. Retry after 2 s "
                               "(one turn takes 1 s).", "lookup_order")])
    assert policy.act([ep])[0].scripted
    ep.history.append(_turn(call, "error 429: rate limit for lookup_order; retry after 1 s", "lookup_order",
                            scripted=True))
    assert not policy.act([ep])[0].scripted  # limit reached: the model decides
    bad = _episode([_turn("nonsense", "error: no tool call found; 503", None, invalid=True)])
    assert not policy.act([bad])[0].scripted


def test_chat_messages_replay_actions_verbatim_and_observations_as_tool_messages():
    history = [_turn("<tool_call>{}</tool_call>", "invalid JSON", None, invalid=True)]
    assert chat_messages("hello", history) == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
        {"role": "tool", "content": "invalid JSON"},
    ]
