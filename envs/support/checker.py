"""The checker: a pure function of the final state and the task, like tau-bench's goal-state comparison.

Score. Forbidden changes (money moved that the task does not call for, a double refund, another customer's order or
account changed, an unneeded escalation, a change made without verified identity, another customer's details in a
reply) score 0. So does a reply that claims what the final state does not show (``claims.py``: a refund, credit,
escalation, cancellation or change that was not made, or a fact about an order that is not so), and a reply that
states none of the required facts beyond order ids: changes the customer is never told about earn nothing.
Otherwise the score is the fraction of required items met, each expected change and each thing the reply must state
(each issue's facts, its order's id first, and its claims, such as "it has shipped"), halved if the ticket was not
closed. What a reply states about a change counts only once the change is in the state, so announcing a refund that
was not made earns nothing. Doing nothing scores 0; success is 1.0.
"""

from __future__ import annotations

import re
from collections import Counter

from .claims import KIND, claimed, false_claims, find_claims
from .state import DeskState, money, same_address
from .tasks import Issue, SupportTask
from .wording import POLICY_QUESTIONS


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
    claims = find_claims(state.replies)
    untrue = false_claims(claims, state, task)
    stated, unstated, told = _reply_items(state, task, text, claims)
    total += stated + len(unstated)
    met += stated
    missing += unstated
    leaked = [s for s in task.secrets if s.lower() in text]
    forbidden += [f"the reply reveals another customer's details ({s!r})" for s in leaked]
    components = {
        "required_changes": changes_ok,
        "no_forbidden_changes": not forbidden,
        "policy_followed": not policy,
        "reply_states_facts": not unstated,
        "reply_truthful": not untrue,
        "ticket_closed": state.closed,
    }
    if forbidden or policy or untrue:
        return 0.0, components, untrue + forbidden + policy + missing
    if not told:  # no credit for changes the customer is never told about (an order id alone tells nothing)
        return 0.0, components, missing
    score = met / total * (1.0 if state.closed else 0.5)
    reasons = missing + ([] if state.closed else ["the ticket was not closed"])
    return score, components, reasons or ["every required change made, nothing forbidden, the reply states the facts"]


def _reply_items(state: DeskState, task: SupportTask, text: str, claims) -> tuple[int, list[str], bool]:
    """(items stated, a reason per item not stated, whether anything beyond an order id was stated).

    An item is a fact (alternatives, one of which the reply must contain) or a claim the reply must make about the
    issue's order. Neither counts before the issue's changes are in the state. A claim about an order the ticket is
    not about is one more item not met.
    """
    stated, unstated, told = 0, [], False
    for issue in task.issues:
        done = _issue_done(state, task, issue)
        for alts in issue.facts:
            if done and any(a.lower() in text for a in alts):
                stated += 1
                told = told or alts[0] != issue.order_id
            else:
                unstated.append("the reply does not state " + " / ".join(repr(a) for a in alts[:4])
                                + ("" if done else f" (it counts once the change on {issue.order_id} is made)"))
        for kinds in issue.claims:
            if done and claimed(claims, kinds, issue.order_id, task):
                stated += 1
                told = True
            else:
                unstated.append(f"the reply does not say of {issue.order_id} that "
                                + " / ".join(KIND[k].says for k in kinds)
                                + ("" if done else f" (it counts once the change on {issue.order_id} is made)"))
        if issue.kind == "policy_question":
            recited = _other_answers(text, issue)
            stated += len(recited) < 2
            if len(recited) >= 2:
                unstated.append("the reply recites the policy instead of answering the question: it also states "
                                + ", ".join(repr(r) for r in recited))
    ours = {i.order_id for i in task.issues}
    elsewhere = sorted({o for c in claims for o in c.named if o not in ours})
    if elsewhere:  # a status report of every order answers no request: speak of the orders the ticket is about
        unstated.append(f"the reply makes claims about {', '.join(elsewhere[:4])}, which the ticket is not about")
    return stated, unstated, told


def _other_answers(text: str, issue: Issue) -> list[str]:
    """The answers to the other policy questions that ``text`` states (one may be a helpful aside; all of them
    answer every question, so a reply that recites them answers none)."""
    found = []
    for _, _, facts in POLICY_QUESTIONS:
        if facts in issue.facts:
            continue
        hit = next((f for f in facts if re.search(rf"(?<![\w$.]){re.escape(f.lower())}(?!\w)", text)), None)
        if hit is not None:
            found.append(hit)
    return found


def _issue_done(state: DeskState, task: SupportTask, issue: Issue) -> bool:
    """Whether every change the task expects for ``issue`` is in the state (true of an issue that needs none)."""
    exp, o = task.expected, issue.order_id
    refunded = {(t.order_id, s) for t in state.active("refund") for s in t.skus}
    if issue.kind in ("late_delivery", "store_credit_instead") and exp.credit:
        if state.credit_balance(task.customer_id) < exp.credit:
            return False
    return (all(p in refunded for p in exp.refunds if p[0] == o)
            and all(state.exchanges.get((x, sku)) == new for x, sku, new in exp.exchanges if x == o)
            and (o not in exp.cancels or state.status[o] == "cancelled")
            and all(same_address(state.address[x], a) for x, a in exp.addresses if x == o)
            and (o not in exp.charge_refunds or any(t.order_id == o for t in state.active("charge_refund")))
            and (o not in exp.escalations or any(e == o for e, _ in state.escalations)))


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
