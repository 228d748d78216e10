"""The OpenAI-compatible chat policy against a stub server on 127.0.0.1 (no network beyond loopback)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest

from training.evaluation.episode import Episode, Turn
from training.evaluation.openai_policy import OpenAIChatPolicy

TOOLS = [
    {"type": "function", "function": {"name": "lookup_order", "description": "Look up an order.",
                                      "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                                                     "required": ["order_id"]},
                                      "return": {"type": "string"}}},
]


class _Stub(BaseHTTPRequestHandler):
    requests: ClassVar[list] = []
    fail_first: ClassVar[int] = 0

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        last = body["messages"][-1]
        if "plain text please" in json.dumps(body["messages"]):
            message = {"role": "assistant", "content": "I cannot help."}
        else:
            turn = sum(m["role"] == "assistant" for m in body["messages"])
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{turn}", "type": "function",
                 "function": {"name": "lookup_order", "arguments": json.dumps({"order_id": f"O-{turn}"})}}]}
            message["content"] = None if last["role"] != "tool" else ""
        reply = {"choices": [{"message": message, "finish_reason": "tool_calls"}],
                 "usage": {"prompt_tokens": 50, "completion_tokens": 7}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    _Stub.requests = []
    _Stub.fail_first = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _episode(prompt="Where is my order?"):
    return Episode(env=None, prompt=prompt, info={"tools": TOOLS}, rng=np.random.default_rng(0))


def test_tool_calls_become_actions_and_are_replayed_with_ids(server):
    policy = OpenAIChatPolicy(server, "stub-model", api_key="sk-test", concurrency=4)
    episodes = [_episode() for _ in range(3)]
    actions = policy.act(episodes)
    assert [json.loads(a.text.removeprefix("<tool_call>").removesuffix("</tool_call>")) for a in actions] == [
        {"name": "lookup_order", "arguments": {"order_id": "O-0"}}] * 3
    assert all(a.tokens == 7 for a in actions)
    first = _Stub.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"]["model"] == "stub-model"
    assert first["body"]["tools"][0]["function"]["name"] == "lookup_order"
    assert "return" not in first["body"]["tools"][0]["function"]  # not part of the OpenAI tool format

    # second turn: the assistant tool call and the observation go back with a matching tool_call_id
    ep = episodes[0]
    ep.history.append(Turn(turn=1, action=actions[0].text, observation="order O-0: shipped", tool="lookup_order",
                           invalid_action=False, ok=True, tokens=7, message=actions[0].message))
    _Stub.requests.clear()
    again = policy.act([ep])[0]
    messages = _Stub.requests[0]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "call_0"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_0", "content": "order O-0: shipped"}
    assert '"O-1"' in again.text


def test_plain_text_reply_is_played_as_text(server):
    policy = OpenAIChatPolicy(server, "stub-model")
    action = policy.act([_episode("plain text please")])[0]
    assert action.text == "I cannot help." and action.message == {"role": "assistant", "content": "I cannot help."}


def test_retries_on_503_then_succeeds(server):
    _Stub.fail_first = 2
    policy = OpenAIChatPolicy(server, "stub-model", max_retries=3)
    policy_action = policy.act([_episode()])[0]
    assert "lookup_order" in policy_action.text
    assert len(_Stub.requests) == 3


def test_unreachable_server_says_what_to_check():
    policy = OpenAIChatPolicy("http://127.0.0.1:9/v1", "m", max_retries=0, timeout=2)
    with pytest.raises(RuntimeError, match="cannot reach .*base-url"):
        policy.act([_episode()])
