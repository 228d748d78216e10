"""The tiny model's tokenizer: ids and emails split the same way whether or not its training text contained them."""

import pytest

from training.models import _train_tokenizer

TEXTS = [
    f"Ticket T-{400000 + 7 * i} from dana.lindqvist@example.com:\nPlease cancel order O-{10000 + 37 * i}.\n"
    f"customer C-{1000 + i}: Dana Lindqvist <dana.lindqvist@example.com>\nrefund R-1 issued: ${i}.99\n"
    for i in range(200)
]


@pytest.fixture(scope="module")
def llama_tokenizer():
    return _train_tokenizer(TEXTS, 2048, "llama")


def pieces(tokenizer, text: str) -> list[str]:
    return [tokenizer.decode([i]) for i in tokenizer.encode(text).ids]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("O-10037", ["O-", "100", "37"]),  # in the training text
        ("O-98765", ["O-", "987", "65"]),  # never seen
        ("C-1042", ["C-", "104", "2"]),
        ("$12.99", ["$", "12", ".", "99"]),
    ],
)
def test_numbers_split_into_digit_groups_seen_or_not(llama_tokenizer, text, expected):
    assert pieces(llama_tokenizer, text) == expected


def test_no_single_email_or_id_becomes_a_token(llama_tokenizer):
    vocab = {llama_tokenizer.decode([i]) for i in range(llama_tokenizer.get_vocab_size())}
    assert not [t for t in vocab if "@" in t and t.split("@")[0]], "an email's local part merged with its domain"
    assert not [t for t in vocab if any(c.isdigit() for c in t) and not t.strip("$.").isdigit()]
    seen = pieces(llama_tokenizer, "dana.lindqvist@example.com")
    unseen = pieces(llama_tokenizer, "dana.okafor@example.com")
    assert seen[-1] == unseen[-1] == "@example.com" and seen[0] == unseen[0]


@pytest.mark.parametrize(
    ("capability", "flags", "expected"),
    [
        ("AVX512", {"avx512f", "avx512_bf16"}, True),
        ("AVX512", {"avx512f", "amx_bf16"}, True),
        ("AVX512", {"avx512f"}, False),  # AVX-512 without BF16: torch emulates bf16, slower than float32
        ("AVX2", {"avx2", "avx512_bf16"}, False),  # torch's kernels would not use it
        ("DEFAULT", set(), False),  # e.g. an ARM CPU, or flags that cannot be read
    ],
)
def test_bf16_is_chosen_only_where_the_cpu_computes_it(monkeypatch, capability, flags, expected):
    import torch

    import training.models as models

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(models, "_cpu_flags", lambda: flags)
    assert models.cpu_supports_bf16() is expected
    assert models.fast_dtype("cpu") == (torch.bfloat16 if expected else torch.float32)
    assert models.resolve_dtype("fast", "cpu") == models.fast_dtype("cpu")
    assert models.resolve_dtype("bfloat16", "cpu") == torch.bfloat16  # asked for by name: given as asked


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    import training.models as models

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    real_path = models.Path
    monkeypatch.setattr(models, "Path", lambda p: real_path(cpuinfo) if p == "/proc/cpuinfo" else real_path(p))
    assert models._cpu_flags() == {"fpu", "sse", "avx512f", "avx512_bf16"}
    monkeypatch.setattr(models, "Path", lambda p: real_path(tmp_path / "missing"))
    assert models._cpu_flags() == set()


def test_unknown_dtype_names_the_valid_ones():
    from training.models import resolve_dtype

    with pytest.raises(ValueError, match="'fast'"):
        resolve_dtype("bf16")
