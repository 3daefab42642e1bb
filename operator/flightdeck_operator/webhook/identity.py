"""Who created a PromotionRequest or a PromotionApproval: pure, no I/O.

The admission request's ``userInfo`` is the API server's word for who is writing, so it replaces
whatever the object claims. The one exception is a trusted delegate (the sidecar's
ServiceAccount, ``FLIGHTDECK_WEBHOOK_DELEGATES``): it writes on behalf of the HTTP caller it has
authenticated, so the identity it supplies is kept and ``via`` names the delegate.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from flightdeck_operator.webhook.admission import PatchOperation, UserInfo

REQUESTED_BY: Final = "requestedBy"  # PromotionRequest spec.requestedBy
APPROVER: Final = "approver"  # PromotionApproval spec.approver
IdentityField = Literal["requestedBy", "approver"]


class Identity(BaseModel):
    """``spec.requestedBy`` / ``spec.approver`` on the wire."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    # The delegate that created the object on this user's behalf; None: the user wrote it directly.
    via: str | None = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            body["uid"] = self.uid
        if self.via:
            body["via"] = self.via
        return body


def stamp(user_info: UserInfo, supplied: Mapping[str, Any] | None, delegates: Collection[str]) -> Identity:
    """The identity to record: the authenticated user, or for a delegate the user it acts for."""
    if user_info.username in delegates and supplied:
        claimed = _claimed(supplied)
        if claimed is not None:
            return Identity(
                username=claimed.username, uid=claimed.uid, groups=claimed.groups, via=user_info.username
            )
    return Identity(username=user_info.username, uid=user_info.uid, groups=user_info.groups)


def _claimed(supplied: Mapping[str, Any]) -> Identity | None:
    try:
        claimed = Identity.model_validate(supplied)
    except ValidationError:
        return None
    return claimed if claimed.username.strip() else None


def identity_patch(obj: Mapping[str, Any], field: IdentityField, identity: Identity) -> PatchOperation:
    """The JSON Patch operation that sets ``/spec/<field>`` on ``obj`` (add, or replace if present)."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return PatchOperation(op="add", path="/spec", value={field: identity.to_wire()})
    op: Literal["add", "replace"] = "replace" if field in spec else "add"
    return PatchOperation(op=op, path=f"/spec/{field}", value=identity.to_wire())
