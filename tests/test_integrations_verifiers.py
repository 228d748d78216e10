"""``load_environment`` evaluated through verifiers' own API against a stub OpenAI-compatible endpoint on localhost.

The stub is a tiny HTTP server that answers ``/v1/chat/completions``: it finds the task by the prompt it is sent and
replays, as native tool calls, the calls the reference policy made in the same episode run in-process (same task,
faults and fault seed), so the verifiers rollout must follow that episode exactly.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gymnasium
import pytest

import envs  # noqa: F401  (registers the recoverygym ids)

vf = pytest.importorskip("verifiers", reason="the verifiers extra is not installed: pip install -e '.[verifiers]'")
openai = pytest.importorskip("openai", reason="the verifiers extra is not installed: pip install -e '.[verifiers]'")

from training.integrations.verifiers_env import load_environment  # noqa: E402

SUPPORT, SHEET = "recoverygym/SupportDesk-v0", "recoverygym/Spreadsheet-v0"


def reference_episode(env_id, faults, task_seed, split, seed):
    """The prompt, the reference's calls and the observations they got, and the final reward, in-process."""
    env = gymnasium.make(env_id, faults=faults)
    prompt, _ = env.reset(seed=seed, options={"task_seed": task_seed, "split": split})
    calls, observations = [], []
    while True:
        call = json.loads(env.unwrapped.reference_action())
        observation, reward, terminated, truncated, _ = env.step(json.dumps(call))
        calls.append(call)
        observations.append(observation)
        if terminated or truncated:
            return prompt, calls, observations, reward


class StubModel:
    """An OpenAI-compatible chat endpoint; ``script(prompt, turn)`` gives the call to make, or None to just reply."""

    def __init__(self, script):
        self.script = script
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests += 1
                messages = request["messages"]
                prompt = next(m["content"] for m in messages if m["role"] == "user")
                turn = sum(m["role"] == "assistant" for m in messages)
                call = stub.script(prompt, turn)
                message = {"role": "assistant", "content": "All done." if call is None else None}
                if call is not None:
                    message["tool_calls"] = [{"id": f"call_{turn}", "type": "function", "function": {
                        "name": call["name"], "arguments": json.dumps(call["arguments"])}}]
                body = json.dumps({
                    "id": f"stub-{stub.requests}", "object": "chat.completion", "created": 0, "model": request["model"],
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": "stop" if call is None else "tool_calls"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def evaluate(env, base_url, **kwargs):
    client = vf.OpenAIChatCompletionsClient(openai.AsyncOpenAI(base_url=base_url, api_key="stub", max_retries=0))
    return env.evaluate_sync(client, model="stub", **kwargs)


def tool_texts(output):
    return [m["content"] for m in output["completion"] if m["role"] == "tool"]


@pytest.mark.parametrize("env_id", [SUPPORT, SHEET])
def test_the_reference_replayed_by_a_stub_endpoint_scores_what_it_scores_locally(env_id):
    faults = {kind: 0.2 for kind in gymnasium.make(env_id).unwrapped.fault_kinds}
    env = load_environment(env_id, split="heldout", faults=faults, num_tasks=3, first_task=5, seed=7)
    episodes = {}
    for i in range(3):
        prompt, calls, observations, reward = reference_episode(env_id, faults, 5 + i, "heldout", 7 + i)
        episodes[prompt] = (calls, observations, reward)
    with StubModel(lambda prompt, turn: episodes[prompt][0][turn] if turn < len(episodes[prompt][0]) else None) as url:
        results = evaluate(env, url, num_examples=3, rollouts_per_example=2)

    outputs = results["outputs"]
    assert len(outputs) == 6
    for output in outputs:
        calls, observations, reward = episodes[output["prompt"][-1]["content"]]
        assert tool_texts(output) == observations  # the same episode, observation for observation
        assert output["reward"] == reward == 1.0
        assert output["metrics"]["success"] == 1.0
        components = {k: v for k, v in output["metrics"].items() if k.startswith("component_")}
        assert components and set(components.values()) == {1.0}
    assert results["metadata"]["avg_reward"] == 1.0
    schemas = sorted(gymnasium.make(env_id).unwrapped.tool_schemas(), key=lambda s: s["function"]["name"])
    assert [(t.name, t.parameters) for t in env.tool_defs] == [
        (s["function"]["name"], s["function"]["parameters"]) for s in schemas]  # as TRL renders them: by name


def test_a_model_that_only_talks_scores_zero_and_a_rejected_call_costs_a_turn():
    env = load_environment(SUPPORT, split="train", num_tasks=2)
    with StubModel(lambda prompt, turn: None) as url:
        silent = evaluate(env, url, num_examples=2)
    assert [o["reward"] for o in silent["outputs"]] == [0.0, 0.0]
    assert all(o["metrics"]["success"] == 0.0 for o in silent["outputs"])

    wrong = [{"name": "refund", "arguments": {}}, {"name": "find_customer", "arguments": {"emial": "x"}}]
    with StubModel(lambda prompt, turn: wrong[turn] if turn < len(wrong) else None) as url:
        output = evaluate(env, url, num_examples=1)["outputs"][0]
    unknown, misspelt = tool_texts(output)
    local = gymnasium.make(SUPPORT)
    local.reset(seed=0, options={"task_seed": 0, "split": "train"})
    assert unknown == local.step(json.dumps(wrong[0]))[0]  # the environment's own messages, not verifiers'
    assert misspelt == local.step(json.dumps(wrong[1]))[0]
    assert unknown.startswith("error") and misspelt.startswith("error")
    assert output["reward"] == 0.0


def test_load_environment_through_verifiers_own_loader():
    env = vf.load_environment("training.integrations.verifiers_env", gym_id=SHEET, split="train", num_tasks=2,
                              faults='{"transient_error": 0.1}')
    assert env.gym_id == SHEET and env.faults == {"transient_error": 0.1}
    assert len(env.get_eval_dataset()) == 2
    with pytest.raises(ValueError, match="unknown fault kind"):
        load_environment(SUPPORT, faults={"transiant_error": 0.1})
