"""The controller: the kopf operator that decides PromotionRequests and keeps pointers equal to
the ledger.

``main`` (``kopf run``), ``startup`` (kopf tuning, memo, the webhook server), ``indexes`` (what
decisions read), ``handlers`` (thin adapters from watch events), ``loop`` (the per-pointer
decision loop: draining, concurrency, deciding one request, waiting for evidence), ``assessment``
(resolve and decide, no writes), ``approval_gate`` (judging approvals, the quorum),
``status_writer`` and ``pointers`` (statuses and Events as projections of the ledger),
``resolve`` and ``projection`` (pure), ``records`` (policy and pricing changes in the ledger),
``admission_context`` (the running operator as the webhook's context).

May import: the webhook, the store, the gateway, the API and the engine. Only this room imports kopf.
"""
