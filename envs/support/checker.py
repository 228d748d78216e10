"""The checker: a pure function of the final state and the task, like tau-bench's goal-state comparison.

Score. Forbidden changes (money moved that the task does not call for, a double refund, another customer's order or
account changed, an unneeded escalation, a change made without verified identity, another customer's details in a
reply) score 0. So does a reply that states none of the required facts: changes the customer is never told about
earn nothing. Otherwise the score is the fraction of required items met, each expected change and each fact the
reply must state, halved if the ticket was not closed. Facts are amounts, sizes, addresses and policy words, never
bare ids, so random calls built from ids on screen cannot state them; doing nothing scores 0; success is 1.0.
"""

from __future__ import annotations

from collections import Counter

from .state import DeskState, money, same_address
from .tasks import SupportTask


def check_ticket(state: DeskState, task: SupportTask) -> tuple[float, dict[str, bool], list[str]]:
    """Return (score, components, reasons) for ``state`` as the final state of ``task``. Never mutates."""
    forbidden: list[str] = []
    missing: list[str] = []
    met = total = 0
    for ok, need in _changes(state, task, forbidden):
        total += 1
        met += ok
        if not ok:
            missing.append(need)
    changes_ok = not missing
    policy: list[str] = [f"{t.txn_id} was made before the customer's identity was verified"
                         for t in state.transactions if not t.voided and not t.verified]
    policy += [f"{c.kind} on {c.order_id} was made before the customer's identity was verified"
               for c in state.changes if not c.verified]
    text = "\n".join(state.replies).lower()
    facts_missing = [alts for alts in task.facts if not any(a.lower() in text for a in alts)]
    total += len(task.facts)
    met += len(task.facts) - len(facts_missing)
    missing += ["the reply does not state " + " / ".join(repr(a) for a in alts) for alts in facts_missing]
    leaked = [s for s in task.secrets if s.lower() in text]
    forbidden += [f"the reply reveals another customer's details ({s!r})" for s in leaked]
    components = {
        "required_changes": changes_ok,
        "no_forbidden_changes": not forbidden,
        "policy_followed": not policy,
        "reply_states_facts": not facts_missing,
        "ticket_closed": state.closed,
    }
    if forbidden or policy:
        return 0.0, components, forbidden + policy + missing
    if len(facts_missing) == len(task.facts):  # no credit for changes the customer is never told about
        return 0.0, components, missing
    score = met / total * (1.0 if state.closed else 0.5)
    reasons = missing + ([] if state.closed else ["the ticket was not closed"])
    return score, components, reasons or ["every required change made, nothing forbidden, the reply states the facts"]


def _changes(state: DeskState, task: SupportTask, forbidden: list[str]):
    """Yield (met, description) per expected change; append every unexpected change to ``forbidden``."""
    w, exp, cid = state.world, task.expected, task.customer_id
    for t in state.transactions:
        if not t.voided and t.customer_id != cid:
            forbidden.append(f"{t.txn_id} moved money on another customer's {t.order_id or 'account'}")
    # item refunds, one entry per unit
    want = Counter(exp.refunds)
    got = Counter((t.order_id, s) for t in state.transactions if not t.voided and t.kind == "refund" for s in t.skus)
    for (o, s), n in got.items():
        if n > want[(o, s)]:
            what = "refunded twice" if want[(o, s)] else "refunded though the task does not call for it"
            forbidden.append(f"{s} on {o} {what}")
    for (o, s), n in want.items():
        yield got[(o, s)] >= n, f"refund {s} on {o}"
    # duplicate-charge refunds
    got_c = Counter(t.order_id for t in state.transactions if not t.voided and t.kind == "charge_refund")
    for o, n in got_c.items():
        if n > (o in exp.charge_refunds):
            forbidden.append(f"a charge on {o} refunded {'twice' if n > 1 else 'without a duplicate charge'}")
    for o in exp.charge_refunds:
        yield got_c[o] >= 1, f"refund the duplicate charge on {o}"
    # store credit, compared in total
    credit = state.credit_balance(cid)
    if credit > exp.credit:
        forbidden.append(f"store credit of {money(credit)} exceeds the {money(exp.credit)} the policy allows")
    if exp.credit:
        yield credit == exp.credit, f"store credit of {money(exp.credit)} (given: {money(credit)})"
    # exchanges, cancellations, addresses, escalations
    want_x = {x[:2]: x[2] for x in exp.exchanges}
    for key, new in state.exchanges.items():
        if want_x.get(key) != new:
            forbidden.append(f"{key[1]} on {key[0]} exchanged for {new}, which the task does not call for")
    for key, new in want_x.items():
        yield state.exchanges.get(key) == new, f"exchange {key[1]} on {key[0]} for {new}"
    for o, status in state.status.items():
        if status == "cancelled" and o not in exp.cancels:
            forbidden.append(f"{o} cancelled though the task does not call for it")
    for o in exp.cancels:
        yield state.status[o] == "cancelled", f"cancel {o}"
    want_a = dict(exp.addresses)
    for o, addr in state.address.items():
        if o not in want_a and not same_address(addr, w.orders[o].address):
            forbidden.append(f"shipping address of {o} changed though the task does not call for it")
    for o, addr in want_a.items():
        yield same_address(state.address[o], addr), f"ship {o} to {addr}"
    escalated = {o for o, _ in state.escalations}
    for o in escalated - set(exp.escalations):
        forbidden.append(f"{o} escalated though the policy lets the agent resolve it")
    for o in exp.escalations:
        yield o in escalated, f"escalate {o}"
