"""The reference's approval workflow (flightdeck-behaviour 1.9): promote-request, promote-confirm
and the list of requests, over PromotionRequests and PromotionApprovals. One code path for the
HTTP sidecar and the CLI.

Nothing is decided here; the operator decides and this module reads its answers:

* **request**: the promotion is first evaluated as a dry run (``spec.dryRun``: never ledgered,
  deleted once read), so one the policy blocks records nothing, as in the reference. A passing one
  becomes a real PromotionRequest, which the operator holds in phase ``AwaitingApproval``.
* **confirm**: a PromotionApproval naming the request's UID and current decision digest, created
  for the caller. The operator judges it once (ledgered): accepted (with the quorum met, the
  request is promoted and ledgered with the reason ``<reason> | approval: <approval reason>``),
  blocked (the policy blocks now: the reference's 409 with the full outcome, built from the
  approval's ledger entry), rejected (self-approval, not an approver) or stale (a race).
* **list**: requests that went through approval, in the reference's shape and statuses.

Modules: ``common`` (names, reference messages, waits, pure mappings), ``request``, ``confirm``,
``listing``.
"""
