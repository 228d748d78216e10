"""``SupportDeskEnv``: the tools an agent resolves a ticket with, on top of the core ``ToolEnv``.

Tools are typed methods with Google-style docstrings; their JSON schemas are derived from them. Read tools never
change state; write tools append to the state's audit trail (transactions or changes) so the checker can judge the
final state alone. A mistake by the agent raises ``ToolError``, whose message (what was wrong, what is valid) is the
observation; any other exception is a bug in the environment.

The docstrings and ``ROLE`` are read with the policy on every turn, so each fact is said once: the rules (when a
tool may be used) live in the policy, the tools say what they do and what their arguments look like. Tools have no
return annotation: each returns its observation text, and ``"return": {"type": "string"}`` in every schema would
tell a model nothing (``scripts/count_prompt_tokens.py`` measures the prompt).
"""

from __future__ import annotations

import math

import numpy as np

from ..core import CheckResult, SeededError, ToolCall, ToolEnv, ToolError, tool
from . import faults
from .checker import check_ticket
from .plan import reference_plan
from .state import POLICY, REFUND_LIMIT, STORE_CREDIT_CAP, Change, DeskState, day_text, money
from .tasks import SupportTask, generate_task

ROLE = (
    "You are a Northwind Outfitters support agent. Resolve the ticket below with the tools, one call per turn, "
    "following the policy exactly. The customer sees only your reply_to_customer messages."
)


class SupportDeskEnv(ToolEnv):
    """Resolve a retail customer-support ticket under a written policy (refunds, exchanges, cancellations, ...).

    ## Action space
    One tool call per step as JSON text (``ToolEnv``): 15 tools to look up customers, orders and products, verify
    identity, refund items or a duplicate charge, void a transaction, exchange, cancel, change an address, issue
    store credit, escalate, reply, and ``close_ticket``, which finishes.

    ## Observation space
    Text: first the role, the date, the policy and the customer's ticket (and an earlier agent's transcript when a
    mistake was seeded); then each tool's answer or refusal.

    ## Rewards
    At the end, ``check_ticket``'s score of the final state: 1 when every change the policy requires was made and no
    other, nothing was done for another customer, and the reply states the ticket's facts and claims nothing false;
    partial credit only when nothing forbidden was done.

    ## Starting state
    A generated world (customers, orders, products, stock) and one ticket of the split's templates (``tasks.py``),
    the same for every seed given ``task_seed``. All six fault kinds; a seeded mistake is an earlier agent's wrong
    refund, credit or address change (``faults.py``).

    ## Episode end
    Terminated by ``close_ticket``; truncated after ``max_turns`` (``3 * required_steps + 10``) turns.

    ## Arguments
    Those of ``ToolEnv``: ``faults``, ``max_turns``, ``render_mode``.
    """

    description = "customer-support tickets: refunds, exchanges, cancellations under a written policy"
    task_family = "SupportDeskEnv"  # seeds the tasks: keep it when renaming or subclassing
    seeded_error_heading = "Earlier work on this ticket, by the agent before you:"
    state: DeskState
    task: SupportTask

    # -- the core's hooks -----------------------------------------------------------------------------------------

    def _generate_task(self, rng: np.random.Generator, split: str, task_seed: int) -> SupportTask:
        return generate_task(rng, split, task_seed)

    def _setup(self, task: SupportTask) -> None:
        self.state = DeskState.fresh(task.world, task.customer_id)

    def _prompt(self) -> str:
        t = self.task
        return "\n\n".join([ROLE, f"Today is {day_text(t.world.today)}.", "Policy:\n" + POLICY,
                             f"Ticket {t.world.ticket_id} from {t.email}:\n\"\"\"\n{t.message}\n\"\"\""])

    def _check(self) -> CheckResult:
        score, components, reasons = check_ticket(self.state, self.task)
        return CheckResult(score, components, reasons)

    def _reference_plan(self) -> list[ToolCall]:
        return reference_plan(self.state, self.task)

    def _seed_error(self, rng: np.random.Generator) -> SeededError | None:
        return faults.seed_error(self.state, self.task, rng)

    def _apply_seeded_error(self, error: SeededError) -> list[tuple[ToolCall, str]]:
        transcript = super()._apply_seeded_error(error)
        faults.mark_earlier(self.state)  # the state started fresh: every change so far is the earlier agent's
        return transcript

    def _seeded_error_undone(self) -> bool:
        return faults.seeded_error_undone(self.state, self.task)

    def _concurrent_edit(self, rng: np.random.Generator) -> str | None:
        return faults.concurrent_edit(self.state, self.task, rng)

    def _read_back(self, call: ToolCall) -> ToolCall:
        return faults.read_back(self.state, self.task, call)

    # -- helpers --------------------------------------------------------------------------------------------------

    def _order_ids_text(self) -> str:
        ids = self.state.world.customers[self.state.customer_id].order_ids
        return ", ".join(ids)

    def _order(self, order_id: str):
        key = order_id.strip().upper()
        if key.isdigit():
            key = "O-" + key
        order = self.state.world.orders.get(key)
        if order is None:
            raise ToolError(f"unknown order {order_id[:40]!r}; the ticket's customer has orders "
                            f"{self._order_ids_text()}")
        return order

    def _customer(self, customer_id: str):
        customer = self.state.world.customers.get(customer_id.strip().upper())
        if customer is None:
            raise ToolError(f"unknown customer {customer_id[:40]!r}; customer ids look like 'C-1234': "
                            f"find the ticket's customer with find_customer(email)")
        return customer

    def _order_sku(self, order, sku: str) -> str:
        key = sku.strip().upper()
        if key not in order.skus:
            raise ToolError(f"order {order.order_id} has no item {sku[:40]!r}; its items are {', '.join(order.skus)}")
        return key

    def _delivered(self, order, action: str) -> None:
        status = self.state.status[order.order_id]
        if status != "delivered":
            hint = {"processing": "use cancel_order for an order that has not shipped",
                    "shipped": "wait until it is delivered", "cancelled": "its payment was already released"}[status]
            raise ToolError(f"cannot {action} on order {order.order_id}: its status is {status!r}; {hint}")

    def _verified(self, customer_id: str) -> bool:
        return customer_id in self.state.verified

    # -- read tools -----------------------------------------------------------------------------------------------

    @tool
    def find_customer(self, email: str):
        """Find a customer by email: id, address, store credit and orders.

        Args:
            email: As written on the ticket.
        """
        s = self.state
        key = email.strip().lower()
        found = next((c for c in s.world.customers.values() if c.email == key), None)
        if found is None:
            raise ToolError(f"no customer with email {email[:80]!r}; search by the exact address on the ticket")
        lines = [f"customer {found.customer_id}: {found.name} <{found.email}>",
                 (f"address: {found.address} | store credit: {money(s.credit_balance(found.customer_id))} | "
                 f"identity verified: {'yes' if self._verified(found.customer_id) else 'no'}"), "orders:"]
        for oid in found.order_ids:
            order = s.world.orders[oid]
            status = s.status[oid]
            when = day_text(order.delivered) if status == "delivered" else f"placed {day_text(order.placed)}"
            names = ", ".join(s.world.products[k].label for k in order.skus)
            lines.append(f"  {oid} {status} {when}: {names}")
        return "\n".join(lines)

    @tool
    def lookup_order(self, order_id: str):
        """Show an order: status, dates, address, items, charges, refunds, exchanges, escalations.

        Args:
            order_id: Like 'O-10423'.
        """
        s, order = self.state, self._order(order_id)
        w, oid, status = s.world, order.order_id, s.status[order.order_id]
        dates = f"placed {day_text(order.placed)} | promised {day_text(order.promised)}"
        if order.delivered:
            late = order.delivered - order.promised
            dates += (f" | delivered {day_text(order.delivered)} ({w.today - order.delivered} days ago"
                      + (f", {late} days after the promised date)" if late > 0 else ", on time)"))
        lines = [f"order {oid} | customer {order.customer_id} | status {status}", dates,
                 f"ship to: {s.address[oid]}" + (f" | tracking {order.tracking}" if order.tracking else ""),
                 "items:"]
        refunds = [t for t in s.transactions if t.order_id == oid]
        for sku in order.skus:
            p = w.products[sku]
            notes = [f"refunded {t.txn_id}" for t in refunds if sku in t.skus and not t.voided]
            if (oid, sku) in s.exchanges:
                notes.append(f"exchange to {s.exchanges[(oid, sku)]} pending")
            lines.append(f"  {sku} {p.label} {money(p.price)}" + (f" [{'; '.join(notes)}]" if notes else ""))
        charged = {t.charge_id for t in refunds if t.kind == "charge_refund" and not t.voided}
        lines.append("charges: " + "; ".join(
            f"{c.charge_id} {money(c.amount)} card ending {order.card}{' [refunded]' * (c.charge_id in charged)}"
            for c in order.charges))
        if refunds:
            lines.append("refunds: " + "; ".join(
                f"{t.txn_id} {money(t.amount)} ({', '.join(t.skus) or t.charge_id}) "
                f"{'voided' if t.voided else 'active'}"
                for t in refunds))
        escalations = [reason for o, reason in s.escalations if o == oid]
        if escalations:
            lines.append(f"escalated: {len(escalations)} time(s)")
        return "\n".join(lines)

    @tool
    def lookup_product(self, sku: str):
        """Show a product's sizes (one sku each), price and stock.

        Args:
            sku: Any of its skus.
        """
        w, key = self.state.world, sku.strip().upper()
        product = w.products.get(key)
        if product is None:
            family = w.families.get(key)
            if family is None:
                raise ToolError(f"unknown sku {sku[:40]!r}; skus look like 'LS-4821-M' (sized) or 'MG-2210'; "
                                f"lookup_order lists the skus of an order's items")
            product = w.products[family[0]]
        variants = "; ".join(f"{k} size {w.products[k].size or '-'}: {self.state.stock[k]} in stock"
                             for k in w.families[product.family])
        return f"product {product.family} {product.name}, {money(product.price)}\nvariants: {variants}"

    @tool
    def view_ticket(self):
        """Show what was done on this ticket."""
        s = self.state
        lines = [(f"ticket {s.world.ticket_id} | {'closed' if s.closed else 'open'} | identity verified: "
                 f"{', '.join(sorted(s.verified)) or 'nobody yet'}")]
        lines += [f"transaction {t.txn_id}: {t.kind} {money(t.amount)} {t.order_id or t.customer_id}"
                  f"{' voided' if t.voided else ''}" for t in s.transactions]
        lines += [f"escalation: {o} ({reason})" for o, reason in s.escalations]
        lines += [f"identity verification failed for {c}" for c in s.failed_verifications]
        lines += [f"reply {n + 1}: {text[:200]}" for n, text in enumerate(s.replies)]
        return "\n".join(lines)

    # -- write tools ----------------------------------------------------------------------------------------------

    @tool(write=True)
    def verify_identity(self, customer_id: str, email: str, postal_code: str):
        """Verify the customer's identity.

        Args:
            customer_id: From find_customer.
            email: The address the customer wrote from.
            postal_code: The one the customer gave.
        """
        customer = self._customer(customer_id)
        if email.strip().lower() != customer.email or postal_code.strip() != customer.postal_code:
            # Not a refusal: the check ran and its answer is no. The attempt is on record (a desk logs failed
            # verifications; the checker lets a reply say it could not verify only after one), so the call changed
            # the state and its outcome is "ok", as a write timeout's applied/not applied must agree with the state.
            self.state.failed_verifications.append(customer.customer_id)
            return (f"verification failed: the email and postal code do not match the records of "
                    f"{customer.customer_id}. Make no changes; ask the customer to confirm the details on their "
                    "account.")
        self.state.verified.add(customer.customer_id)
        return f"identity verified for {customer.customer_id} ({customer.name}); you may change their orders now"

    @tool(write=True)
    def refund_items(self, order_id: str, skus: list[str]):
        """Refund items of a delivered order to its card.

        Args:
            order_id: The order id.
            skus: Like ['LS-4821-M'].
        """
        s, order = self.state, self._order(order_id)
        if not skus:
            raise ToolError(f"skus is empty; give the skus to refund, from: {', '.join(order.skus)}")
        keys = [self._order_sku(order, k) for k in skus]
        if len(set(keys)) != len(keys):
            raise ToolError("a sku is listed twice; each item of an order is one unit, list it once")
        self._delivered(order, "refund items")
        amount = sum(s.world.products[k].price for k in keys)
        if amount > s.refundable(order.order_id):
            raise ToolError(f"a refund of {money(amount)} exceeds the {money(s.refundable(order.order_id))} still "
                            f"refundable on {order.order_id}; lookup_order shows its earlier refunds")
        t = s.add_transaction("refund", order.customer_id, amount, order_id=order.order_id, skus=tuple(keys))
        return (f"refund {t.txn_id} issued: {money(amount)} to card ending {order.card} for {', '.join(keys)} on "
                f"{order.order_id}")

    @tool(write=True)
    def refund_charge(self, order_id: str, charge_id: str):
        """Refund the duplicate charge of an order charged twice.

        Args:
            order_id: The order id.
            charge_id: From lookup_order.
        """
        s, order = self.state, self._order(order_id)
        ids = [c.charge_id for c in order.charges]
        key = charge_id.strip().upper()
        if key not in ids:
            raise ToolError(f"order {order.order_id} has no charge {charge_id[:40]!r}; its charges are "
                            f"{', '.join(ids)}")
        if len(ids) < 2:
            raise ToolError(f"order {order.order_id} was charged once ({ids[0]}); only a duplicate charge can be "
                            f"refunded this way; use refund_items for items")
        done = [t for t in s.active("charge_refund") if t.order_id == order.order_id]
        if done:
            raise ToolError(f"the duplicate charge on {order.order_id} was already refunded ({done[0].txn_id})")
        amount = next(c.amount for c in order.charges if c.charge_id == key)
        t = s.add_transaction("charge_refund", order.customer_id, amount, order_id=order.order_id, charge_id=key)
        return f"refund {t.txn_id} issued: charge {key} of {money(amount)} returned to card ending {order.card}"

    @tool(write=True)
    def void_transaction(self, transaction_id: str):
        """Reverse a refund or store credit made on this ticket.

        Args:
            transaction_id: Like 'R-3' or 'SC-1'.
        """
        s, key = self.state, transaction_id.strip().upper()
        txn = next((t for t in s.transactions if t.txn_id == key), None)
        if txn is None:
            known = ", ".join(t.txn_id for t in s.transactions) or "none yet"
            raise ToolError(f"unknown transaction {transaction_id[:40]!r}; transactions on this ticket: {known}")
        if txn.voided:
            raise ToolError(f"{key} is already voided; nothing to do")
        txn.voided = True
        where = txn.order_id or txn.customer_id
        return f"{key} voided: the {money(txn.amount)} {txn.kind.replace('_', ' ')} on {where} is reversed"

    @tool(write=True)
    def exchange_item(self, order_id: str, sku: str, new_sku: str):
        """Exchange a delivered item for another size of it.

        Args:
            order_id: The order id.
            sku: Like 'LS-4821-M'.
            new_sku: The wanted size's sku.
        """
        s, order = self.state, self._order(order_id)
        key = self._order_sku(order, sku)
        self._delivered(order, "exchange an item")
        w, new = s.world, new_sku.strip().upper()
        sizes = w.families[w.products[key].family]
        if new not in sizes or new == key:
            raise ToolError(f"{new_sku[:40]!r} is not another size of {key}; its other sizes are "
                            f"{', '.join(k for k in sizes if k != key) or 'none (it has no sizes)'}")
        if (order.order_id, key) in s.exchanges:
            pending = s.exchanges[(order.order_id, key)]
            raise ToolError(f"{key} on {order.order_id} already has an exchange pending to {pending}")
        if any(key in t.skus and t.order_id == order.order_id for t in s.active("refund")):
            raise ToolError(f"{key} on {order.order_id} was refunded, so it cannot be exchanged")
        if s.stock[new] <= 0:
            in_stock = [k for k in sizes if s.stock[k] > 0 and k != key]
            raise ToolError(f"{new} is out of stock; sizes in stock: {', '.join(in_stock) or 'none'}")
        s.stock[new] -= 1
        s.exchanges[(order.order_id, key)] = new
        s.changes.append(Change("exchange", order.customer_id, order.order_id, self._verified(order.customer_id)))
        return f"exchange set up on {order.order_id}: {key} -> {new}; a return label was emailed to the customer"

    @tool(write=True)
    def cancel_order(self, order_id: str):
        """Cancel an order, releasing its payment.

        Args:
            order_id: The order id.
        """
        s, order = self.state, self._order(order_id)
        status = s.status[order.order_id]
        if status != "processing":
            raise ToolError(f"order {order.order_id} cannot be cancelled: its status is {status!r}; only "
                            f"'processing' orders can be cancelled")
        s.status[order.order_id] = "cancelled"
        s.changes.append(Change("cancel", order.customer_id, order.order_id, self._verified(order.customer_id)))
        total = sum(c.amount for c in order.charges)
        return f"order {order.order_id} cancelled; {money(total)} released to card ending {order.card}"

    @tool(write=True)
    def change_shipping_address(self, order_id: str, address: str):
        """Change where an order will be delivered.

        Args:
            order_id: The order id.
            address: In full, as the customer wrote it.
        """
        s, order = self.state, self._order(order_id)
        status = s.status[order.order_id]
        if status != "processing":
            raise ToolError(f"the address of {order.order_id} cannot change: its status is {status!r}; only "
                            f"'processing' orders can be redirected")
        address = " ".join(address.split())
        if len(address) < 8 or len(address) > 200 or not any(ch.isdigit() for ch in address):
            raise ToolError(f"{address[:60]!r} does not look like an address; write it in full, like "
                            f"'12 Elm St, Springfield 40213'")
        s.address[order.order_id] = address
        s.changes.append(Change("address", order.customer_id, order.order_id, self._verified(order.customer_id)))
        return f"shipping address of {order.order_id} is now: {address}"

    @tool(write=True)
    def issue_store_credit(self, customer_id: str, amount: float):
        """Add store credit to a customer's account.

        Args:
            customer_id: Like 'C-1042'.
            amount: Dollars, like 12.5.
        """
        customer = self._customer(customer_id)
        # Bounds before arithmetic: the cents of 1e307 dollars overflow a float, so compare dollars with the cap first.
        if not (math.isfinite(amount) and amount > 0):
            raise ToolError(f"amount must be a positive number of dollars with at most two decimals, got {amount!r}")
        if amount > STORE_CREDIT_CAP / 100:
            shown = f"${float(amount):,.2f}" if amount < 1e12 else f"${float(amount):.4g}"
            raise ToolError(f"{shown} exceeds the {money(STORE_CREDIT_CAP)} limit for one store credit")
        cents = round(amount * 100)
        if cents <= 0 or abs(amount * 100 - cents) > 1e-6:
            raise ToolError(f"amount must be a positive number of dollars with at most two decimals, got {amount!r}")
        t = self.state.add_transaction("store_credit", customer.customer_id, cents)
        balance = self.state.credit_balance(customer.customer_id)
        return f"store credit {t.txn_id} of {money(cents)} added to {customer.customer_id} (balance {money(balance)})"

    @tool(write=True)
    def escalate_to_human(self, order_id: str, reason: str):
        """Hand an order's issue to a human specialist.

        Args:
            order_id: The order id.
            reason: What they must decide, in one sentence.
        """
        order = self._order(order_id)
        if len(reason.strip()) < 5:
            raise ToolError("reason is empty; say in one sentence what the specialist must decide")
        self.state.escalations.append((order.order_id, reason.strip()[:300]))
        return (f"escalated {order.order_id} to a specialist (refunds above {money(REFUND_LIMIT)} are theirs); "
                f"they will contact the customer within 2 business days")

    @tool(write=True)
    def reply_to_customer(self, message: str):
        """Send the customer a message.

        Args:
            message: Its text.
        """
        if not message.strip():
            raise ToolError("message is empty; write what you did, with amounts and order ids, or why you could not")
        self.state.replies.append(message[:4000])
        return "message sent to the customer"

    @tool(finish=True)
    def close_ticket(self):
        """Close the ticket; ends the episode."""
        self.state.closed = True
        return f"ticket {self.state.world.ticket_id} closed"
