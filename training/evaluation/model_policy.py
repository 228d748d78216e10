"""A transformers causal LM as a policy, generating for many episodes in one batch.

torch and transformers are imported only when a ``TransformersPolicy`` is built, so scripted evaluations never
load them.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.evaluation.episode import Action, Episode

__all__ = ["TransformersPolicy", "policy_name"]

# Folder names that say nothing on their own: a checkpoint is named with the folders above it.
_GENERIC = re.compile(r"final|checkpoint-\d+|sft|grpo|base-model")


def policy_name(source: str) -> str:
    """A model's policy name: its last path component, with the run and stage for a training checkpoint.

    ``runs/quickstart/grpo/final`` -> ``quickstart-grpo-final``; ``Qwen/Qwen2.5-0.5B-Instruct`` -> its last part.
    """
    parts = [p for p in Path(source.rstrip("/")).parts if p not in ("/", ".")]
    keep = 1
    while keep < len(parts) and _GENERIC.fullmatch(parts[-keep]):
        keep += 1
    return "-".join(parts[-keep:])

STOP = "</tool_call>"
_SENTINEL = "RECOVERYGYM-PROMPT-SENTINEL"
_MIN_PREFIX = 16  # shorter shared prefixes are not worth a cache


def _cache_name() -> str:
    """What ``generate`` and model outputs call the key/value cache in the installed transformers: ``cache`` in
    versions that renamed it (there ``past_key_values`` still works, with a deprecation warning), else
    ``past_key_values``."""
    from transformers.utils import generic

    return "cache" if hasattr(generic, "_rename_kwargs_for_bc") else "past_key_values"


class TransformersPolicy:
    """Prompt a chat model with each episode's transcript and tool schemas; one tool call per turn.

    Every call of :meth:`act` renders the conversations of all given episodes with the tokenizer's chat template
    (``tools=info["tools"]``), left-pads them into micro-batches of ``max_batch_size`` and generates them together,
    stopping each row at ``</tool_call>`` or the end-of-turn token. The runner keeps up to its ``batch_size``
    episodes in flight and refills finished slots, so the batch stays full across episodes of different lengths.

    Every prompt of one environment starts with the same system block (the chat template's tool schemas, about
    2,000 of SmolLM2's 2,600 first-turn tokens). With ``prefix_cache`` that block's key/value cache is computed
    once and shared by every row and every turn: rows are laid out ``[shared prefix][padding][rest]`` with the
    padding masked, so positions and outputs equal those of unpadded, uncached generation.

    Args:
        model: A path or hub name (loaded with ``training.models.load_model_and_tokenizer``) or a loaded model.
        tokenizer: The tokenizer, when ``model`` is a loaded model.
        max_new_tokens: Generation budget per turn.
        temperature: 0 for greedy decoding (deterministic, the default); > 0 samples.
        top_p: Nucleus sampling mass when sampling.
        seed: Seeds torch once at construction. Sampled results also depend on the batch composition.
        max_batch_size: Most rows generated in one forward pass (memory bound).
        dtype, device: Passed to the loader.
        name: Label in results; defaults to the folder or hub name.
        prefix_cache: Reuse the key/value cache of the tool-schema prefix (see above); False recomputes it.
    """

    def __init__(
        self,
        model: str | os.PathLike | Any,
        tokenizer: Any = None,
        *,
        max_new_tokens: int = 96,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        max_batch_size: int = 64,
        dtype: Any = None,
        device: Any = None,
        name: str | None = None,
        prefix_cache: bool = True,
    ):
        import torch

        if isinstance(model, (str, os.PathLike)):
            from training.models import load_model_and_tokenizer

            self.source = str(model)
            model, tokenizer = load_model_and_tokenizer(model, dtype=dtype, device=device)
        else:
            if tokenizer is None:
                raise ValueError("TransformersPolicy got a model object without its tokenizer; pass tokenizer=")
            self.source = getattr(model, "name_or_path", type(model).__name__)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_batch_size = max_batch_size
        self.name = name or policy_name(self.source)
        limit = getattr(model.config, "max_position_embeddings", None) or 32768
        self.max_prompt_tokens = max(16, limit - max_new_tokens)
        self.truncated_prompts = 0
        self.prefix_cache = prefix_cache
        self._heads: dict[str, list[int]] = {}
        self._prefix_kv: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._cache_name = _cache_name()
        torch.manual_seed(seed)

    def config(self) -> dict[str, Any]:
        return {
            "policy": "transformers",
            "model": self.source,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "max_batch_size": self.max_batch_size,
            "dtype": str(self.model.dtype),
            "prefix_cache": self.prefix_cache,
        }

    def render(self, episode: Episode) -> str:
        """The prompt text for the next action of ``episode``."""
        return self.tokenizer.apply_chat_template(
            episode.messages(), tools=episode.tools or None, add_generation_prompt=True, tokenize=False
        )

    def act(self, episodes: Sequence[Episode]) -> list[Action]:
        rows = [self._encode(self.render(ep)) for ep in episodes]
        groups: dict[str, list[int]] = {}  # rows that share a tool-schema prefix are generated together
        for i, ep in enumerate(episodes):  # key order kept: the template renders the schemas as given
            groups.setdefault(json.dumps(ep.tools), []).append(i)
        out: list[Action | None] = [None] * len(rows)
        for key, members in groups.items():
            head = self._head(key, episodes[members[0]].tools) if self.prefix_cache else []
            for start in range(0, len(members), self.max_batch_size):
                chunk = members[start : start + self.max_batch_size]
                for i, action in zip(chunk, self._generate([rows[i] for i in chunk], head), strict=True):
                    out[i] = action
        return out  # type: ignore[return-value]

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_prompt_tokens:  # keep the most recent context; counted in truncated_prompts
            self.truncated_prompts += 1
            ids = ids[-self.max_prompt_tokens :]
        return ids

    def _head(self, tools_key: str, tools: list[dict[str, Any]]) -> list[int]:
        """Token ids of everything the chat template puts before the first user message, for these tools."""
        if tools_key not in self._heads:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tools=tools or None,
                                                      add_generation_prompt=False, tokenize=False)
            head = text.split(_SENTINEL)[0] if _SENTINEL in text else ""
            self._heads[tools_key] = self.tokenizer(head, add_special_tokens=False)["input_ids"]
        return self._heads[tools_key]

    def _shared_cache(self, prefix: list[int], batch: int):
        """A fresh copy of the key/value cache of ``prefix``, repeated for ``batch`` rows (computed once)."""
        import torch

        key = tuple(prefix)
        if key not in self._prefix_kv:
            with torch.inference_mode():
                ids = torch.tensor([prefix], device=self.model.device)
                out = self.model(input_ids=ids, use_cache=True)
                self._prefix_kv[key] = out[self._cache_name]
            while len(self._prefix_kv) > 4:
                self._prefix_kv.popitem(last=False)
        self._prefix_kv.move_to_end(key)
        cache = copy.deepcopy(self._prefix_kv[key])  # generate() extends the cache it is given
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache

    def _generate(self, rows: list[list[int]], head: list[int]) -> list[Action]:
        import torch

        tok = self.tokenizer
        shared = min((_common_prefix(head, r) for r in rows), default=0)
        shared = min(shared, min(len(r) for r in rows) - 1)  # every row needs a token of its own to generate from
        if shared < _MIN_PREFIX:
            shared = 0
        pad = tok.pad_token_id
        width = max(len(r) - shared for r in rows)
        ids, mask = [], []
        for r in rows:  # [shared prefix][padding][rest]; with no shared prefix this is plain left padding
            n = width - (len(r) - shared)
            ids.append(r[:shared] + [pad] * n + r[shared:])
            mask.append([1] * shared + [0] * n + [1] * (len(r) - shared))
        device = self.model.device
        sampling = self.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": sampling}
        if sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if shared:
            kwargs[self._cache_name] = self._shared_cache(rows[0][:shared], len(rows))
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=self.max_new_tokens,
                stop_strings=[STOP],
                tokenizer=tok,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
                **kwargs,
            )
        new = generated[:, shared + width :].tolist()
        return [self._decode(ids) for ids in new]

    def _decode(self, ids: list[int]) -> Action:
        tok = self.tokenizer
        stops = {tok.eos_token_id, tok.pad_token_id}
        count = len(ids)
        for i, t in enumerate(ids):
            if t in stops:
                count = i + (t == tok.eos_token_id)
                break
        text = tok.decode(ids[:count], skip_special_tokens=True)
        if STOP in text:
            text = text[: text.index(STOP) + len(STOP)]
        return Action(text.strip(), tokens=count)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
