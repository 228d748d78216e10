"""Any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, llama.cpp server, OpenAI) as a policy.

Uses only the standard library (``urllib``); requests for the episodes of one batch go out concurrently from a
thread pool, so a server that batches (vLLM) sees many requests at once.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from training.evaluation.episode import Action, Episode

__all__ = ["OpenAIChatPolicy"]

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIChatPolicy:
    """Ask ``{base_url}/chat/completions`` for the next tool call of each episode.

    The environment's tool schemas go in the ``tools`` field; a returned ``tool_calls`` entry becomes the action
    (as JSON ``{"name", "arguments"}``) and is replayed with its id, with the observation as the matching ``tool``
    message. A reply without a tool call is played as its text (the environment answers with a format hint).

    Args:
        base_url: Like ``http://localhost:8000/v1``.
        model: The model name the server expects.
        api_key: Sent as a bearer token; defaults to ``$OPENAI_API_KEY`` when set.
        temperature, max_tokens: Sampling settings sent with every request.
        concurrency: Requests in flight at once.
        timeout: Seconds per request.
        max_retries: Retries, with exponential backoff, on connection errors and 408/409/429/5xx answers.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, temperature: float = 0.0,
                 max_tokens: int = 256, concurrency: int = 8, timeout: float = 120.0, max_retries: int = 4):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.name = model

    def config(self) -> dict[str, Any]:
        return {"policy": "openai", "base_url": self.base_url, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def act(self, episodes: Sequence[Episode]) -> list[Action]:
        if len(episodes) <= 1 or self.concurrency <= 1:
            return [self._act(ep) for ep in episodes]
        with ThreadPoolExecutor(min(self.concurrency, len(episodes))) as pool:
            return list(pool.map(self._act, episodes))

    def request_body(self, episode: Episode) -> dict[str, Any]:
        """The JSON request for the next action of ``episode``."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": episode.prompt}]
        for turn in episode.history:
            message = turn.message or {"role": "assistant", "content": turn.action}
            messages.append(message)
            calls = message.get("tool_calls") or []
            if calls:
                messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": turn.observation})
            else:
                messages.append({"role": "user", "content": turn.observation})
        tools = [{"type": "function", "function": {k: v for k, v in t["function"].items() if k != "return"}}
                 for t in episode.tools]
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                "max_tokens": self.max_tokens}
        if tools:
            body["tools"] = tools
        return body

    def _act(self, episode: Episode) -> Action:
        reply = self._post(self.request_body(episode))
        message = reply["choices"][0]["message"]
        tokens = int((reply.get("usage") or {}).get("completion_tokens") or 0)
        calls = message.get("tool_calls") or []
        if not calls:
            content = message.get("content") or ""
            return Action(content, tokens=tokens, message={"role": "assistant", "content": content})
        turn = len(episode.history)
        replay_calls = []
        for i, call in enumerate(calls):
            fn = call.get("function") or {}
            replay_calls.append({"id": call.get("id") or f"call_{turn}_{i}", "type": "function",
                                 "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or "{}"}})
        texts = []
        for call in replay_calls:
            args = call["function"]["arguments"]
            try:
                args = json.loads(args) if isinstance(args, str) else args
            except json.JSONDecodeError:
                pass  # the env reports the malformed arguments to the agent
            texts.append("<tool_call>" + json.dumps({"name": call["function"]["name"], "arguments": args})
                         + "</tool_call>")
        replay = {"role": "assistant", "content": message.get("content") or "", "tool_calls": replay_calls}
        return Action("".join(texts), tokens=tokens, message=replay)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as err:
                if err.code not in _RETRY_STATUS or attempt == self.max_retries:
                    detail = err.read().decode(errors="replace")[:500]
                    raise RuntimeError(f"{url} answered HTTP {err.code}: {detail}") from err
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.max_retries:
                    raise RuntimeError(
                        f"cannot reach {url} ({err}); is the server running and is --base-url right "
                        "(it usually ends in /v1)?"
                    ) from err
            time.sleep(min(8.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")
