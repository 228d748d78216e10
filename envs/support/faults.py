"""The support desk's domain faults: seeded mistakes, a colleague's concurrent edit, and read-backs of writes.

The core draws *whether* a fault fires; these functions decide *what* it does in this domain. Transient errors, rate
limits, write timeouts and stale reads need nothing domain-specific beyond ``read_back``.

Seeded mistakes (the episode starts after an earlier agent's wrong action, visible in the prompt's transcript):

- ``refund_wrong_order``: the refund the customer asked for went to another of their orders;
- ``refund_whole_order``: every item of the order was refunded instead of the damaged ones;
- ``double_refund``: the right refund was issued twice;
- ``wrong_credit``: store credit of the wrong amount;
- ``forbidden_refund``: a refund the policy forbids (outside the window, above the limit, another customer's order);
- ``wrong_address``: the new address was typed wrong, or set on the wrong order;
- ``unrequested_refund``: a refund on an order the ticket is not about (applies to every ticket with a customer).

The reference plan is a diff from the current state (``plan.py``), so it voids or corrects these without knowing
which one fired.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from ..core import SeededError, ToolCall
from .plan import money_diff
from .state import Change, DeskState, same_address
from .tasks import SupportTask


def seed_error(state: DeskState, task: SupportTask, rng: np.random.Generator) -> SeededError | None:
    """One earlier wrong action that fits the ticket (after the earlier agent's lookup and verification), or None."""
    if task.template == "policy_question":
        return None
    r = random.Random(int(rng.integers(2**63)))
    options = _mistakes(state, task, r)
    kind = r.choice(sorted({k for k, _ in options}))  # kinds equally likely, whatever their number of variants
    wrong = r.choice([calls for k, calls in options if k == kind])
    context = [ToolCall("find_customer", {"email": task.email})]
    if task.postal_code:
        context.append(ToolCall("verify_identity", {"customer_id": task.customer_id, "email": task.email,
                                                    "postal_code": task.postal_code}))
    return SeededError(kind, wrong, context)


def mark_earlier(state: DeskState) -> None:
    """Mark every transaction and change in ``state`` as the earlier agent's (``by="earlier"``)."""
    for t in state.transactions:
        t.by = "earlier"
    state.changes[:] = [dataclasses.replace(c, by="earlier") for c in state.changes]


def seeded_error_undone(state: DeskState, task: SupportTask) -> bool:
    """Whether the earlier agent's mistakes are undone: none of its transactions is still owed a void, and every
    address it changed is what the ticket wants (or what it was)."""
    voids = set(money_diff(state, task)[0])
    if any(t.by == "earlier" and t.txn_id in voids for t in state.transactions):
        return False
    wanted = dict(task.expected.addresses)
    orders = state.world.orders
    return all(same_address(state.address[c.order_id], wanted.get(c.order_id, orders[c.order_id].address))
               for c in state.changes if c.by == "earlier" and c.kind == "address")


def _mistakes(s: DeskState, task: SupportTask, r: random.Random) -> list[tuple[str, list[ToolCall]]]:
    """Every seeded mistake that fits this ticket, as (kind, the wrong calls)."""
    w, exp, cid = s.world, task.expected, task.customer_id
    mine = w.customers[cid].order_ids
    delivered = [o for o in mine if w.orders[o].status == "delivered"]

    def refund(order_id, skus):
        return ToolCall("refund_items", {"order_id": order_id, "skus": list(skus)})

    by_order: dict[str, list[str]] = {}
    for o, sku in exp.refunds:
        by_order.setdefault(o, []).append(sku)
    touched = {i.order_id for i in task.issues}
    spare = [o for o in delivered if o not in touched]
    options = [("unrequested_refund", [refund(o, [r.choice(w.orders[o].skus)])]) for o in spare[:1]]
    for o, skus in by_order.items():
        others = [x for x in delivered if x != o and x not in by_order]
        if others:
            x = r.choice(others)
            options.append(("refund_wrong_order", [refund(x, [r.choice(w.orders[x].skus)])]))
        if len(w.orders[o].skus) > len(skus):
            options.append(("refund_whole_order", [refund(o, w.orders[o].skus)]))
        amount = sum(w.products[k].price for k in skus)
        if 2 * amount <= sum(c.amount for c in w.orders[o].charges):
            options.append(("double_refund", [refund(o, skus), refund(o, skus)]))
    for amount in exp.credits:
        wrong = amount + r.choice((500, 1000, 2500))
        options.append(("wrong_credit", [ToolCall("issue_store_credit", {"customer_id": cid, "amount": wrong / 100})]))
    for issue in task.issues:
        order = w.orders.get(issue.order_id)
        if issue.kind in ("refund_outside_window", "refund_over_limit") or (
                issue.kind == "other_customer" and order.status == "delivered"):
            options.append(("forbidden_refund", [refund(order.order_id, order.skus[:1])]))
        if issue.kind == "address_change" and task.template != "identity_mismatch":
            target = [o for o in mine if w.orders[o].status == "processing" and o != issue.order_id]
            number, rest = issue.address.split(" ", 1)
            typo = f"{int(number) + r.randrange(1, 9)} {rest}"
            calls = [ToolCall("change_shipping_address", {"order_id": issue.order_id, "address": typo})]
            if target:
                calls = [ToolCall("change_shipping_address", {"order_id": target[0], "address": issue.address})]
            options.append(("wrong_address", calls))
    return options


def concurrent_edit(s: DeskState, task: SupportTask, rng: np.random.Generator) -> str | None:
    """A colleague working a duplicate ticket makes one change this ticket still needs; None if nothing is pending.

    The expected final state is unchanged, so the agent must re-read and not repeat the change (a repeated refund
    or credit would be a double refund).
    """
    w, exp, cid = s.world, task.expected, task.customer_id
    _, refunds, charges, credits = money_diff(s, task)
    if refunds:
        o, sku = next(iter(refunds))
        s.add_transaction("refund", cid, w.products[sku].price, order_id=o, skus=(sku,), verified=True, by="colleague")
        return f"a colleague refunded {sku} on {o}"
    if charges:
        o = min(charges)
        charge = w.orders[o].charges[-1]
        s.add_transaction("charge_refund", cid, charge.amount, order_id=o, charge_id=charge.charge_id, verified=True,
                          by="colleague")
        return f"a colleague refunded the duplicate charge {charge.charge_id} on {o}"
    if credits:
        t = s.add_transaction("store_credit", cid, credits[0], verified=True, by="colleague")
        return f"a colleague issued store credit {t.txn_id}"
    for o, new in exp.addresses:
        if not same_address(s.address[o], new) and s.status[o] == "processing":
            s.address[o] = new
            s.changes.append(_change("address", cid, o))
            return f"a colleague changed the address of {o}"
    for o in exp.cancels:
        if s.status[o] == "processing":
            s.status[o] = "cancelled"
            s.changes.append(_change("cancel", cid, o))
            return f"a colleague cancelled {o}"
    return None


def _change(kind: str, customer_id: str, order_id: str) -> Change:
    return Change(kind, customer_id, order_id, verified=True, by="colleague")


def read_back(state: DeskState, task: SupportTask, call: ToolCall) -> ToolCall:
    """The read that shows whether ``call`` (a write) took effect."""
    order_id = call.arguments.get("order_id")
    if isinstance(order_id, str) and order_id.strip().upper() in state.world.orders:
        return ToolCall("lookup_order", {"order_id": order_id})
    if call.name == "issue_store_credit":
        return ToolCall("find_customer", {"email": task.email})
    return ToolCall("view_ticket", {})
