"""Errors of the controller that kopf treats specially.

    kopf.TemporaryError
    └── DependencyPending            a referenced object is not visible yet (retried after ``delay``)

Failures that end a request (unknown pointer, release, pricing table ...) are not exceptions:
they are decisions, written to the request's status with a Stalled condition.
"""

from __future__ import annotations

import kopf


class DependencyPending(kopf.TemporaryError):
    """A referenced object is not in the operator's indexes yet; kopf retries after ``delay``.

    Objects applied together (``kubectl apply -f dir/``, a GitOps sync) may reach the operator in
    any order, so a missing reference is retried for a grace period before it fails the request.
    """
