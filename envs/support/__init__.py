"""Customer-support desk (``recoverygym/SupportDesk-v0``): resolve a retail ticket under a written policy.

The agent reads a scripted customer's message and resolves it with 15 tools (look up customers, orders and
products; verify identity; refund items or a duplicate charge; void a wrong transaction; exchange; cancel; change an
address; issue store credit; escalate; reply; close the ticket). The policy covers identity verification before
changes, a 30-day refund window, a $500 refund limit that needs escalation, exchange rules, late-delivery credit,
and never touching another customer's data.

Files, in reading order: ``state.py`` (the immutable world plus the small mutable overlay an episode changes, and
the policy text), ``tasks.py`` + ``wording.py`` (ticket generator), ``checker.py`` (pure score of the final state)
+ ``claims.py`` (what a reply claims, checked against the final state), ``plan.py`` (reference plan as a diff from
the current state), ``faults.py`` (seeded mistakes, a colleague's concurrent edit, read-backs), ``env.py``
(``SupportDeskEnv``: the tools).

Splits. ``train``: 15 templates, the 12 single-issue kinds (damaged-item refund, partial refund of a multi-item
order, wrong-size exchange, cancel before shipping, address change, duplicate charge, late-delivery credit, and the
requests the policy refuses or escalates: refund over the limit, refund after the window, cancelling a shipped
order, acting on another customer's order; plus an order-status question), ``identity_mismatch``,
``policy_question`` and ``multi_issue`` (2-6 issues on different orders). ``heldout`` holds out, whole:

- the issue kinds ``exchange_out_of_stock`` (policy rule 5: the wanted size is out of stock, refund instead) and
  ``store_credit_instead`` (rule 6), which no train ticket contains;
- ``multi_issue_unseen_combo``: multi-issue tickets containing one of the pairs address change + late delivery,
  cancellation + duplicate charge, exchange + refund over the limit, which no train ticket combines.

Task seeds of the two splits come from disjoint RNG streams as well (the core seeds ``[env, split, task_seed]``).
"""
