"""A transformers causal LM as a policy, generating for many episodes in one batch.

torch and transformers are imported only when a ``TransformersPolicy`` is built, so scripted evaluations never
load them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.evaluation.episode import Action, Episode

__all__ = ["TransformersPolicy"]

STOP = "</tool_call>"


class TransformersPolicy:
    """Prompt a chat model with each episode's transcript and tool schemas; one tool call per turn.

    Every call of :meth:`act` renders the conversations of all given episodes with the tokenizer's chat template
    (``tools=info["tools"]``), left-pads them into micro-batches of ``max_batch_size`` and generates them together,
    stopping each row at ``</tool_call>`` or the end-of-turn token. The runner keeps up to its ``batch_size``
    episodes in flight and refills finished slots, so the batch stays full across episodes of different lengths.

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
        self.name = name or Path(self.source.rstrip("/")).name
        limit = getattr(model.config, "max_position_embeddings", None) or 32768
        self.max_prompt_tokens = max(16, limit - max_new_tokens)
        self.truncated_prompts = 0
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
        }

    def render(self, episode: Episode) -> str:
        """The prompt text for the next action of ``episode``."""
        return self.tokenizer.apply_chat_template(
            episode.messages(), tools=episode.tools or None, add_generation_prompt=True, tokenize=False
        )

    def act(self, episodes: Sequence[Episode]) -> list[Action]:
        texts = [self.render(ep) for ep in episodes]
        out: list[Action] = []
        for start in range(0, len(texts), self.max_batch_size):
            out.extend(self._generate(texts[start : start + self.max_batch_size]))
        return out

    def _generate(self, texts: list[str]) -> list[Action]:
        import torch

        tok = self.tokenizer
        rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        for i, ids in enumerate(rows):
            if len(ids) > self.max_prompt_tokens:  # keep the most recent context; counted in truncated_prompts
                rows[i] = ids[-self.max_prompt_tokens :]
                self.truncated_prompts += 1
        width = max(map(len, rows))
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.model.device)
        attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.model.device)
        sampling = self.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": sampling}
        if sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=self.max_new_tokens,
                stop_strings=[STOP],
                tokenizer=tok,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
                **kwargs,
            )
        new = generated[:, width:].tolist()
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
