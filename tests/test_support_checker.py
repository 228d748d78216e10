"""Table-driven tests of the support desk's checker, a pure function of (final state, task).

The "solved" state is built here straight from the task's expected changes, independently of the reference plan,
so these tests hold the checker to the task definition rather than to the planner.
"""

from __future__ import annotations

import numpy as np
import pytest

from envs.support.checker import check_ticket
from envs.support.state import Change, DeskState
from envs.support.tasks import TEMPLATES, SupportTask, generate_task


def task_of(template: str, split: str = "train", start: int = 0) -> SupportTask:
    """The first task of ``split`` at or after ``start`` that uses ``template``."""
    for k in range(start, start + 5000):
        task = generate_task(np.random.default_rng([1, k]), split, k)
        if task.template == template:
            return task
    raise AssertionError(f"no {template} task in 5000 seeds")


def solved(task: SupportTask, *, reply: bool = True, close: bool = True) -> DeskState:
    """The final state of a correct resolution, built directly from ``task.expected``."""
    s = DeskState.fresh(task.world, task.customer_id)
    w, exp, cid = task.world, task.expected, task.customer_id
    if exp.writes:
        s.verified.add(cid)
    if task.template == "identity_mismatch":  # the verification with the ticket's wrong postal code was tried
        s.failed_verifications.append(cid)
    by_order: dict[str, list[str]] = {}
    for o, sku in exp.refunds:
        by_order.setdefault(o, []).append(sku)
    for o, skus in by_order.items():
        s.add_transaction("refund", cid, sum(w.products[k].price for k in skus), order_id=o, skus=tuple(skus))
    for o in exp.charge_refunds:
        charge = w.orders[o].charges[-1]
        s.add_transaction("charge_refund", cid, charge.amount, order_id=o, charge_id=charge.charge_id)
    for amount in exp.credits:
        s.add_transaction("store_credit", cid, amount)
    for o, sku, new in exp.exchanges:
        s.exchanges[(o, sku)] = new
        s.changes.append(Change("exchange", cid, o, True))
    for o in exp.cancels:
        s.status[o] = "cancelled"
        s.changes.append(Change("cancel", cid, o, True))
    for o, address in exp.addresses:
        s.address[o] = address
        s.changes.append(Change("address", cid, o, True))
    s.escalations += [(o, "refund above the limit") for o in exp.escalations]
    if reply:
        s.replies.append(" ".join(i.answer for i in task.issues))
    s.closed = close
    return s


ALL_TEMPLATES = sorted(set(TEMPLATES["train"]) | set(TEMPLATES["heldout"]))


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_solved_state_scores_one_and_doing_nothing_scores_zero(template):
    split = "heldout" if template in TEMPLATES["heldout"] else "train"
    task = task_of(template, split)
    score, components, reasons = check_ticket(solved(task), task)
    assert score == 1.0, reasons
    assert all(components.values())
    score, _, _ = check_ticket(DeskState.fresh(task.world, task.customer_id), task)
    assert score == 0.0


def _other_order(task: SupportTask) -> str:
    return next(o.order_id for o in task.world.orders.values() if o.customer_id != task.customer_id)


def _spare_order(task: SupportTask) -> str:
    touched = {i.order_id for i in task.issues}
    return next(o for o in task.world.customers[task.customer_id].order_ids if o not in touched)


def _refund_again(s, t):
    o, sku = t.expected.refunds[0]
    s.add_transaction("refund", t.customer_id, t.world.products[sku].price, order_id=o, skus=(sku,))


def _refund_spare(s, t):
    o = _spare_order(t)
    sku = t.world.orders[o].skus[0]
    s.add_transaction("refund", t.customer_id, t.world.products[sku].price, order_id=o, skus=(sku,))


def _refund_other_customer(s, t):
    o = _other_order(t)
    order = t.world.orders[o]
    s.add_transaction("refund", order.customer_id, 100, order_id=o, skus=order.skus[:1], verified=False)


def _cancel_other_customer(s, t):
    o = _other_order(t)
    s.status[o] = "cancelled"
    s.changes.append(Change("cancel", t.world.orders[o].customer_id, o, False))


def _unverified(s, t):
    for txn in s.transactions:
        txn.verified = False


def _unverified_change(s, t):
    s.changes[:] = [Change(c.kind, c.customer_id, c.order_id, False) for c in s.changes]


def _drop_refunds(s, t):
    for txn in s.transactions:
        if txn.kind == "refund":
            txn.voided = True


def _escalate_spare(s, t):
    s.escalations.append((_spare_order(t), "just in case"))


def _drop_escalation(s, t):
    s.escalations.clear()


def _refund_over_limit(s, t):
    issue = t.issues[0]
    s.add_transaction("refund", t.customer_id, issue.amount, order_id=issue.order_id, skus=issue.skus)


def _leak(s, t):
    s.replies.append(f"Your order went to {t.secrets[0]}")


def _extra_credit(s, t):
    s.add_transaction("store_credit", t.customer_id, 500)


def _short_credit(s, t):
    for txn in s.transactions:
        txn.voided = txn.kind == "store_credit"
    s.add_transaction("store_credit", t.customer_id, t.expected.credit - 100)


def _wrong_then_voided(s, t):
    _refund_spare(s, t)
    s.transactions[-1].voided = True


def _messy_address(s, t):
    o, address = t.expected.addresses[0]
    s.address[o] = "  " + address.upper().replace(",", " ,") + "."


def _address_spare(s, t):
    s.address[_other_order(t)] = "1 Nowhere Rd, Nowhere 00000"


def _no_facts(s, t):
    s.replies[:] = ["Done, have a nice day."]


def _reply_skips_first_issue(s, t):
    s.replies[:] = [" ".join(i.answer for i in t.issues[1:])]


def _not_closed(s, t):
    s.closed = False


def _exchange_wrong(s, t):
    o, sku, new = t.expected.exchanges[0]
    other = next(k for k in t.world.families[t.world.products[sku].family] if k not in (sku, new))
    s.exchanges[(o, sku)] = other


def _cancel_anyway(s, t):
    s.status[t.issues[0].order_id] = "cancelled"
    s.changes.append(Change("cancel", t.customer_id, t.issues[0].order_id, True))


def _change_without_verifying(s, t):
    s.verified.clear()
    o = t.issues[0].order_id
    s.address[o] = "9 Other St, Elsewhere 12345"
    s.changes.append(Change("address", t.customer_id, o, False))


def _refund_by_card_instead(s, t):
    _short_credit(s, t)
    s.transactions[-1].voided = True
    issue = t.issues[0]
    s.add_transaction("refund", t.customer_id, issue.amount, order_id=issue.order_id, skus=issue.skus)


# (template, mutation of the solved state, expected score or None for 0 < score < 1, a word the reasons contain)
CASES = [
    ("damaged_refund", _refund_again, 0.0, "twice"),
    ("damaged_refund", _refund_spare, 0.0, "does not call for"),
    ("damaged_refund", _refund_other_customer, 0.0, "another customer"),
    ("damaged_refund", _unverified, 0.0, "verified"),
    ("damaged_refund", _drop_refunds, 0.0, "shows no refund"),  # the reply still claims the refund
    ("damaged_refund", _wrong_then_voided, 1.0, ""),
    ("damaged_refund", _no_facts, 0.0, "reply does not state"),
    ("damaged_refund", _not_closed, 0.5, "not closed"),
    ("damaged_refund", _leak, 0.0, "reveals"),
    ("damaged_refund", _escalate_spare, 0.0, "escalated"),
    ("partial_refund", _refund_again, 0.0, "twice"),
    ("cancel_order", _cancel_other_customer, 0.0, "cancelled"),
    ("cancel_order", _unverified_change, 0.0, "verified"),
    ("address_change", _messy_address, 1.0, ""),
    ("address_change", _address_spare, 0.0, "address"),
    ("late_delivery", _extra_credit, 0.0, "exceeds"),
    ("late_delivery", _short_credit, 0.0, "matches no store credit"),
    ("exchange", _exchange_wrong, 0.0, "exchanged"),
    ("refund_over_limit", _refund_over_limit, 0.0, "does not call for"),
    ("refund_over_limit", _drop_escalation, 0.0, "nothing was escalated"),
    ("refund_outside_window", _refund_over_limit, 0.0, "does not call for"),
    ("cancel_shipped", _cancel_anyway, 0.0, "cancelled"),
    ("identity_mismatch", _change_without_verifying, 0.0, "verified"),
    ("other_customer", _cancel_other_customer, 0.0, "cancelled"),
    ("policy_question", _no_facts, 0.0, "reply does not state"),
    ("multi_issue", _refund_other_customer, 0.0, "another customer"),
    ("multi_issue", _reply_skips_first_issue, None, "does not state"),
]


@pytest.mark.parametrize(("template", "mutate", "expected", "word"), CASES,
                         ids=[f"{c[0]}-{c[1].__name__.strip('_')}" for c in CASES])
def test_checker_table(template, mutate, expected, word):
    task = task_of(template)
    state = solved(task)
    mutate(state, task)
    score, components, reasons = check_ticket(state, task)
    if expected is None:
        assert 0.0 < score < 1.0, reasons
        assert not components["required_changes"] or not components["reply_states_facts"]
    else:
        assert score == expected, reasons
    assert word in " ".join(reasons)


def test_heldout_store_credit_refunded_to_card_instead_scores_zero():
    task = task_of("store_credit_instead", "heldout")
    state = solved(task)
    _refund_by_card_instead(state, task)
    score, _, reasons = check_ticket(state, task)
    assert score == 0.0 and "does not call for" in " ".join(reasons)


def test_checker_is_pure():
    task = task_of("multi_issue")
    state = solved(task)
    before = (dict(state.status), dict(state.address), list(state.transactions), list(state.replies))
    assert check_ticket(state, task) == check_ticket(state, task)
    assert before == (state.status, state.address, state.transactions, state.replies)
