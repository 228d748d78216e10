"""The privileged reference plan: the calls that take the *current* state to the task's expected final state.

The plan is a diff, not a script: money that should not have moved (a seeded mistake, a duplicate) is voided,
money that is still owed is paid, and changes already made (by a colleague, or by an earlier write that timed out
but went through) are not repeated. Planning from any state is what lets the core re-plan after a fault.
"""

from __future__ import annotations

from collections import Counter

from ..core.tools import ToolCall
from .state import DeskState, same_address
from .tasks import SupportTask

_LOOKUP_KINDS = {"other_customer", "policy_question"}  # issues that need no order lookup


def money_diff(state: DeskState, task: SupportTask) -> tuple[list[str], Counter, set[str], list[int]]:
    """Transactions to void, and the refunds (order, sku), charge refunds and credits still missing."""
    exp = task.expected
    voids = []
    want = Counter(exp.refunds)
    charges = set(exp.charge_refunds)
    credits = list(exp.credits)
    for t in state.transactions:
        if t.voided:
            continue
        if t.kind == "refund":
            pairs = Counter((t.order_id, s) for s in t.skus)
            if all(want[p] >= n for p, n in pairs.items()):
                want -= pairs
                continue
        elif t.kind == "charge_refund" and t.order_id in charges:
            charges.discard(t.order_id)
            continue
        elif t.kind == "store_credit" and t.customer_id == task.customer_id and t.amount in credits:
            credits.remove(t.amount)
            continue
        voids.append(t.txn_id)
    return voids, +want, charges, credits


def reference_plan(state: DeskState, task: SupportTask) -> list[ToolCall]:
    """Every call the reference policy makes from ``state``, ending with the reply and close_ticket."""
    w = state.world
    if task.template == "policy_question":
        return [_reply(state, task), ToolCall("close_ticket", {})]
    calls = [ToolCall("find_customer", {"email": task.email})]
    voids, refunds, charges, credits = money_diff(state, task)
    calls += [ToolCall("void_transaction", {"transaction_id": t}) for t in voids]
    cid = task.customer_id
    addresses = dict(task.expected.addresses)
    wrong_address = [o for o in w.customers[cid].order_ids
                     if not same_address(state.address[o], addresses.get(o, w.orders[o].address))]
    exchanges = [x for x in task.expected.exchanges if state.exchanges.get(x[:2]) != x[2]]
    cancels = [o for o in task.expected.cancels if state.status[o] != "cancelled"]
    writes = refunds or charges or credits or wrong_address or exchanges or cancels
    if task.template == "identity_mismatch" or (writes and cid not in state.verified):
        calls.append(ToolCall("verify_identity", {"customer_id": cid, "email": task.email,
                                                  "postal_code": task.postal_code}))
    for o in wrong_address:  # an address an earlier mistake changed: put it back first
        if o not in addresses:
            calls.append(ToolCall("change_shipping_address", {"order_id": o, "address": w.orders[o].address}))
    if task.template != "identity_mismatch":
        for issue in task.issues:
            calls += _resolve(state, task, issue, refunds, charges, credits, exchanges)
            if issue.order_id in cancels:
                calls.append(ToolCall("cancel_order", {"order_id": issue.order_id}))
            if issue.kind == "address_change" and issue.order_id in wrong_address:
                calls.append(ToolCall("change_shipping_address", {"order_id": issue.order_id,
                                                                  "address": issue.address}))
    calls += [_reply(state, task), ToolCall("close_ticket", {})]
    return calls


def _resolve(state: DeskState, task: SupportTask, issue, refunds: Counter, charges: set[str], credits: list[int],
             exchanges: list[tuple[str, str, str]]) -> list[ToolCall]:
    """The lookups and money moves for one issue (the caller adds its cancellation or address change)."""
    kind, oid = issue.kind, issue.order_id
    if kind in _LOOKUP_KINDS:
        return []
    calls = [ToolCall("lookup_order", {"order_id": oid})]
    if kind == "exchange_out_of_stock":
        calls.append(ToolCall("lookup_product", {"sku": issue.new_skus[0]}))
    pending = [s for (o, s) in refunds if o == oid]
    if pending:
        calls.append(ToolCall("refund_items", {"order_id": oid, "skus": pending}))
    for o, sku, new in exchanges:
        if o == oid:
            calls.append(ToolCall("lookup_product", {"sku": new}))
            calls.append(ToolCall("exchange_item", {"order_id": oid, "sku": sku, "new_sku": new}))
    if kind == "duplicate_charge" and oid in charges:
        charge = state.world.orders[oid].charges[-1].charge_id
        calls.append(ToolCall("refund_charge", {"order_id": oid, "charge_id": charge}))
    if kind in ("late_delivery", "store_credit_instead") and issue.amount in credits:
        credits.remove(issue.amount)
        calls.append(ToolCall("issue_store_credit", {"customer_id": task.customer_id, "amount": issue.amount / 100}))
    if kind == "refund_over_limit" and oid not in {e[0] for e in state.escalations}:
        calls.append(ToolCall("escalate_to_human", {
            "order_id": oid, "reason": f"customer requests a refund of {issue.skus[0]} above the refund limit"}))
    return calls


def _reply(state: DeskState, task: SupportTask) -> ToolCall:
    first = state.world.customers[task.customer_id].name.split()[0]
    body = " ".join(i.answer for i in task.issues)
    return ToolCall("reply_to_customer", {"message": f"Hi {first}, {body} Is there anything else I can help with?"})
