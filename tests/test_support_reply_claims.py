"""The reply rule: a reply states the ticket's specific facts and claims nothing the final state does not show.

Table-driven: phrasings that are and are not claims (honest refusals are not), one false claim of each kind failing
with a reason, the reference's replies passing, and the cheap replies a policy optimiser finds (one fixed reply that
"mentions everything", an empty-ish reply, the ticket quoted back, every order listed, a policy recital) solving no
ticket of either split.
"""

from __future__ import annotations

import json
import re

import gymnasium
import numpy as np
import pytest
from test_support_checker import solved, task_of

import envs  # noqa: F401  (registers the environments)
from envs.support.checker import check_ticket
from envs.support.claims import KINDS, find_claims
from envs.support.state import DeskState
from envs.support.tasks import generate_task

ENV_ID = "recoverygym/SupportDesk-v0"
J = lambda n, **a: json.dumps({"name": n, "arguments": a})  # noqa: E731


# -- what is a claim -------------------------------------------------------------------------------------------------

PHRASES = [  # (reply, the claim kinds it makes)
    ("We cannot refund it.", set()),
    ("I have not escalated this, and I will not escalate it.", set()),
    ("I did not cancel order O-12345.", set()),
    ("No refund was issued.", set()),
    ("If your order had shipped, it could not be cancelled.", set()),
    ("Would you like me to refund it?", set()),
    ("Orders can only be cancelled while they are still processing; once shipped they cannot be cancelled.", set()),
    ("You can ask for a refund within 30 days of delivery.", set()),
    ("When an order arrives after its promised date we add $5.00 of store credit per day late, up to $25.00.", set()),
    ("Refunds above $500.00 on one order are handled by a specialist.", set()),
    ("Your order has not been delivered yet.", set()),
    ("I refunded $45.00 to your card.", {"refund"}),
    ("Order O-12345 has already shipped, so it can no longer be cancelled.", {"shipped"}),
    ("Your order hasn't shipped yet.", {"not_shipped"}),
    ("I could not verify your identity with the details you gave.", {"not_verified"}),
    ("I'm unable to change order O-12345 because it is not on your account.", {"not_theirs"}),
    ("It's been escalated to a specialist who will contact you.", {"escalation"}),
    ("I\u2019ve cancelled order O-12345.", {"cancellation"}),
    ("I added $15.00 of store credit to your account.", {"store_credit"}),
    ("Order O-12345 will now ship to 12 Elm St, Springfield 40213.", {"address_change"}),
    ("I set up an exchange on order O-12345.", {"exchange"}),
    ("Your order O-12345 is still processing.", {"processing"}),
    ("Order O-12345 was delivered more than 30 days ago.", {"delivered", "outside_window"}),
    ("Size L is out of stock.", {"out_of_stock"}),
    ("A refund of $700.00 is above the refund limit.", {"over_limit"}),
    ("I verified your identity.", {"verified"}),
    ("Order O-12345 arrived 3 days late.", {"delivered", "late"}),
]


@pytest.mark.parametrize(("reply", "kinds"), PHRASES, ids=[p[0][:40] for p in PHRASES])
def test_claims_and_honest_refusals(reply, kinds):
    assert {c.kind.name for c in find_claims([reply])} == kinds


# -- false claims fail, with a reason ------------------------------------------------------------------------------


def _stock_everywhere(task) -> bool:
    """Every size of every item on the task's first order is in stock (so 'out of stock' is false)."""
    w = task.world
    order = w.orders[task.issues[0].order_id]
    return all(w.stock[k] > 0 for s in order.skus for k in w.families[w.products[s].family])


def _task(template: str, split: str = "train", where=None):
    for start in range(0, 3000, 50):
        task = task_of(template, split, start)
        if where is None or where(task):
            return task
    raise AssertionError(f"no {template} task that fits")


# (template, reply about the ticket's order {o}, words the reason contains); the state is the solved state
FALSE = [
    ("order_status", "I refunded $45.00 for order {o}.", "no refund"),
    ("cancel_shipped", "I added $10.00 of store credit to your account.", "no store credit"),
    ("refund_outside_window", "I escalated order {o} to a specialist.", "nothing was escalated"),
    ("cancel_shipped", "Order {o} is cancelled.", "not cancelled"),
    ("cancel_shipped", "Order {o} will now ship to 1 Elm St, Springfield 12345.", "address was not changed"),
    ("order_status", "I set up an exchange on order {o}.", "no exchange"),
    ("other_customer", "I verified your identity.", "identity was not verified"),
    ("damaged_refund", "I could not verify your identity.", "no verification"),
    ("damaged_refund", "Order {o} is outside the 30-day refund window.", "more than 30 days ago"),
    ("cancel_order", "Order {o} has already shipped.", "not in transit"),
    ("cancel_shipped", "Order {o} is still processing.", "not processing"),
    ("cancel_shipped", "Order {o} has not shipped yet.", "has shipped"),
    ("cancel_shipped", "Order {o} was delivered yesterday.", "not been delivered"),
    ("damaged_refund", "Order {o} arrived 3 days late.", "not delivered that late"),
    ("damaged_refund", "Order {o} is not on your account.", "customer's own"),
    ("damaged_refund", "The size you want for order {o} is out of stock.", "out of stock"),
    ("damaged_refund", "A refund on order {o} is above the refund limit.", "within the $500.00"),
    ("damaged_refund", "I refunded $999.00 for order {o}.", "$999.00 matches no refund"),
    ("late_delivery", "I added $99.00 of store credit for order {o}.", "$99.00 matches no store credit"),
]


@pytest.mark.parametrize(("template", "reply", "word"), FALSE, ids=[f"{f[0]}-{f[1][:30]}" for f in FALSE])
def test_a_false_claim_fails_the_reply_with_a_reason(template, reply, word):
    task = _task(template, where=_stock_everywhere if "stock" in reply else None)
    state = solved(task)
    state.replies.append(reply.format(o=task.issues[0].order_id))
    score, components, reasons = check_ticket(state, task)
    assert score == 0.0 and not components["reply_truthful"], reasons
    assert word in reasons[0] and "the reply says" in reasons[0], reasons


def test_every_kind_of_claim_has_a_false_case_and_a_phrase():
    claimed = {c.kind.name for text, _, _ in [(f[1], 0, 0) for f in FALSE] for c in find_claims([text])}
    assert claimed == {k.name for k in KINDS}
    assert set().union(*(kinds for _, kinds in PHRASES)) == {k.name for k in KINDS}


def test_a_claim_naming_orders_must_hold_for_each():
    task = _task("cancel_shipped")
    state = solved(task)
    mine = task.world.customers[task.customer_id].order_ids  # the shipped order and a delivered one
    state.replies[:] = [f"Orders {' and '.join(mine)} have already shipped."]
    score, components, reasons = check_ticket(state, task)
    assert not components["reply_truthful"] and "not in transit" in reasons[0], reasons


# -- the reference's replies pass ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_reference_replies_make_no_false_claim_and_state_every_fact(split):
    for k in range(300):
        task = generate_task(np.random.default_rng([11, k]), split, k)
        score, components, reasons = check_ticket(solved(task), task)
        assert score == 1.0 and components["reply_truthful"], (k, task.template, reasons)


# -- what the reply states about a change counts only once the change is made ------------------------------------


def test_announcing_a_refund_that_was_not_made_earns_nothing_even_hedged():
    task = _task("damaged_refund")
    state = DeskState.fresh(task.world, task.customer_id)
    state.verified.add(task.customer_id)
    state.replies.append("Once approved " + task.issues[0].answer[0].lower() + task.issues[0].answer[1:])
    state.closed = True
    assert not find_claims(state.replies)  # the hedge hides the claim from the claim reader...
    score, _, reasons = check_ticket(state, task)
    assert score == 0.0 and "counts once the change" in " ".join(reasons)  # ...but the facts do not count


def test_could_not_verify_is_true_only_after_a_failed_attempt():
    task = _task("identity_mismatch")
    state = solved(task)
    state.failed_verifications.clear()  # the agent never tried the details the customer gave
    score, _, reasons = check_ticket(state, task)
    assert score == 0.0 and "no verification" in reasons[0]


def test_a_policy_recital_does_not_answer_the_question_but_an_aside_is_fine():
    from envs.support.wording import POLICY_QUESTIONS

    recital = " ".join(answer for _, answer, _ in POLICY_QUESTIONS)
    for k in range(4):
        task = _task("policy_question", where=lambda t, k=k: t.issues[0].answer == POLICY_QUESTIONS[k][1])
        state = solved(task)
        state.replies[:] = [recital]
        score, components, reasons = check_ticket(state, task)
        assert score < 1.0 and "recites the policy" in " ".join(reasons), reasons
        state.replies[:] = [task.issues[0].answer + " " + POLICY_QUESTIONS[(k + 1) % 4][1]]
        assert check_ticket(state, task)[0] == 1.0


# -- cheap replies a policy optimiser would find ---------------------------------------------------------------------

MENTION_EVERYTHING = (
    "I'm sorry, but this is outside the 30-day window and the order has shipped, so I have escalated it to a "
    "specialist who will contact you. Please confirm your details on the account. I can't share other customers' "
    "details.")


def _find(env, prompt, obs):
    return J("find_customer", email=env.unwrapped.task.email)


def _verify(env, prompt, obs):
    customer = re.search(r"C-\d+", obs)
    postal = re.findall(r"\b\d{5}\b", env.unwrapped.task.message)
    return J("verify_identity", customer_id=customer[0] if customer else "C-0", email=env.unwrapped.task.email,
             postal_code=postal[0] if postal else "")


def _reply(text):
    return lambda env, prompt, obs: J("reply_to_customer", message=text(env, prompt, obs))


def _ids(env, prompt, obs):
    return " ".join(sorted(set(re.findall(r"O-\d+", prompt + obs))))


HACKS = {  # name: the calls before close_ticket, each made from (env, prompt, latest observation)
    "mention-everything": [_reply(lambda e, p, o: MENTION_EVERYTHING)],
    "find, mention-everything": [_find, _reply(lambda e, p, o: MENTION_EVERYTHING)],
    "find, verify, mention-everything": [_find, _verify, _reply(lambda e, p, o: MENTION_EVERYTHING)],
    "find, every order listed, mention-everything": [_find, _reply(lambda e, p, o: o + "\n" + MENTION_EVERYTHING)],
    "find, every id, mention-everything": [_find, _reply(lambda e, p, o: _ids(e, p, o) + ". " + MENTION_EVERYTHING)],
    "near-empty reply": [_reply(lambda e, p, o: ".")],
    "ticket quoted back": [_reply(lambda e, p, o: e.unwrapped.task.message)],
    "find, ticket and every order quoted back": [_find, _reply(lambda e, p, o: e.unwrapped.task.message + "\n" + o)],
    "find, verify, close": [_find, _verify],
    "policy recital": [_reply(lambda e, p, o: " ".join(a for _, a, _ in _questions()))],
    "find, every id, every refusal": [_find, _reply(lambda e, p, o: _ids(e, p, o) + ". It is outside the 30-day "
                                                    "window. It has already shipped. It is still processing. It is "
                                                    "not on your account. I could not verify your identity.")],
}


def _questions():
    from envs.support.wording import POLICY_QUESTIONS

    return POLICY_QUESTIONS


@pytest.mark.parametrize("hack", list(HACKS))
def test_cheap_replies_solve_no_ticket(hack):
    env = gymnasium.make(ENV_ID)
    solved_tickets = []
    for split in ("train", "heldout"):
        for k in range(250):
            prompt, _ = env.reset(seed=k, options={"task_seed": k, "split": split})
            obs = prompt
            for make in HACKS[hack]:
                obs, *_ = env.step(make(env, prompt, obs))
            *_, info = env.step(J("close_ticket"))
            if info["success"]:
                solved_tickets.append((split, k, env.unwrapped.task.template))
    assert not solved_tickets, solved_tickets[:5]


def test_fast_word_patterns_match_exactly_what_the_plain_regex_matches():
    import random

    from envs.support import claims

    texts = [p[0].lower() for p in PHRASES] + [f[1].lower() for f in FALSE] + [MENTION_EVERYTHING.lower()]
    words = " ".join(texts).replace(".", " . ").replace(",", " , ").split()
    rng = random.Random(0)
    texts += [" ".join(rng.choice(words) for _ in range(rng.randrange(2, 25))) for _ in range(1500)]
    for kind in claims.KINDS:
        plain = re.compile(r"\b" + kind.pattern.pattern.pattern)  # \b(?:a|b|...)\b
        for text in texts:
            fast, slow = kind.pattern.search(text), plain.search(text)
            assert (fast and fast.span()) == (slow and slow.span()), (kind.name, text)
            assert kind.pattern.possible(text) or slow is None, (kind.name, kind.pattern.anchors, text)


def _digest(env, split: str, k: int) -> bool:
    """A truthful status report of every order on the account (and 'could not verify' if verification failed),
    written from what find_customer shows, whatever the customer asked."""
    import datetime

    prompt, _ = env.reset(seed=k, options={"task_seed": k, "split": split})
    today = datetime.date.fromisoformat(re.search(r"Today is (\d{4}-\d\d-\d\d)", prompt)[1])
    task = env.unwrapped.task
    found, *_ = env.step(_find(env, prompt, prompt))
    verified, *_ = env.step(_verify(env, prompt, found))
    lines, own = [], set()
    for oid, status, rest in re.findall(r"(O-\d+) (\w+) (.*)", found):
        own.add(oid)
        if status == "shipped":
            lines.append(f"Order {oid} has already shipped.")
        elif status == "processing":
            lines.append(f"Order {oid} is still processing.")
        elif status == "delivered":
            day = datetime.date.fromisoformat(rest[:10])
            lines.append(f"Order {oid} was delivered on {day}.")
            if (today - day).days > 30:
                lines.append(f"Order {oid} was delivered more than 30 days ago.")
    lines += [f"Order {oid} is not on your account." for oid in sorted(set(re.findall(r"O-\d+", task.message)) - own)]
    if "verified for" not in verified:
        lines.append("I could not verify your identity.")
    env.step(J("reply_to_customer", message=" ".join(lines)))
    *_, info = env.step(J("close_ticket"))
    return info["success"]


def test_a_status_report_of_every_order_solves_no_ticket():
    env = gymnasium.make(ENV_ID)
    solved_tickets = [(split, k) for split in ("train", "heldout") for k in range(250) if _digest(env, split, k)]
    assert not solved_tickets, solved_tickets[:5]  # it solved 47 of 300 training tickets before claims had to stay
    # on the ticket's orders


def test_claims_about_an_order_the_ticket_is_not_about_cost_the_reply():
    task = _task("cancel_shipped")
    state = solved(task)
    other = next(o for o in task.world.customers[task.customer_id].order_ids if o != task.issues[0].order_id)
    state.replies.append(f"Order {other} was delivered.")
    score, components, reasons = check_ticket(state, task)
    assert 0.0 < score < 1.0 and components["reply_truthful"] and not components["reply_states_facts"]
    assert f"claims about {other}, which the ticket is not about" in " ".join(reasons)
