"""The support desk's data: an immutable world (customers, orders, products) plus small mutable overlays.

A task's world is generated once and never changes; everything an agent can change lives in ``DeskState``'s
overlays (order status and address, exchanges, stock, transactions, escalations, replies, verification). Resetting
therefore copies a handful of small dicts instead of deep-copying a database, and the checker can compare the final
overlays with the world as it was.

Money is integer cents everywhere; days are proleptic ordinals (``datetime.date.toordinal``).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from dataclasses import dataclass, field

REFUND_WINDOW_DAYS = 30
REFUND_LIMIT = 500_00  # a refund above this on one order needs a human
LATE_CREDIT_PER_DAY = 5_00
LATE_CREDIT_CAP = 25_00
STORE_CREDIT_CAP = 200_00  # a single store credit above this is rejected by the system


def money(cents: int) -> str:
    """``$1,234.50`` for 123450."""
    return f"${cents // 100:,}.{cents % 100:02d}"


def money_facts(cents: int) -> tuple[str, ...]:
    """The ways a reply may write an amount: ``1,234.50`` or ``1234.50`` (the ``$`` is optional)."""
    plain = f"{cents // 100}.{cents % 100:02d}"
    comma = f"{cents // 100:,}.{cents % 100:02d}"
    return (plain,) if plain == comma else (comma, plain)


def day_text(day: int) -> str:
    return datetime.date.fromordinal(day).isoformat()


_ADDRESS_NOISE = re.compile(r"[\s,.]+")


def same_address(a: str, b: str) -> bool:
    """Addresses compare equal ignoring case, commas, full stops and spacing."""
    return _ADDRESS_NOISE.sub(" ", a.lower()).strip() == _ADDRESS_NOISE.sub(" ", b.lower()).strip()


POLICY = "\n".join((
    ("1. Identity: verify_identity with the email and postal code the customer gave before any refund, exchange, "
     "cancellation, address change or store credit. If it fails, change nothing and ask them to confirm their "
     "details. Lookups, escalations and replies need no verification."),
    ("2. Privacy: act only on the ticket writer's orders and account; politely refuse to change or reveal anyone "
     "else's."),
    (f"3. Refunds: within {REFUND_WINDOW_DAYS} days of delivery, refund_items exactly the affected items; after that, "
     "politely refuse."),
    (f"4. Refund limit: never refund more than {money(REFUND_LIMIT)} on one order yourself: escalate_to_human and say "
     "a specialist will follow up."),
    (f"5. Exchanges: within {REFUND_WINDOW_DAYS} days of delivery, exchange_item to the wanted size if it is in "
     "stock, else refund the item."),
    "6. Store credit asked for instead of a refund: issue the item's price as store credit; do not refund the card.",
    "7. Only 'processing' orders can be cancelled or redirected; tell the customer a shipped one cannot.",
    "8. Duplicate charges: refund the duplicate with refund_charge.",
    (f"9. Late delivery: {money(LATE_CREDIT_PER_DAY)} store credit per day it arrived after the promised date, at most "
     f"{money(LATE_CREDIT_CAP)} per order."),
    ("10. Earlier actions here may be wrong: void_transaction a wrong refund or store credit, restore a wrongly "
     "changed address, then do what is right."),
    ("11. Escalate only for rule 4. Finally reply with what you did, with the amounts and order ids (or why you "
     "could not help), and close_ticket."),
))


# ---------------------------------------------------------------------------------------------------------------
# The immutable world a task is generated with.


@dataclass(frozen=True, slots=True)
class Product:
    """One sellable variant (a size of a shirt, or a mug); ``family`` groups the sizes of one product."""

    sku: str
    family: str
    name: str
    size: str  # "" for products without sizes
    price: int

    @property
    def label(self) -> str:
        return f"{self.name}, size {self.size}" if self.size else self.name


@dataclass(frozen=True, slots=True)
class Charge:
    charge_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class Order:
    """An order as it was when the ticket arrived; its mutable parts live in ``DeskState``."""

    order_id: str
    customer_id: str
    skus: tuple[str, ...]  # one unit per line, no sku twice
    status: str  # processing | shipped | delivered
    placed: int
    promised: int
    delivered: int  # 0 unless delivered
    address: str
    charges: tuple[Charge, ...]
    tracking: str  # "" while processing
    card: str  # last four digits


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    name: str
    email: str
    postal_code: str
    address: str
    order_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class World:
    today: int
    ticket_id: str
    customers: dict[str, Customer]  # never mutated after generation
    orders: dict[str, Order]
    products: dict[str, Product]
    stock: dict[str, int]  # initial stock; DeskState holds the live copy
    families: dict[str, tuple[str, ...]]  # family -> skus of its sizes


def order_total(world: World, order: Order) -> int:
    return sum(world.products[s].price for s in order.skus)


# ---------------------------------------------------------------------------------------------------------------
# The mutable overlay an episode changes.


@dataclass(slots=True)
class Transaction:
    """Money moved on a ticket: an item refund, a duplicate-charge refund, or store credit."""

    txn_id: str  # R-n for refunds, SC-n for store credit
    kind: str  # refund | charge_refund | store_credit
    customer_id: str
    order_id: str  # "" for store credit
    amount: int
    skus: tuple[str, ...] = ()
    charge_id: str = ""
    verified: bool = True  # was the customer verified when it was made
    by: str = "agent"  # agent | earlier (a seeded mistake) | colleague (a concurrent edit)
    voided: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """An audit-log entry for a change that is not a transaction (exchange, cancellation, address change)."""

    kind: str
    customer_id: str
    order_id: str
    verified: bool
    by: str = "agent"


@dataclass(slots=True)
class DeskState:
    world: World
    customer_id: str  # who wrote the ticket
    status: dict[str, str]
    address: dict[str, str]
    stock: dict[str, int]
    exchanges: dict[tuple[str, str], str] = field(default_factory=dict)  # (order, sku) -> new sku
    transactions: list[Transaction] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    escalations: list[tuple[str, str]] = field(default_factory=list)  # (order id, reason)
    replies: list[str] = field(default_factory=list)
    verified: set[str] = field(default_factory=set)
    closed: bool = False
    failed_verifications: list[str] = field(default_factory=list)  # customer ids whose details did not match

    @classmethod
    def fresh(cls, world: World, customer_id: str) -> DeskState:
        return cls(
            world=world,
            customer_id=customer_id,
            status={o.order_id: o.status for o in world.orders.values()},
            address={o.order_id: o.address for o in world.orders.values()},
            stock=dict(world.stock),
        )

    def copy(self) -> DeskState:
        """An independent copy; the world is immutable and shared."""
        return DeskState(self.world, self.customer_id, dict(self.status), dict(self.address), dict(self.stock),
                         dict(self.exchanges), [dataclasses.replace(t) for t in self.transactions], list(self.changes),
                         list(self.escalations), list(self.replies), set(self.verified), self.closed,
                         list(self.failed_verifications))

    def active(self, kind: str | None = None) -> list[Transaction]:
        return [t for t in self.transactions if not t.voided and (kind is None or t.kind == kind)]

    def add_transaction(self, kind: str, customer_id: str, amount: int, **fields) -> Transaction:
        prefix = "SC" if kind == "store_credit" else "R"
        txn_id = f"{prefix}-{sum(t.txn_id.startswith(prefix + '-') for t in self.transactions) + 1}"
        verified = fields.pop("verified", customer_id in self.verified)
        txn = Transaction(txn_id, kind, customer_id, fields.pop("order_id", ""), amount, verified=verified, **fields)
        self.transactions.append(txn)
        return txn

    def refundable(self, order_id: str) -> int:
        """What the payment processor still lets us refund on an order: captured minus refunded."""
        order = self.world.orders[order_id]
        captured = sum(c.amount for c in order.charges)
        refunded = sum(t.amount for t in self.transactions if t.order_id == order_id and not t.voided)
        return captured - refunded

    def credit_balance(self, customer_id: str) -> int:
        return sum(t.amount for t in self.active("store_credit") if t.customer_id == customer_id)
