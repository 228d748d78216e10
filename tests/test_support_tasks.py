"""The support desk's ticket generator: determinism, splits, variety and step counts."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from envs.support.plan import reference_plan
from envs.support.state import REFUND_LIMIT, REFUND_WINDOW_DAYS, DeskState
from envs.support.tasks import HELDOUT_KINDS, HELDOUT_PAIRS, TEMPLATES, generate_task


def tasks(split: str, n: int, offset: int = 0):
    return [generate_task(np.random.default_rng([3, offset + k]), split, offset + k) for k in range(n)]


@pytest.fixture(scope="module")
def train():
    return tasks("train", 3000)


@pytest.fixture(scope="module")
def heldout():
    return tasks("heldout", 1500)


def test_same_seed_same_task_and_different_seeds_differ():
    a = generate_task(np.random.default_rng([5, 9]), "train", 9)
    b = generate_task(np.random.default_rng([5, 9]), "train", 9)
    c = generate_task(np.random.default_rng([5, 10]), "train", 10)
    assert a == b
    assert a.message != c.message


def test_train_has_at_least_twelve_templates_and_draws_them_all(train):
    assert len(TEMPLATES["train"]) >= 12
    assert {t.template for t in train} == set(TEMPLATES["train"])


def test_heldout_holds_out_whole_templates_and_issue_pairs(train, heldout):
    assert not set(TEMPLATES["heldout"]) & set(TEMPLATES["train"])
    for t in train:
        kinds = {i.kind for i in t.issues}
        assert not kinds & set(HELDOUT_KINDS), t.template
        assert not any(set(pair) <= kinds for pair in HELDOUT_PAIRS), (t.template, kinds)
    for t in heldout:
        kinds = {i.kind for i in t.issues}
        assert kinds & set(HELDOUT_KINDS) or any(set(pair) <= kinds for pair in HELDOUT_PAIRS), kinds
    assert {t.template for t in heldout} == set(TEMPLATES["heldout"])


def test_required_steps_span_two_to_over_twenty(train, heldout):
    """The reference's calls from the start, which the core counts as ``required_steps``."""
    steps = [len(reference_plan(DeskState.fresh(t.world, t.customer_id), t)) for t in train + heldout]
    assert min(steps) == 2
    assert max(steps) >= 20


def test_wording_varies_within_a_template(train):
    openings = collections.defaultdict(set)
    for t in train:
        openings[t.template].add(t.message.split("\n")[0][:25])
    for template, seen in openings.items():
        assert len(seen) >= 3, (template, seen)


def test_every_task_has_facts_to_state_and_other_customers_to_protect(train, heldout):
    for t in train + heldout:
        assert t.facts and all(t.facts)
        assert t.secrets
        assert t.email in t.world.customers[t.customer_id].email


def test_generated_orders_fit_the_policy_they_test(train):
    for t in train:
        w = t.world
        for issue in t.issues:
            order = w.orders.get(issue.order_id)
            age = w.today - order.delivered if order and order.delivered else None
            if issue.kind in ("damaged_refund", "partial_refund", "exchange"):
                assert age is not None and age <= REFUND_WINDOW_DAYS
                assert sum(w.products[s].price for s in issue.skus) <= REFUND_LIMIT or issue.kind == "exchange"
            if issue.kind == "refund_outside_window":
                assert age > REFUND_WINDOW_DAYS
            if issue.kind == "refund_over_limit":
                assert issue.amount > REFUND_LIMIT
            if issue.kind == "other_customer":
                assert order.customer_id != t.customer_id
            if issue.kind in ("cancel_order", "address_change"):
                assert order.status == "processing"
        if t.template == "identity_mismatch":
            assert t.postal_code != w.customers[t.customer_id].postal_code


def test_heldout_out_of_stock_exchanges_really_are_out_of_stock(heldout):
    for t in heldout:
        for issue in t.issues:
            if issue.kind == "exchange_out_of_stock":
                assert t.world.stock[issue.new_skus[0]] == 0
