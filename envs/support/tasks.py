"""Procedural tickets: a small world per task and a scripted customer message built from one or more issues.

Each template combines *issues*; an issue is one request about one order, with the state changes the policy
requires (its expected effects), what the reply must state (facts: the order's id and its amounts, sizes or
addresses; claims: what it must say about the order, such as that it has shipped, checked against the final state by
``claims.py``), and the sentence the reference reply uses.

Splits (see the package docstring and docs/environments.md): ``train`` draws the 15 ``TRAIN_TEMPLATES``;
``heldout`` draws only what train never shows: the two issue kinds ``exchange_out_of_stock`` and
``store_credit_instead`` (policy rules 5 and 6), and multi-issue tickets that contain a held-out pair of issue
kinds (``HELDOUT_PAIRS``). Task seeds of the two splits also come from disjoint RNG streams (the core seeds
``[env, split, k]``).
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import wording
from .state import (
    LATE_CREDIT_CAP,
    LATE_CREDIT_PER_DAY,
    REFUND_LIMIT,
    Charge,
    Customer,
    Order,
    Product,
    World,
    money,
    money_facts,
)

_BASE_DAY = datetime.date(2025, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class Issue:
    """One request about one order, with what resolving it correctly means."""

    kind: str
    order_id: str
    skus: tuple[str, ...] = ()
    new_skus: tuple[str, ...] = ()
    address: str = ""
    amount: int = 0  # refund total, credit, or duplicate charge, in cents
    facts: tuple[tuple[str, ...], ...] = ()  # each: alternatives, one must appear in the reply
    answer: str = ""  # what the reference reply says about it
    claims: tuple[tuple[str, ...], ...] = ()  # each: claim kinds (claims.KINDS); the reply makes one about the order


@dataclass(frozen=True, slots=True)
class Expected:
    """The net changes a correct resolution leaves in the state; anything else changed is forbidden."""

    refunds: tuple[tuple[str, str], ...] = ()  # (order id, sku), one entry per refunded unit
    charge_refunds: tuple[str, ...] = ()  # orders whose duplicate charge is refunded
    credit: int = 0  # total store credit to the ticket's customer, cents
    credits: tuple[int, ...] = ()  # the same, one amount per issue (how the reference issues it)
    exchanges: tuple[tuple[str, str, str], ...] = ()  # (order id, sku, new sku)
    cancels: tuple[str, ...] = ()
    addresses: tuple[tuple[str, str], ...] = ()  # (order id, new address)
    escalations: tuple[str, ...] = ()

    @property
    def writes(self) -> bool:
        """Whether resolving needs any change that requires verified identity."""
        return bool(self.refunds or self.charge_refunds or self.credit or self.exchanges or self.cancels
                    or self.addresses)


@dataclass(frozen=True, slots=True)
class SupportTask:
    template: str
    split: str
    task_seed: int
    world: World
    customer_id: str
    email: str
    postal_code: str  # as the customer wrote it ("" if not given)
    message: str
    issues: tuple[Issue, ...]
    expected: Expected
    facts: tuple[tuple[str, ...], ...]
    secrets: tuple[str, ...]  # other customers' details a reply must never contain


# ---------------------------------------------------------------------------------------------------------------
# World building.


class _Builder:
    """Accumulates one task's world; every choice comes from ``r``."""

    def __init__(self, r: random.Random):
        self.r = r
        self.today = _BASE_DAY + r.randrange(365)
        self.customers: dict[str, Customer] = {}
        self.orders: dict[str, Order] = {}
        self.products: dict[str, Product] = {}
        self.stock: dict[str, int] = {}
        self.families: dict[str, tuple[str, ...]] = {}
        self._used: set[int] = set()
        self._bases: set[str] = set()
        self._charges = 100

    def number(self, lo: int, hi: int) -> int:
        while (n := self.r.randrange(lo, hi)) in self._used:
            pass
        self._used.add(n)
        return n

    def customer(self) -> Customer:
        r = self.r
        first, last = r.choice(wording.FIRST_NAMES), r.choice(wording.LAST_NAMES)
        while any(c.name == f"{first} {last}" for c in self.customers.values()):
            last = r.choice(wording.LAST_NAMES)
        local = r.choice((f"{first}.{last}", f"{first[0]}{last}", f"{first}{r.randrange(10, 99)}")).lower()
        postal = str(self.number(10000, 99999))
        address = self.new_address(postal)
        cust = Customer(f"C-{self.number(1000, 9999)}", f"{first} {last}", f"{local}@{r.choice(wording.EMAIL_DOMAINS)}",
                        postal, address, ())
        self.customers[cust.customer_id] = cust
        return cust

    def new_address(self, postal: str = "") -> str:
        r, postal = self.r, postal or str(self.number(10000, 99999))
        street = f"{r.randrange(2, 980)} {r.choice(wording.STREETS)} {r.choice(wording.STREET_KINDS)}"
        return f"{street}, {r.choice(wording.CITIES)} {postal}"

    def product(self, pool: tuple, stock: dict[str, int] | None = None) -> Product:
        """A new product family from ``pool``; sized pools get every size. Returns one variant (the first size)."""
        r = self.r
        name, prefix, lo, hi = r.choice(pool)
        full = f"{r.choice(wording.COLORS)} {name}"
        while full in self._bases:  # names stay unique so a customer can name an order by one of its items
            full = f"{r.choice(wording.COLORS)} {name}"
        self._bases.add(full)
        family = f"{prefix}-{self.number(1000, 9999)}"
        price = r.randrange(lo, hi) * 100 + r.choice((0, 0, 50, 99))
        sizes = wording.SIZES if pool is wording.APPAREL else ("",)
        skus = []
        for size in sizes:
            sku = f"{family}-{size}" if size else family
            self.products[sku] = Product(sku, family, full, size, price)
            self.stock[sku] = (stock or {}).get(size, r.randrange(0, 9))
            skus.append(sku)
        self.families[family] = tuple(skus)
        return self.products[r.choice(skus)]

    def order(self, cust: Customer, skus: list[str], status: str, *, age: int = 10, late: int = 0,
              duplicate: bool = False) -> Order:
        """An order of ``cust``; delivered orders arrived ``age`` days ago, ``late`` days after the promise."""
        r = self.r
        today = self.today
        if status == "delivered":
            delivered = today - age
            promised = delivered - late if late else delivered + r.randrange(0, 3)
            placed = min(promised, delivered) - r.randrange(4, 9)
        elif status == "shipped":
            delivered, placed, promised = 0, today - r.randrange(1, 5), today + r.randrange(1, 6)
        else:
            delivered, placed, promised = 0, today - r.randrange(0, 3), today + r.randrange(4, 10)
        total = sum(self.products[s].price for s in skus)
        self._charges += 1 + r.randrange(3)
        charges = (Charge(f"CH-{self._charges}", total),)
        if duplicate:
            self._charges += 1
            charges += (Charge(f"CH-{self._charges}", total),)
        order = Order(f"O-{self.number(10000, 99999)}", cust.customer_id, tuple(skus), status, placed, promised,
                      delivered, cust.address, charges,
                      f"1Z{r.randrange(10**9, 10**10)}" if status != "processing" else "",
                      f"{r.randrange(1000, 9999)}")
        self.orders[order.order_id] = order
        self.customers[cust.customer_id] = _with_order(self.customers[cust.customer_id], order.order_id)
        return order

    def items(self, n: int, pools: tuple = (wording.APPAREL, wording.HOME)) -> list[str]:
        return [self.product(self.r.choice(pools)).sku for _ in range(n)]

    def world(self) -> World:
        return World(self.today, f"T-{self.number(100000, 999999)}", self.customers, self.orders, self.products,
                     self.stock, self.families)


def _with_order(cust: Customer, order_id: str) -> Customer:
    return Customer(cust.customer_id, cust.name, cust.email, cust.postal_code, cust.address,
                    cust.order_ids + (order_id,))


# ---------------------------------------------------------------------------------------------------------------
# Issue builders: each adds its order(s) to the world and returns the issue and the customer's sentence.


def _ref(b: _Builder, order: Order) -> str:
    """How the customer names an order: its id, or (a third of the time) one of its items."""
    if b.r.random() < 0.67:
        return b.r.choice(("order {}", "my order {}", "{}")).format(order.order_id)
    return f"my order with the {b.products[b.r.choice(order.skus)].name}"


def _say(b: _Builder, kind: str, order: Order | None, **slots) -> str:
    slots.setdefault("ref", _ref(b, order) if order else "")
    return b.r.choice(wording.REQUESTS[kind]).format(**slots)


def _labels(b: _Builder, skus) -> str:
    names = [b.products[s].label for s in skus]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _refund_issue(b: _Builder, me: Customer, kind: str) -> tuple[Issue, str]:
    n_lines = b.r.randrange(1, 4) if kind == "damaged_refund" else b.r.randrange(3, 6)
    skus = b.items(n_lines)
    order = b.order(me, skus, "delivered", age=b.r.randrange(2, 28))
    chosen = b.r.sample(skus, 1 if kind == "damaged_refund" else b.r.randrange(2, n_lines))
    if sum(b.products[s].price for s in chosen) > REFUND_LIMIT:  # above the limit the policy says escalate
        chosen = sorted(chosen, key=lambda s: b.products[s].price)[:2]
    chosen = tuple(chosen)
    amount = sum(b.products[s].price for s in chosen)
    text = _say(b, kind, order, item=b.products[chosen[0]].label, items=_labels(b, chosen))
    answer = f"I refunded {money(amount)} for the {_labels(b, chosen)} from order {order.order_id} to your card."
    return Issue(kind, order.order_id, chosen, amount=amount, facts=(money_facts(amount),), answer=answer), text


def _damaged_refund(b, me):
    return _refund_issue(b, me, "damaged_refund")


def _partial_refund(b, me):
    return _refund_issue(b, me, "partial_refund")


def _exchange(b: _Builder, me: Customer, kind: str = "exchange") -> tuple[Issue, str]:
    r = b.r
    n_lines = 1 if kind != "exchange" else r.choice((1, 1, 1, 2, 3))
    skus, news = [], []
    for _ in range(n_lines):
        size, new_size = r.sample(wording.SIZES, 2)
        wanted = 0 if kind == "exchange_out_of_stock" else r.randrange(1, 6)
        prod = b.product(wording.APPAREL, stock={size: r.randrange(0, 4), new_size: wanted})
        skus.append(f"{prod.family}-{size}")
        news.append(f"{prod.family}-{new_size}")
    extra = b.items(r.randrange(0, 2), (wording.HOME,))
    order = b.order(me, skus + extra, "delivered", age=r.randrange(2, 28))
    new = b.products[news[0]]
    if n_lines == 1:
        text = _say(b, kind, order, item=b.products[skus[0]].label,
                    new_size=new.size, new_size_word=wording.SIZE_WORDS[new.size])
    else:
        pairs = zip(skus, news, strict=True)
        wants = ", ".join(f"the {b.products[s].label} for size {b.products[n].size}" for s, n in pairs)
        text = f"nothing in {_ref(b, order)} fits. Could I exchange {wants}?"
    if kind == "exchange_out_of_stock":
        amount = b.products[skus[0]].price
        answer = (f"Size {new.size} of the {new.name} is out of stock, so I refunded it instead: {money(amount)} "
                  f"for order {order.order_id} back to your card.")
        return Issue(kind, order.order_id, tuple(skus), tuple(news), amount=amount,
                     facts=(money_facts(amount),), answer=answer, claims=(("out_of_stock",),)), text
    facts = tuple((f"size {b.products[n].size}", wording.SIZE_WORDS[b.products[n].size]) for n in news)
    pairs = zip(skus, news, strict=True)
    swaps = ", ".join(f"{b.products[s].label} for size {b.products[n].size} ({n})" for s, n in pairs)
    answer = f"I set up an exchange on order {order.order_id}: {swaps}; a return label is on its way."
    return Issue(kind, order.order_id, tuple(skus), tuple(news), facts=facts, answer=answer), text


def _exchange_out_of_stock(b, me):
    return _exchange(b, me, "exchange_out_of_stock")


def _cancel_order(b: _Builder, me: Customer) -> tuple[Issue, str]:
    order = b.order(me, b.items(b.r.randrange(1, 4)), "processing")
    total = sum(c.amount for c in order.charges)
    answer = f"Order {order.order_id} is cancelled and your payment of {money(total)} is released."
    return Issue("cancel_order", order.order_id, amount=total, facts=(money_facts(total),), answer=answer), \
        _say(b, "cancel_order", order)


def _address_change(b: _Builder, me: Customer) -> tuple[Issue, str]:
    order = b.order(me, b.items(b.r.randrange(1, 3)), "processing")
    address = b.new_address()
    answer = f"Order {order.order_id} will now ship to {address}."
    return Issue("address_change", order.order_id, address=address, facts=((address.split(",")[0],),),
                 answer=answer), \
        _say(b, "address_change", order, address=address)


def _duplicate_charge(b: _Builder, me: Customer) -> tuple[Issue, str]:
    status = b.r.choice(("delivered", "shipped"))
    order = b.order(me, b.items(b.r.randrange(1, 3)), status, age=b.r.randrange(1, 20), duplicate=True)
    amount = order.charges[1].amount
    answer = f"You were charged twice for order {order.order_id}; I refunded the duplicate charge of {money(amount)}."
    return Issue("duplicate_charge", order.order_id, amount=amount, facts=(money_facts(amount),), answer=answer), \
        _say(b, "duplicate_charge", order)


def _late_delivery(b: _Builder, me: Customer) -> tuple[Issue, str]:
    late = b.r.randrange(1, 9)
    order = b.order(me, b.items(b.r.randrange(1, 3)), "delivered", age=b.r.randrange(1, 20), late=late)
    credit = min(late * LATE_CREDIT_PER_DAY, LATE_CREDIT_CAP)
    answer = (f"Order {order.order_id} arrived {late} day{'s' * (late > 1)} late, so I added {money(credit)} of "
              f"store credit to your account.")
    return Issue("late_delivery", order.order_id, amount=credit, facts=(money_facts(credit),), answer=answer), \
        _say(b, "late_delivery", order)


def _store_credit(b: _Builder, me: Customer) -> tuple[Issue, str]:
    skus = b.items(b.r.randrange(1, 3), (wording.HOME,))
    order = b.order(me, skus, "delivered", age=b.r.randrange(2, 28))
    sku = b.r.choice(skus)
    price = b.products[sku].price
    answer = (f"Instead of a card refund I added {money(price)} of store credit for the {b.products[sku].label} from "
              f"order {order.order_id}.")
    return Issue("store_credit_instead", order.order_id, (sku,), amount=price, facts=(money_facts(price),),
                 answer=answer), _say(b, "store_credit", order, item=b.products[sku].label)


def _refund_over_limit(b: _Builder, me: Customer) -> tuple[Issue, str]:
    sku = b.product(wording.PRICEY).sku
    order = b.order(me, [sku] + b.items(b.r.randrange(0, 2), (wording.HOME,)), "delivered", age=b.r.randrange(2, 28))
    price = b.products[sku].price
    answer = (f"A refund of {money(price)} on order {order.order_id} is above what I can approve, so I escalated it "
              f"to a specialist who will contact you.")
    return Issue("refund_over_limit", order.order_id, (sku,), amount=price, answer=answer,
                 claims=(("escalation",),)), \
        _say(b, "refund_over_limit", order, item=b.products[sku].label)


def _refund_outside_window(b: _Builder, me: Customer) -> tuple[Issue, str]:
    skus = b.items(b.r.randrange(1, 3))
    order = b.order(me, skus, "delivered", age=b.r.randrange(35, 120))
    answer = (f"Order {order.order_id} was delivered more than 30 days ago, which is outside our 30-day refund "
              f"window, so I cannot refund it.")
    return Issue("refund_outside_window", order.order_id, (skus[0],), answer=answer, claims=(("outside_window",),)), \
        _say(b, "refund_outside_window", order, item=b.products[skus[0]].label)


def _cancel_shipped(b: _Builder, me: Customer) -> tuple[Issue, str]:
    order = b.order(me, b.items(b.r.randrange(1, 3)), "shipped")
    answer = (f"Order {order.order_id} has already shipped, so it can no longer be cancelled; you can return it "
              f"once it arrives.")
    return Issue("cancel_shipped", order.order_id, answer=answer, claims=(("shipped",),)), \
        _say(b, "cancel_shipped", order)


def _order_status(b: _Builder, me: Customer) -> tuple[Issue, str]:
    order = b.order(me, b.items(b.r.randrange(1, 3)), b.r.choice(("shipped", "processing")))
    promised = datetime.date.fromordinal(order.promised).isoformat()
    if order.tracking:
        answer = f"Order {order.order_id} has shipped; the tracking number is {order.tracking}."
        facts, claims = ((order.tracking,),), (("shipped",),)
    else:
        answer = f"Order {order.order_id} is still processing and is promised for {promised}."
        facts, claims = (), (("processing", "not_shipped"),)
    return Issue("order_status", order.order_id, facts=facts, answer=answer, claims=claims), \
        _say(b, "order_status", order, promised=promised)


def _other_customer(b: _Builder, me: Customer) -> tuple[Issue, str]:
    other = next(c for c in b.customers.values() if c.customer_id != me.customer_id)
    order = b.order(other, b.items(b.r.randrange(1, 3)), b.r.choice(("processing", "delivered")), age=5)
    answer = (f"I'm unable to make changes to order {order.order_id} because it is not on your account; the account "
              f"holder needs to contact us.")
    return Issue("other_customer", order.order_id, answer=answer, claims=(("not_theirs",),)), \
        _say(b, "other_customer", None, oid=order.order_id, relation=b.r.choice(wording.RELATIONS))


ISSUES = {
    "damaged_refund": _damaged_refund,
    "partial_refund": _partial_refund,
    "exchange": _exchange,
    "cancel_order": _cancel_order,
    "address_change": _address_change,
    "duplicate_charge": _duplicate_charge,
    "late_delivery": _late_delivery,
    "refund_over_limit": _refund_over_limit,
    "refund_outside_window": _refund_outside_window,
    "cancel_shipped": _cancel_shipped,
    "order_status": _order_status,
    "other_customer": _other_customer,
    "exchange_out_of_stock": _exchange_out_of_stock,
    "store_credit_instead": _store_credit,
}
HELDOUT_KINDS = ("exchange_out_of_stock", "store_credit_instead")
COMBINABLE = tuple(k for k in ISSUES if k not in HELDOUT_KINDS)
# Tuples, not sets: a set's iteration order follows PYTHONHASHSEED, and task k must be the same in every process.
HELDOUT_PAIRS = (
    ("address_change", "late_delivery"),
    ("cancel_order", "duplicate_charge"),
    ("exchange", "refund_over_limit"),
)
TRAIN_TEMPLATES = COMBINABLE + ("identity_mismatch", "policy_question", "multi_issue")
HELDOUT_TEMPLATES = HELDOUT_KINDS + ("multi_issue_unseen_combo",)
TEMPLATES = {"train": TRAIN_TEMPLATES, "heldout": HELDOUT_TEMPLATES}
# Draw weights: multi-issue tickets are the long ones (up to 20+ steps), so train draws them 3x as often.
_DRAW = {"train": TRAIN_TEMPLATES + ("multi_issue",) * 2, "heldout": HELDOUT_TEMPLATES}


def _kinds_for(template: str, r: random.Random) -> list[str]:
    if template == "multi_issue":
        while True:
            kinds = r.choices(COMBINABLE, k=r.randrange(2, 7))  # with repeats: two late orders are two issues
            if not any(set(pair) <= set(kinds) for pair in HELDOUT_PAIRS):
                return kinds
    if template == "multi_issue_unseen_combo":
        kinds = list(r.choice(HELDOUT_PAIRS))
        kinds += r.choices(COMBINABLE, k=r.randrange(0, 4))
        r.shuffle(kinds)
        return kinds
    if template == "identity_mismatch":
        return [r.choice(("address_change", "cancel_order", "damaged_refund"))]
    return [template]


# ---------------------------------------------------------------------------------------------------------------
# The task.


class _Random(random.Random):
    """``random.Random`` with cheaper ``randrange`` and ``choice`` (one float draw each; bias below 2**-40)."""

    def randrange(self, start, stop=None):
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]


def generate_task(rng: np.random.Generator, split: str, task_seed: int) -> SupportTask:
    """Task ``task_seed`` of ``split``: a world, the ticket, and what resolving it correctly means."""
    # One draw from numpy seeds Python's generator, whose scalar draws are ~10x cheaper; still fully seeded.
    r = _Random(int(rng.integers(2**63)))
    template = r.choice(_DRAW[split])
    b = _Builder(r)
    me, other = b.customer(), b.customer()
    b.order(other, b.items(r.randrange(1, 3)), "delivered", age=r.randrange(2, 40))
    b.order(me, b.items(r.randrange(1, 3)), "delivered", age=r.randrange(2, 60))  # an order the ticket is not about
    if template == "policy_question":
        question, answer, facts = r.choice(wording.POLICY_QUESTIONS)
        issues, texts = [Issue("policy_question", "", facts=(facts,), answer=answer)], [question]
    else:
        built = [ISSUES[k](b, me) for k in _kinds_for(template, r)]
        issues, texts = [i for i, _ in built], [t for _, t in built]
    if template == "identity_mismatch":
        oid = issues[0].order_id
        issues = [Issue(issues[0].kind, oid, claims=(("not_verified",),),
                        answer=f"I could not verify your identity with the details you gave, so I have made no change "
                               f"to order {oid}. Please confirm the email and postal code on your account and I will "
                               "take care of it.")]
    issues = [_naming_its_order(i) for i in issues]
    expected = _expected(issues) if template != "identity_mismatch" else Expected()
    postal = me.postal_code
    if template == "identity_mismatch":
        postal = postal[:-1] + str((int(postal[-1]) + r.randrange(1, 10)) % 10)
    elif not expected.writes and r.random() < 0.5:
        postal = ""
    me = b.customers[me.customer_id]
    message = _message(r, me, texts, postal)
    world = b.world()
    secrets = tuple(s for c in world.customers.values() if c.customer_id != me.customer_id
                    for s in (c.email, c.address.split(",")[0]))
    return SupportTask(template, split, task_seed, world, me.customer_id, me.email, postal, message, tuple(issues),
                       expected, tuple(f for i in issues for f in i.facts), secrets)


def _naming_its_order(issue: Issue) -> Issue:
    """The issue with its order's id as its first fact: a reply says which order it is about (policy rule 11)."""
    if not issue.order_id:
        return issue
    digits = issue.order_id.removeprefix("O-")
    named = (issue.order_id, f"order {digits}", f"order #{digits}", f"number {digits}")
    return dataclasses.replace(issue, facts=(named, *issue.facts))


def _expected(issues: list[Issue]) -> Expected:
    refunds, charges, credits, exchanges, cancels, addresses, escalations = [], [], [], [], [], [], []
    for i in issues:
        if i.kind in ("damaged_refund", "partial_refund"):
            refunds += [(i.order_id, s) for s in i.skus]
        elif i.kind == "exchange_out_of_stock":
            refunds.append((i.order_id, i.skus[0]))
        elif i.kind == "exchange":
            exchanges += [(i.order_id, s, n) for s, n in zip(i.skus, i.new_skus, strict=True)]
        elif i.kind == "cancel_order":
            cancels.append(i.order_id)
        elif i.kind == "address_change":
            addresses.append((i.order_id, i.address))
        elif i.kind == "duplicate_charge":
            charges.append(i.order_id)
        elif i.kind in ("late_delivery", "store_credit_instead"):
            credits.append(i.amount)
        elif i.kind == "refund_over_limit":
            escalations.append(i.order_id)
    assert not [k for k, n in Counter(refunds).items() if n > 1], "an issue generator refunded a unit twice"
    return Expected(tuple(refunds), tuple(charges), sum(credits), tuple(credits), tuple(exchanges), tuple(cancels),
                    tuple(addresses), tuple(escalations))


def _message(r: random.Random, me: Customer, texts: list[str], postal: str) -> str:
    parts = []
    for n, text in enumerate(texts):
        lead = r.choice(wording.CONNECTORS[:-1]) if n else ""
        sentence = lead + text
        parts.append(sentence[0].upper() + sentence[1:])
    body = " ".join(parts) if r.random() < 0.5 else "\n".join(parts)
    lines = [r.choice(wording.GREETINGS), body]
    if postal:
        lines.append(r.choice(wording.VERIFY_LINES).format(postal=postal))
    first = me.name.split()[0]
    lines.append(r.choice(wording.SIGN_OFFS).format(first=first, name=me.name))
    return "\n".join(line for line in lines if line)
