"""Who is recorded as the requester or approver: the API server's userInfo, except for a delegate."""

from __future__ import annotations

from typing import Any

from flightdeck_operator.webhook.admission import UserInfo
from flightdeck_operator.webhook.identity import APPROVER, REQUESTED_BY, Identity, identity_patch, stamp

SIDECAR = "system:serviceaccount:flightdeck:flightdeck-operator"
ALICE = UserInfo(username="alice", uid="alice-uid", groups=("devs", "system:authenticated"))
FORGED = {"username": "admin", "uid": "admin-uid", "groups": ["system:masters"], "via": "someone"}


def test_the_authenticated_user_is_recorded() -> None:
    identity = stamp(ALICE, None, delegates=(SIDECAR,))
    assert identity == Identity(username="alice", uid="alice-uid", groups=("devs", "system:authenticated"))


def test_a_forged_identity_is_replaced() -> None:
    identity = stamp(ALICE, FORGED, delegates=(SIDECAR,))
    assert identity.username == "alice"
    assert identity.groups == ("devs", "system:authenticated")
    assert identity.via is None


def test_a_delegate_keeps_the_identity_it_supplies() -> None:
    sidecar = UserInfo(username=SIDECAR, uid="sa-uid", groups=("system:serviceaccounts",))
    supplied = {"username": "bob", "uid": "bob-uid", "groups": ["release-managers"], "via": "forged"}
    identity = stamp(sidecar, supplied, delegates=(SIDECAR,))
    assert identity == Identity(username="bob", uid="bob-uid", groups=("release-managers",), via=SIDECAR)
    assert identity.to_wire() == {
        "username": "bob",
        "uid": "bob-uid",
        "groups": ["release-managers"],
        "via": SIDECAR,
    }


def test_a_delegate_without_a_supplied_identity_is_itself() -> None:
    sidecar = UserInfo(username=SIDECAR, uid="sa-uid")
    for supplied in (None, {}, {"username": "  "}, {"uid": "x"}, {"username": 7, "groups": "x"}):
        identity = stamp(sidecar, supplied, delegates=(SIDECAR,))
        assert (identity.username, identity.via) == (SIDECAR, None), supplied


def test_a_non_delegate_cannot_act_for_someone_else() -> None:
    identity = stamp(ALICE, {"username": "bob"}, delegates=(SIDECAR, "ci"))
    assert (identity.username, identity.via) == ("alice", None)


def test_no_delegates_means_nobody_acts_for_anyone() -> None:
    sidecar = UserInfo(username=SIDECAR)
    assert stamp(sidecar, {"username": "bob"}, delegates=()).username == SIDECAR


def test_wire_form_omits_empty_uid_and_via() -> None:
    assert Identity(username="u").to_wire() == {"username": "u", "groups": []}


def test_patch_adds_or_replaces() -> None:
    who = Identity(username="alice")
    added = identity_patch({"spec": {"pointer": "p"}}, REQUESTED_BY, who)
    assert added.to_wire() == {
        "op": "add",
        "path": "/spec/requestedBy",
        "value": {"username": "alice", "groups": []},
    }
    replaced = identity_patch({"spec": {"approver": FORGED}}, APPROVER, who)
    assert replaced.to_wire() == {
        "op": "replace",
        "path": "/spec/approver",
        "value": {"username": "alice", "groups": []},
    }
    no_spec: dict[str, Any] = {"metadata": {"name": "x"}}
    assert identity_patch(no_spec, REQUESTED_BY, who).to_wire() == {
        "op": "add",
        "path": "/spec",
        "value": {"requestedBy": {"username": "alice", "groups": []}},
    }
