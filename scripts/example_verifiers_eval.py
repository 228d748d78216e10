"""Evaluate a model behind an OpenAI-compatible endpoint on a recoverygym environment, with verifiers' own API.

``load_environment`` builds the verifiers environment (the environment's tools as native tool calls, the checker's
score as the reward, its components as metrics); ``env.evaluate_sync`` runs the rollouts against the endpoint. Any
OpenAI-compatible server works: vLLM (``vllm serve MODEL --enable-auto-tool-choice --tool-call-parser ...``), a
hosted API, or ``--stub``, which starts a local endpoint that replays the environment's reference policy as tool
calls (no model needed; every episode should score 1)::

    python scripts/example_verifiers_eval.py --stub --tasks 5
    python scripts/example_verifiers_eval.py --base-url http://127.0.0.1:8001/v1 --model Qwen/Qwen2.5-0.5B-Instruct \\
        --env recoverygym/Spreadsheet-v0 --faults write_timeout=0.2 --tasks 20 --rollouts 4

The API key is read from ``--api-key-var`` (default ``OPENAI_API_KEY``; any text for a local server).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reference_stub(env_id: str, faults: dict[str, float]) -> ThreadingHTTPServer:
    """A chat-completions endpoint that plays the reference policy of the episode named by the prompt."""
    import gymnasium

    import envs  # noqa: F401  (registers the recoverygym ids)

    episodes: dict[str, object] = {}  # prompt -> the in-process env replaying that episode

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            messages = request["messages"]
            prompt = next(m["content"] for m in messages if m["role"] == "user")
            env = episodes[prompt]  # each request is the next turn of that episode: step the local copy alike
            call = json.loads(env.unwrapped.reference_action())
            env.step(json.dumps(call))
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{len(messages)}", "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]}
            body = json.dumps({"id": "stub", "object": "chat.completion", "created": 0, "model": request["model"],
                               "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                               "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.episodes = episodes

    def expect(prompt: str, task_seed: int, split: str, seed: int) -> None:
        env = gymnasium.make(env_id, faults=faults)
        env.reset(seed=seed, options={"task_seed": task_seed, "split": split})
        episodes[prompt] = env

    server.expect = expect
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="recoverygym/SupportDesk-v0")
    parser.add_argument("--split", default="heldout", choices=["train", "heldout"])
    parser.add_argument("--faults", default="", help="kind=rate,..., e.g. write_timeout=0.2")
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--rollouts", type=int, default=1, help="rollouts per task")
    parser.add_argument("--base-url", help="the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--model", default="stub")
    parser.add_argument("--api-key-var", default="OPENAI_API_KEY")
    parser.add_argument("--stub", action="store_true", help="serve the reference policy locally instead")
    args = parser.parse_args(argv)
    if not args.stub and not args.base_url:
        parser.error("give --base-url of an OpenAI-compatible endpoint, or --stub")
    faults = {k: float(v) for k, v in (item.split("=") for item in args.faults.split(",") if item)}

    import verifiers as vf
    from openai import AsyncOpenAI

    from training.integrations.verifiers_env import load_environment

    env = load_environment(args.env, split=args.split, faults=faults, num_tasks=args.tasks)
    base_url = args.base_url
    if args.stub:
        if args.rollouts != 1:
            parser.error("--stub replays one episode per task: use --rollouts 1")
        stub = reference_stub(args.env, faults)
        for row in env.get_eval_dataset():
            info = json.loads(row["info"]) if isinstance(row["info"], str) else row["info"]
            stub.expect(row["prompt"][-1]["content"], info["task_seed"], info["split"], info["seed"])
        base_url = f"http://127.0.0.1:{stub.server_address[1]}/v1"
    client = vf.OpenAIChatCompletionsClient(AsyncOpenAI(base_url=base_url,
                                                        api_key=os.environ.get(args.api_key_var, "none")))
    results = env.evaluate_sync(client, model=args.model, num_examples=args.tasks,
                                rollouts_per_example=args.rollouts)
    metadata = results["metadata"]
    print(f"{args.env} {args.split}, faults {args.faults or 'none'}: {len(results['outputs'])} rollouts, "
          f"mean reward {metadata['avg_reward']:.3f}")
    for name, value in sorted(metadata["avg_metrics"].items()):
        print(f"  {name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
