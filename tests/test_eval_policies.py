"""Policy wrappers: best-of-k voting and token cost, scaffolding rules, action canonicalisation."""

import json

import numpy as np

from training.evaluation.episode import (
    Action,
    Episode,
    Turn,
    chat_messages,
    tool_call_key,
)
from training.evaluation.policies import BestOfKPolicy, ScaffoldPolicy


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


def _marked(fn, **mark):
    fn.__recoverygym_tool__ = mark
    return fn


class _Env:
    """Just enough of an environment for the scaffold: tool kinds and a read-back hook."""

    def __init__(self):
        self.unwrapped = self

    def tool_methods(self):
        return {
            "get_order": _marked(lambda self: "", write=False, finish=False),
            "refund": _marked(lambda self: "", write=True, finish=False),
            "done": _marked(lambda self: "", write=True, finish=True),
        }

    def _read_back(self, call):
        from types import SimpleNamespace

        return SimpleNamespace(name="get_order", arguments={"order_id": call.arguments["order_id"]})


def _episode(history=()):
    return Episode(env=_Env(), prompt="p", info={"tools": []}, rng=np.random.default_rng(0), history=list(history))


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
    inner = _Scripted([_call("done")])
    policy = ScaffoldPolicy(inner, max_retries=2)
    write = _call("refund", order_id="O-7")
    ep = _episode([_turn(write, "503 Service Unavailable: try again", "refund")])
    first = policy.act([ep])[0]
    assert first.text == write and first.scripted and first.tokens == 0 and inner.asked == 0

    ep.history.append(_turn(write, "refunded O-7", "refund", scripted=True))
    second = policy.act([ep])[0]
    assert json.loads(tool_call_key(second.text)) == {"name": "get_order", "arguments": {"order_id": "O-7"}}
    assert second.scripted

    ep.history.append(_turn(second.text, "O-7: refunded", "get_order", scripted=True))
    third = policy.act([ep])[0]
    assert third.text == _call("done") and not third.scripted and inner.asked == 1


def test_scaffold_gives_up_retrying_after_max_retries_and_ignores_invalid_actions():
    inner = _Scripted([_call("done")])
    policy = ScaffoldPolicy(inner, max_retries=1, read_after_write=False)
    call = _call("get_order", order_id="O-1")
    ep = _episode([_turn(call, "429 Too Many Requests: retry after 2 s", "get_order")])
    assert policy.act([ep])[0].scripted
    ep.history.append(_turn(call, "429 Too Many Requests: retry after 1 s", "get_order", scripted=True))
    assert not policy.act([ep])[0].scripted  # limit reached: the model decides
    bad = _episode([_turn("nonsense", "no tool call found; 503", None, invalid=True)])
    assert not policy.act([bad])[0].scripted


def test_chat_messages_replay_actions_verbatim_and_observations_as_tool_messages():
    history = [_turn("<tool_call>{}</tool_call>", "invalid JSON", None, invalid=True)]
    assert chat_messages("hello", history) == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
        {"role": "tool", "content": "invalid JSON"},
    ]
