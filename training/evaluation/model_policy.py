"""A transformers causal LM as a policy, generating for many episodes in one batch.

torch and transformers are imported only when a ``TransformersPolicy`` is built, so scripted evaluations never
load them.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.evaluation.episode import Action, Episode

__all__ = ["KV_CACHES", "TransformersPolicy", "policy_name"]

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
_KV = "transformers_kv"  # the key of an episode's kept key/value cache in ``Episode.scratch``
KV_CACHES = ("static", "dynamic")


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
    once and shared by every row and every turn. And an episode's next prompt is its last prompt plus the action
    and the observation: with ``episode_cache`` each episode keeps the key/value cache of its last prompt and
    action, so a turn computes only the tokens that are new (without it every turn re-reads the whole transcript,
    and cost grows with the square of its length). A row reuses the longest prefix of its token ids that either
    cache holds (checked token by token, so a re-rendered action that tokenizes differently is simply recomputed
    from there) and rows are laid out ``[padding][cached prefix][padding][new tokens]`` with the padding masked, so
    positions and outputs equal those of unpadded, uncached generation.

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
        episode_cache: Keep each in-flight episode's key/value cache between turns (see above; memory: one cache
            per episode in flight, e.g. ~46 KB per token for SmolLM2-135M in float32, half that in bfloat16). Used
            only with a model whose cache layers are plain full-attention layers; others recompute.
        regroup_every: Generate a turn in rounds of this many tokens: after each round the rows that have finished
            leave the batch and the others go on from their kept cache, so a batch no longer decodes for its one
            long reply while the other rows wait as padding. None or 0 (default): one ``generate`` call per turn.
            Used only with ``episode_cache`` (a row goes on from its own cache); greedy tokens are those of one
            call (tested), sampled ones depend on the rounds as on the batch composition. Off by default because
            it did not pay on the one model measured: SmolLM2 after its warm start decoded only 4% of its rows x
            steps as padding, and 32-token rounds were 1.05x faster, within the drift (``scripts/bench_eval.py
            --regroup``, docs/evaluation.md).
        kv_cache: ``"static"`` (default): each turn's batch cache is allocated once at its final length
            (``transformers.StaticCache``) and written in place; ``"dynamic"``: ``DynamicCache``, which grows by
            concatenation and copies the whole cache at every generated token. The same greedy tokens in float32
            (tested); measured with ``scripts/bench_eval.py`` on SmolLM2 and 2 CPU cores, static is 1.2x faster
            in float32 and 1.1x in bfloat16 (a bf16 static cache may change a near-tied greedy token).

    ``dtype`` also applies to a loaded ``model``: a model of another dtype is evaluated as a converted copy (the
    caller's model is left as it is), so a float32 training model can be evaluated in bfloat16. ``"fast"`` means
    bfloat16 where the hardware computes it natively (``training.models.fast_dtype``), else float32.
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
        episode_cache: bool = True,
        kv_cache: str = "static",
        regroup_every: int | None = None,
    ):
        import torch

        if kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache={kv_cache!r}: use one of {list(KV_CACHES)}")
        if isinstance(model, (str, os.PathLike)):
            from training.models import load_model_and_tokenizer

            self.source = str(model)
            model, tokenizer = load_model_and_tokenizer(model, dtype=dtype, device=device)
        else:
            if tokenizer is None:
                raise ValueError("TransformersPolicy got a model object without its tokenizer; pass tokenizer=")
            self.source = getattr(model, "name_or_path", type(model).__name__)
            model = _as_dtype(model, dtype)
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
        self.prompt_tokens = [0, 0]  # prompt tokens [computed, reused from a cache], over all calls
        self.prefix_cache = prefix_cache
        self.episode_cache = episode_cache
        self.kv_cache = kv_cache
        if regroup_every is not None and regroup_every < 0:
            raise ValueError(f"regroup_every must be >= 0 (0 or None: one generate call per turn), got {regroup_every}")
        self.regroup_every = regroup_every or None
        self.decode_rows = [0, 0]  # generated tokens [kept, computed as rows of a batch], over all calls
        self._heads: dict[str, list[int]] = {}
        self._prefix_kv: OrderedDict[tuple[int, ...], _Prefix] = OrderedDict()
        self._plain_layers: bool | None = None  # whether the model's cache layers can be sliced and joined
        self._cache_name = _cache_name()
        torch.manual_seed(seed)

    def config(self) -> dict[str, Any]:
        # regroup_every is recorded only when on, so folders written before the option existed still resume
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
            "episode_cache": self.episode_cache,
            "kv_cache": self.kv_cache,
        } | ({"regroup_every": self.regroup_every} if self.regroup_every else {})

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
                actions = self._turn([rows[i] for i in chunk], head, [episodes[i].scratch for i in chunk])
                for i, action in zip(chunk, actions, strict=True):
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

    def _head_prefix(self, head: list[int]) -> _Prefix | None:
        """The key/value cache of the tool-schema prefix ``head`` (computed once, a few kept)."""
        import torch

        if self._plain_layers is False:  # a cache that cannot be sliced: nothing to reuse, nothing to compute
            return None
        key = tuple(head)
        if key not in self._prefix_kv:
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([head], device=self.model.device), use_cache=True)
            cache = out[self._cache_name]
            self._plain_layers = _plain(cache)
            if not self._plain_layers:
                return None
            self._prefix_kv[key] = _Prefix(list(head), _layers(cache))
            while len(self._prefix_kv) > 4:
                self._prefix_kv.popitem(last=False)
        self._prefix_kv.move_to_end(key)
        return self._prefix_kv[key]

    def _known_prefix(self, row: list[int], shared: _Prefix | None, scratch: dict) -> tuple[int, _Prefix | None]:
        """The longest prefix of ``row`` whose key/value cache is held: the episode's own, or the shared head's."""
        best, source = 0, None
        if self._plain_layers is not False:
            candidates = [scratch.get(_KV) if self.episode_cache else None, shared]
            for prefix in filter(None, candidates):
                n = min(_common_prefix(prefix.ids, row), len(row) - 1)  # each row needs a token of its own
                if n > best:
                    best, source = n, prefix
        return (best, source) if best >= _MIN_PREFIX else (0, None)

    def _turn(self, rows: list[list[int]], head: list[int], scratches: list[dict]) -> list[Action]:
        """One turn for ``rows`` (token ids): one ``generate`` call, or rounds of ``regroup_every`` tokens that
        only the unfinished rows go on to, each from its kept cache (its prompt plus what it generated so far)."""
        out: list[list[int]] = [[] for _ in rows]
        pending, left = list(range(len(rows))), self.max_new_tokens
        while pending:
            regroup = self.regroup_every and self.episode_cache and self._plain_layers is not False
            budget = min(self.regroup_every, left) if regroup else left
            generated = self._generate([rows[i] + out[i] for i in pending], head, [scratches[i] for i in pending],
                                       budget, count_prompt=left == self.max_new_tokens)
            left -= budget
            going_on = []
            for i, (ids, stopped) in zip(pending, generated, strict=True):
                out[i] += ids
                if left > 0 and not stopped and STOP not in self.tokenizer.decode(out[i]):
                    going_on.append(i)
            pending = going_on
        return [self._decode(ids) for ids in out]

    def _generate(self, rows: list[list[int]], head: list[int], scratches: list[dict], budget: int,
                  count_prompt: bool = True) -> list[tuple[list[int], bool]]:
        """Up to ``budget`` new tokens for ``rows`` (token ids), each cut at its first stop token (an end-of-turn
        token, kept, or padding), and whether it met one; each row's
        key/value cache is read from and kept in its episode's ``scratch``, so it lives and ends with the episode.
        ``count_prompt``: add the prompt to ``prompt_tokens`` (not for a row going on with its own turn)."""
        import torch

        tok = self.tokenizer
        pad = tok.pad_token_id
        shared = self._head_prefix(head) if len(head) >= _MIN_PREFIX else None  # once per call, not per row
        known = [self._known_prefix(r, shared, kept) for r, kept in zip(rows, scratches, strict=True)]
        if count_prompt:
            reused = sum(n for n, _ in known)
            self.prompt_tokens[0] += sum(map(len, rows)) - reused
            self.prompt_tokens[1] += reused
        cached = max(n for n, _ in known)
        width = max(len(r) - n for r, (n, _) in zip(rows, known, strict=True))
        ids, mask = [], []
        for r, (n, _) in zip(rows, known, strict=True):  # [padding][cached prefix][padding][new tokens]
            gap = width - (len(r) - n)
            ids.append([pad] * (cached - n) + r[:n] + [pad] * gap + r[n:])
            mask.append([0] * (cached - n) + [1] * n + [0] * gap + [1] * (len(r) - n))
        device = self.model.device
        sampling = self.temperature > 0
        # disable_compile: a static cache would otherwise make generate() compile the model on a GPU, again for
        # every new cache length (each turn has its own)
        kwargs: dict[str, Any] = {"do_sample": sampling, "disable_compile": True}
        if sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        keep = self.episode_cache and self._plain_layers is not False
        total = cached + width + budget
        if cached or keep:
            kwargs[self._cache_name] = self._batch_cache(known, cached, len(rows), total)
        elif self.kv_cache == "static":
            kwargs["cache_implementation"] = "static"
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=budget,
                stop_strings=[STOP],
                tokenizer=tok,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
                **kwargs,
            )
        new = generated[:, cached + width :].tolist()
        stops = [_stop(ids, tok) for ids in new]
        kept = [ids[:count] for ids, (count, _) in zip(new, stops, strict=True)]
        self.decode_rows[0] += sum(map(len, kept))
        self.decode_rows[1] += len(new) * len(new[0]) if new else 0
        if keep:
            cache = kwargs[self._cache_name]
            if self._plain_layers is None:
                self._plain_layers = _plain(cache)
            if self._plain_layers:
                layers = _layers(cache)
                fed = len(new[0]) - 1 if new else 0  # the last generated token was never fed back
                fed = min(fed, int(cache.get_seq_length()) - cached - width)  # whatever generate() chose to feed
                for i, (r, (n, _), ids) in enumerate(zip(rows, known, kept, strict=True)):
                    k = min(len(ids), fed)
                    where = [*range(cached - n, cached), *range(cached + width - (len(r) - n), cached + width),
                             *range(cached + width, cached + width + k)]
                    index = torch.tensor(where, device=device)
                    scratches[i][_KV] = _Prefix(
                        r + new[i][:k], [(kv[0][i : i + 1].index_select(2, index),
                                          kv[1][i : i + 1].index_select(2, index)) for kv in layers])
        return [(ids, stopped) for ids, (_, stopped) in zip(kept, stops, strict=True)]

    def _batch_cache(self, known: list[tuple[int, _Prefix | None]], cached: int, rows: int, total: int):
        """The cache ``generate`` starts from: row i's known prefix right-aligned in the first ``cached`` positions;
        static caches have room for ``total`` positions."""
        from transformers import DynamicCache, StaticCache

        layers = _join(known, cached) if cached else []
        if self.kv_cache == "dynamic":
            return DynamicCache(ddp_cache_data=layers) if layers else DynamicCache(config=self.model.config)
        cache = StaticCache(config=self.model.config, max_cache_len=total)
        for index, (keys, values) in enumerate(layers):  # allocates each layer at ``total`` and copies the prefix in
            cache.update(keys, values, index)
        return cache

    def _decode(self, ids: list[int]) -> Action:
        count, _ = _stop(ids, self.tokenizer)
        text = self.tokenizer.decode(ids[:count], skip_special_tokens=True)
        if STOP in text:
            text = text[: text.index(STOP) + len(STOP)]
        return Action(text.strip(), tokens=count)


def _stop(ids: Sequence[int], tok) -> tuple[int, bool]:
    """How many of the generated ``ids`` count (up to and including an end-of-turn token, before padding), and
    whether a stop token was met."""
    for i, t in enumerate(ids):
        if t in (tok.eos_token_id, tok.pad_token_id):
            return i + (t == tok.eos_token_id), True
    return len(ids), False


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class _Prefix:
    """Token ids and, per layer, their key and value tensors (batch 1, heads, len(ids), head dim)."""

    ids: list[int]
    layers: list[tuple[Any, Any]]


def _layers(cache) -> list[tuple[Any, Any]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _plain(cache) -> bool:
    """Whether every layer of ``cache`` is a plain full-attention layer (``DynamicLayer`` or ``StaticLayer``, not a
    sliding-window or quantized one), whose positions can be sliced and joined safely."""
    from transformers.cache_utils import DynamicLayer, StaticLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, StaticLayer) for layer in layers)


def _join(known: list[tuple[int, _Prefix | None]], width: int) -> list[tuple[Any, Any]]:
    """Per layer, batch key and value tensors of ``width`` positions: row i holds its known prefix right-aligned
    after zero padding."""
    some = next(p for _, p in known if p is not None)
    layers = []
    for layer, (k0, v0) in enumerate(some.layers):
        keys = k0.new_zeros((len(known), k0.shape[1], width, k0.shape[3]))
        values = v0.new_zeros((len(known), v0.shape[1], width, v0.shape[3]))
        for i, (n, prefix) in enumerate(known):
            if n:
                keys[i, :, width - n :] = prefix.layers[layer][0][0, :, :n]
                values[i, :, width - n :] = prefix.layers[layer][1][0, :, :n]
        layers.append((keys, values))
    return layers


def _as_dtype(model, dtype: Any):
    """``model`` itself when ``dtype`` is None or already its dtype, else a copy converted to ``dtype``."""
    if dtype is None or dtype == "auto":
        return model
    import copy

    from training.models import resolve_dtype

    target = resolve_dtype(dtype, device=model.device)
    return model if target == model.dtype else copy.deepcopy(model).to(target)
