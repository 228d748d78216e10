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
