"""The batched transformers policy on a tiny random model: batching does not change what is played."""

import contextlib
import json

import gymnasium
import pytest

import envs  # noqa: F401
from training.evaluation.model_policy import TransformersPolicy, policy_name  # torch only when a policy is built
from training.evaluation.policies import BestOfKPolicy, ScaffoldPolicy
from training.evaluation.runner import EvalConfig, load_episodes, run_eval
from training.models import build_tiny_model, load_model_and_tokenizer

torch = pytest.importorskip("torch")

SUPPORT = "recoverygym/SupportDesk-v0"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add overhead, and contention on small shared CPUs
    env = gymnasium.make(SUPPORT)
    texts = []
    for k in range(8):
        prompt, info = env.reset(seed=k, options={"task_seed": k, "split": "train"})
        texts += [prompt, json.dumps(info["tools"])]
    path = build_tiny_model(tmp_path_factory.mktemp("tiny"), texts=texts, seed=0)
    model, tokenizer = load_model_and_tokenizer(path)
    yield model, tokenizer
    torch.set_num_threads(threads)


class _AlwaysCalls:
    """A random tiny model never calls a tool, and a turn without a call ends the episode: this wrapper appends a
    (wrong-argument) tool call to each generated action, so episodes run several turns and the caches are reused."""

    def __init__(self, policy):
        self.policy, self.name = policy, policy.name

    def config(self):
        return {"always_calls": self.policy.config()}

    def act(self, episodes):
        from training.evaluation.episode import Action

        call = '<tool_call>{"name": "lookup_customer", "arguments": {}}</tool_call>'
        return [Action(a.text.replace("<tool_call>", "").replace("</tool_call>", "") + call, tokens=a.tokens)
                for a in self.policy.act(episodes)]


def _config(batch_size, **kw):
    return EvalConfig(**({"env_ids": (SUPPORT,), "fault_kinds": ("none",), "tasks": 3, "samples": 2,
                          "max_turns": 3, "batch_size": batch_size} | kw))


def test_prompt_carries_the_tool_schemas(tiny):
    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, max_new_tokens=8)
    env = gymnasium.make(SUPPORT)
    prompt, info = env.reset(seed=0, options={"task_seed": 0, "split": "heldout"})
    from training.evaluation.episode import Episode

    text = policy.render(Episode(env=env, prompt=prompt, info=info, rng=None))
    for schema in info["tools"]:
        assert schema["function"]["name"] in text
    assert text.rstrip().endswith("<|im_start|>assistant")


def test_batched_generation_plays_the_same_episodes_as_one_at_a_time(tiny, tmp_path):
    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, max_new_tokens=12)
    run_eval(policy, _config(batch_size=6), tmp_path / "batched", progress=False)
    run_eval(policy, _config(batch_size=1), tmp_path / "single", progress=False)
    batched = load_episodes(tmp_path / "batched" / "episodes.jsonl")
    single = load_episodes(tmp_path / "single" / "episodes.jsonl")
    assert len(batched) == len(single) == 6
    assert [ep["steps"] for ep in batched] == [ep["steps"] for ep in single]
    for ep in batched:
        assert 0 < ep["generated_tokens"] <= 12 * ep["turns"]
        assert all(0 < step["tokens"] <= 12 for step in ep["steps"])


def test_shared_prefix_cache_changes_nothing_but_the_work(tiny, tmp_path):
    model, tokenizer = tiny
    cached = TransformersPolicy(model, tokenizer, max_new_tokens=12)
    plain = TransformersPolicy(model, tokenizer, max_new_tokens=12, prefix_cache=False)
    config = _config(batch_size=4, fault_kinds=("all",), fault_rate=0.5)
    run_eval(cached, config, tmp_path / "cached", progress=False)
    run_eval(plain, config, tmp_path / "plain", progress=False)
    assert len(cached._prefix_kv) == 1 and not plain._prefix_kv  # one tool-schema prefix, computed once
    prefix = tokenizer.decode(list(next(iter(cached._prefix_kv))))
    env = gymnasium.make(SUPPORT)
    assert all(json.dumps(schema) in prefix for schema in env.unwrapped.tool_schemas())  # every schema is shared
    assert cached.truncated_prompts == 0
    steps = [[s["action"] for s in ep["steps"]] for ep in load_episodes(tmp_path / "cached" / "episodes.jsonl")]
    assert steps == [[s["action"] for s in ep["steps"]] for ep in load_episodes(tmp_path / "plain" / "episodes.jsonl")]


def test_episode_cache_changes_nothing_but_the_work(tiny, tmp_path):
    model, tokenizer = tiny
    kept = TransformersPolicy(model, tokenizer, max_new_tokens=12)
    fresh = TransformersPolicy(model, tokenizer, max_new_tokens=12, episode_cache=False)
    config = _config(batch_size=4, max_turns=5, fault_kinds=("none", "all"), fault_rate=0.5)
    run_eval(_AlwaysCalls(kept), config, tmp_path / "kept", progress=False)
    run_eval(_AlwaysCalls(fresh), config, tmp_path / "fresh", progress=False)
    steps = [[s["action"] for s in ep["steps"]] for ep in load_episodes(tmp_path / "kept" / "episodes.jsonl")]
    assert steps == [[s["action"] for s in ep["steps"]] for ep in load_episodes(tmp_path / "fresh" / "episodes.jsonl")]
    assert sum(kept.prompt_tokens) == sum(fresh.prompt_tokens)  # the same prompts ...
    assert kept.prompt_tokens[0] < fresh.prompt_tokens[0] / 2  # ... most of them no longer recomputed


def test_a_model_whose_cache_cannot_be_sliced_recomputes_everything(tiny, tmp_path, monkeypatch):
    import training.evaluation.model_policy as model_policy

    model, tokenizer = tiny
    config = _config(batch_size=4, max_turns=3)
    reference = TransformersPolicy(model, tokenizer, max_new_tokens=12)
    run_eval(_AlwaysCalls(reference), config, tmp_path / "reference", progress=False)
    monkeypatch.setattr(model_policy, "_plain", lambda cache: False)  # as for sliding-window cache layers
    fallback = TransformersPolicy(model, tokenizer, max_new_tokens=12)
    run_eval(_AlwaysCalls(fallback), config, tmp_path / "fallback", progress=False)
    assert fallback.prompt_tokens[1] == 0 and fallback.prompt_tokens[0] == sum(reference.prompt_tokens)
    steps = [[s["action"] for s in ep["steps"]] for ep in load_episodes(tmp_path / "fallback" / "episodes.jsonl")]
    assert steps == [[s["action"] for s in ep["steps"]]
                     for ep in load_episodes(tmp_path / "reference" / "episodes.jsonl")]


def test_kept_episode_cache_equals_a_fresh_forward_pass_over_its_ids(tiny):
    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, max_new_tokens=8)
    env = gymnasium.make(SUPPORT)
    prompt, info = env.reset(seed=0, options={"task_seed": 0})
    head = tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tools=info["tools"],
                                                   tokenize=False), add_special_tokens=False)["input_ids"][:-8]
    rows = [policy._encode(policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tools=info["tools"], add_generation_prompt=True, tokenize=False))
        for text in (prompt, prompt[:300], "a short one")]  # different lengths, so the rows are padded
    scratches = [{}, {}, {}]  # what each episode carries between turns
    policy._generate(rows, head, scratches, budget=8)
    policy._generate([r + [5, 6, 7] for r in rows], head, scratches, budget=8)  # a second turn reuses the first
    for row, scratch in zip(rows, scratches, strict=True):
        kept = scratch["transformers_kv"]
        assert kept.ids[: len(row) + 3] == row + [5, 6, 7]  # the second prompt, then what was generated from it
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([kept.ids]), use_cache=True)
        fresh = [(layer.keys, layer.values) for layer in out[policy._cache_name].layers]
        for (k, v), (k2, v2) in zip(kept.layers, fresh, strict=True):
            assert k.shape == k2.shape
            torch.testing.assert_close(k, k2, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(v, v2, atol=1e-4, rtol=1e-4)


def test_wrappers_run_around_the_model(tiny, tmp_path):
    model, tokenizer = tiny
    sampled = TransformersPolicy(model, tokenizer, max_new_tokens=6, temperature=1.0, seed=0)
    best = BestOfKPolicy(sampled, k=3)
    res = run_eval(best, _config(batch_size=4, tasks=2, samples=1), tmp_path / "best", progress=False)
    eps = load_episodes(tmp_path / "best" / "episodes.jsonl")
    assert res["policy"].startswith("best-of-3(")
    steps = [step for ep in eps for step in ep["steps"]]
    assert all(step["tokens"] >= 3 for step in steps)  # every one of the k samples is paid for
    assert sum(step["tokens"] for step in steps) / len(steps) > 6  # more than one sample's budget
    scaffold = ScaffoldPolicy(TransformersPolicy(model, tokenizer, max_new_tokens=6))
    res = run_eval(scaffold, _config(batch_size=4, tasks=2, samples=1, fault_kinds=("all",), fault_rate=0.5),
                   tmp_path / "scaffold", progress=False)
    assert res["episodes"] == 2


@pytest.mark.parametrize(("source", "name"), [
    ("runs/quickstart/grpo/final", "quickstart-grpo-final"),  # not "final": sft/final and grpo/final would collide
    ("runs/quickstart/sft/checkpoint-300/", "quickstart-sft-checkpoint-300"),
    ("runs/quickstart/base-model", "quickstart-base-model"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5-0.5B-Instruct"),
    ("/root/.cache/recoverygym/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
    ("final", "final"),
])
def test_policy_names_tell_checkpoints_apart(source, name):
    assert policy_name(source) == name


@pytest.mark.parametrize("episode_cache", [True, False])
def test_static_cache_plays_the_same_greedy_episodes_as_the_dynamic_one(tiny, tmp_path, episode_cache):
    model, tokenizer = tiny
    config = _config(batch_size=4, max_turns=4, fault_kinds=("none", "all"), fault_rate=0.5)
    runs = {}
    for kv_cache in ("static", "dynamic"):
        policy = TransformersPolicy(model, tokenizer, max_new_tokens=12, kv_cache=kv_cache, episode_cache=episode_cache)
        run_eval(_AlwaysCalls(policy), config, tmp_path / kv_cache, progress=False)
        runs[kv_cache] = [[(s["action"], s["tokens"]) for s in ep["steps"]]
                          for ep in load_episodes(tmp_path / kv_cache / "episodes.jsonl")]
        assert policy.config()["kv_cache"] == kv_cache
    assert runs["static"] == runs["dynamic"]
    assert {len(steps) for steps in runs["static"]} == {4}  # every episode ran to the turn limit on kept caches


def test_static_cache_is_what_generate_writes_into(tiny, monkeypatch):
    import transformers

    model, tokenizer = tiny
    seen = []
    generate = model.generate

    def spy(*args, **kwargs):
        seen.append(type(kwargs.get("cache", kwargs.get("past_key_values"))).__name__)
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    env = gymnasium.make(SUPPORT)
    prompt, info = env.reset(seed=0, options={"task_seed": 0})
    from training.evaluation.episode import Episode

    for kv_cache in ("static", "dynamic"):
        policy = TransformersPolicy(model, tokenizer, max_new_tokens=4, kv_cache=kv_cache)
        policy.act([Episode(env=env, prompt=prompt, info=info, rng=None)])
    assert seen == [transformers.StaticCache.__name__, transformers.DynamicCache.__name__]


def test_unknown_kv_cache_is_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="kv_cache='paged'"):
        TransformersPolicy(model, tokenizer, kv_cache="paged")


def test_dtype_of_a_loaded_model_gives_a_converted_copy(tiny, monkeypatch):
    import training.models as models

    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, dtype="bfloat16")
    assert policy.model.dtype == torch.bfloat16 and model.dtype == torch.float32  # the caller's model is untouched
    assert TransformersPolicy(model, tokenizer, dtype="float32").model is model
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)  # a CPU without native bf16: float32 is faster
    assert TransformersPolicy(model, tokenizer, dtype="fast").model is model
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert TransformersPolicy(model, tokenizer, dtype="fast").model.dtype == torch.bfloat16


@contextlib.contextmanager
def _ends_turns_by_length(model, eos_token_id, every=5):
    """A random tiny model never stops early. While this is active it ends a row's turn (end-of-turn token) when
    the row's real length, prompt and generated tokens counted without padding, is a multiple of ``every``: rows of
    one batch stop at different steps, wherever their tokens sit in the batch."""
    lengths = {}

    def before(module, args, kwargs):
        mask = kwargs.get("attention_mask")  # None for a forward without padding (the shared prefix's)
        if isinstance(mask, dict):  # generate() may pass the 4-d masks it built, by layer type
            mask = next(iter(mask.values()))
        if mask is None:
            ids = kwargs["input_ids"]
            lengths["now"] = torch.full(ids.shape[:1], ids.shape[1])
        elif mask.dim() == 2:
            lengths["now"] = mask.sum(-1)
        else:  # (batch, 1, queries, keys): the positions the last query may attend to
            last = mask[:, 0, -1]
            lengths["now"] = (last if last.dtype == torch.bool else last == 0).sum(-1)

    def after(module, args, logits):
        ends = lengths["now"] % every == 0
        logits = logits.clone()
        logits[ends, -1, eos_token_id] = logits[ends, -1].max(-1).values + 10.0
        return logits

    hooks = [model.register_forward_pre_hook(before, with_kwargs=True),
             model.get_output_embeddings().register_forward_hook(after)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("episode_cache", [True, False])
def test_rows_that_finish_leave_the_batch_without_changing_what_is_played(tiny, tmp_path, episode_cache):
    model, tokenizer = tiny
    config = _config(batch_size=6, tasks=6, samples=1, max_turns=4, fault_kinds=("none", "all"), fault_rate=0.5)
    runs, policies = {}, {}
    for regroup_every in (None, 3):
        policy = TransformersPolicy(model, tokenizer, max_new_tokens=14, regroup_every=regroup_every,
                                    episode_cache=episode_cache)
        with _ends_turns_by_length(model, tokenizer.eos_token_id):
            run_eval(_AlwaysCalls(policy), config, tmp_path / str(regroup_every), progress=False)
        runs[regroup_every] = [[(s["action"], s["tokens"]) for s in ep["steps"]]
                               for ep in load_episodes(tmp_path / str(regroup_every) / "episodes.jsonl")]
        policies[regroup_every] = policy
    assert runs[None] == runs[3]
    kept, computed = policies[3].decode_rows
    assert kept == policies[None].decode_rows[0]  # the same tokens generated ...
    assert sum(t for steps in runs[3] for _, t in steps) == kept
    if episode_cache:  # ... with fewer rows decoded as padding: some rows of every batch stop early
        assert computed < policies[None].decode_rows[1]
    else:  # no cache to go on from: one generate call per turn, as without regrouping
        assert computed == policies[None].decode_rows[1]
    assert policies[None].prompt_tokens == policies[3].prompt_tokens
    assert policies[3].config()["regroup_every"] == 3
    assert "regroup_every" not in policies[None].config()  # as before the option: earlier folders still resume


def test_regroup_every_must_not_be_negative(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="regroup_every"):
        TransformersPolicy(model, tokenizer, regroup_every=-1)
