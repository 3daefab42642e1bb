"""Verification of live releases and pipelines: blocking work (store and API calls) run by the
verification loop in a worker thread while it holds the pointer's lock.

For one pointer, a check is one evidence read (``Store.live_evidence``) and a pure verdict
(``engine.verification``); the run of checks is kept in memory and shown in status, from which it is
restored after a restart. A confirmed failure is **ledgered first** (``verification-failed``, unique
per live release), and only then is the rollback request created, under a name derived from the
ledger: a crash in between is finished on the next check (the entry is found, the request created
under the same name), and a request that exists already is never created twice. A soak is handled the
same way (``release-soaked``, then the promotion request).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.api.automation import (
    Automation,
    automation_name,
    is_ours,
    promotion_request,
    rollback_request,
)
from flightdeck_operator.api.conditions import ConditionUpdate, Reason
from flightdeck_operator.api.pipeline_rules import Node, follow_problem
from flightdeck_operator.api.to_engine import engine_policy, engine_pricing, release_ref
from flightdeck_operator.api.v1alpha1 import (
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    PipelineState,
    PricingTableSpec,
    PromotionPolicySpec,
    ReleasePointerSpec,
)
from flightdeck_operator.controller.verification_status import (
    automatic_decision,
    automation_history,
    check_message,
    failure_record,
    pipeline_status,
    restore_tracker,
    signature,
    soak_record,
    verification_conditions,
    verification_status,
    without_verification,
)
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.engine.evidence import EvidenceError
from flightdeck_operator.engine.ledger import LedgerEntry, release_soaked_key, verification_failed_key
from flightdeck_operator.engine.models import Policy, PricingTable, format_time
from flightdeck_operator.engine.statistics import Verdict
from flightdeck_operator.engine.statistics.config import StatisticalGates
from flightdeck_operator.engine.verification import (
    OnFailure,
    Tracker,
    VerificationRules,
    absolute_gates,
    check_live,
    parse_span,
    quarantined,
    respond,
    soak_progress,
    track,
)
from flightdeck_operator.kube.errors import Conflict, NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)

Key = tuple[str, str]
CAS_ATTEMPTS = 5


@dataclass
class Verifier:
    store: Store
    gateway: KubeGateway
    # The operator's own username (SelfSubjectReview): requestedBy of the requests it creates.
    identity: str
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    status_refresh: dt.timedelta = dt.timedelta(minutes=5)
    # Testing only: a pause between the ledger entry and the request (the crash window).
    create_delay_seconds: float = 0.0
    # Called when a status write leaves the pointer projector's cached body stale.
    on_status_written: Callable[[str, str], None] = lambda namespace, name: None
    trackers: dict[Key, Tracker] = field(default_factory=dict)
    # What each pointer's status shows, as we last wrote it: (signature, written at).
    _shown: dict[Key, tuple[tuple[Any, ...], dt.datetime]] = field(default_factory=dict)
    _pipelines: dict[Key, dict[str, Any] | None] = field(default_factory=dict)
    # Ledger entries whose request exists (or was decided): nothing left to do for them.
    _finished: set[int] = field(default_factory=set)
    # The engine's view of each policy and pricing table, kept while the index keeps the object.
    _policies: dict[Key, tuple[PromotionPolicySpec, VerificationRules, Policy, StatisticalGates | None]] = (
        field(default_factory=dict)
    )
    _tables: dict[int, tuple[PricingTableSpec, PricingTable]] = field(default_factory=dict)

    # -- one check -------------------------------------------------------------------------------

    def verify(
        self,
        namespace: str,
        name: str,
        pointer: ReleasePointerSpec,
        policy_name: str,
        policy: PromotionPolicySpec,
        view: NamespaceView,
        head: LedgerEntry | None,
        shown: Mapping[str, Any] | None,
    ) -> Tracker | None:
        """Check the release live on ``name`` now, act on a confirmed failure, show the result.
        ``shown``: the pointer's ``status.verification`` as the index holds it (a restart resumes
        the run of checks from it)."""
        rules, limits, gates = self._compiled(namespace, policy_name, policy)
        key = (namespace, name)
        now = self.clock()
        if head is None or head.release_id is None:
            self.trackers.pop(key, None)
            self._show(
                namespace, name, None, verification_conditions(None, rules), now, force=shown is not None
            )
            return None
        release_spec = view.releases.get(head.release_id)
        table = None
        if release_spec is not None:
            ref = release_ref(head.release_id, release_spec)
            table = view.pricing_tables.get((ref.provider, ref.pricing_version))
        if release_spec is None or table is None:
            message = f"Cannot check {head.release_id}: its AgentRelease or pricing table is not known"
            self._show(namespace, name, None, verification_conditions(None, rules, message=message), now)
            return None
        evidence, recent = self.store.live_evidence(
            head.release_id,
            head.environment or pointer.environment,
            now - rules.window,
            now,
            moments=gates is not None,
            rate_since=None if gates is None else now - gates.rate_window_duration,
        )
        try:
            check = check_live(
                evidence=evidence,
                table=self._pricing(table),
                limits=limits,
                gates=gates,
                rules=rules,
                recent_runs=recent,
                now=now,
            )
        except EvidenceError as error:
            message = f"Cannot check {head.release_id}: {error}"
            self._show(namespace, name, None, verification_conditions(None, rules, message=message), now)
            return None
        previous = self.trackers.get(key) or restore_tracker(shown, head)
        tracker = track(previous, check, move_seq=head.seq)
        self.trackers[key] = tracker
        failure = (
            self._act_on_failure(namespace, name, head, check, tracker, rules)
            if tracker.confirmed(rules)
            else None
        )
        if failure is None:
            failure = self._earlier_failure(namespace, name, head, tracker)
        status = verification_status(check, tracker, rules, failure)
        conditions = verification_conditions(
            tracker, rules, message=_condition_message(check, tracker, rules)
        )
        self._show(namespace, name, status, conditions, now)
        return tracker

    def _compiled(
        self, namespace: str, policy_name: str, policy: PromotionPolicySpec
    ) -> tuple[VerificationRules, Policy, StatisticalGates | None]:
        """The policy in the engine's terms, computed once per policy object (the index replaces
        the object when the policy changes)."""
        cached = self._policies.get((namespace, policy_name))
        if cached is None or cached[0] is not policy:
            assert policy.verification is not None
            limits = engine_policy(policy_name, policy)
            cached = (policy, policy.verification.rules(), limits, absolute_gates(limits.statistical_gates))
            self._policies[(namespace, policy_name)] = cached
        return cached[1], cached[2], cached[3]

    def _pricing(self, table: PricingTableSpec) -> PricingTable:
        cached = self._tables.get(id(table))
        if cached is None or cached[0] is not table:
            if len(self._tables) > 1024:
                self._tables.clear()
            cached = (table, engine_pricing(table))
            self._tables[id(table)] = cached
        return cached[1]

    def _earlier_failure(
        self, namespace: str, name: str, head: LedgerEntry, tracker: Tracker
    ) -> LedgerEntry | None:
        """A failure confirmed earlier for this live release stays shown (the ledger has it)."""
        if tracker.verdict is Verdict.FAIL and tracker.consecutive_failures:
            return self.store.ledger_entry_for_key(verification_failed_key(namespace, name, head.seq))
        return None

    def _act_on_failure(
        self,
        namespace: str,
        name: str,
        head: LedgerEntry,
        check: Any,
        tracker: Tracker,
        rules: VerificationRules,
    ) -> LedgerEntry:
        entry = self.store.ledger_entry_for_key(verification_failed_key(namespace, name, head.seq))
        if entry is None:
            now = self.clock()
            rollbacks, promotions, last = automation_history(self.store.automation_entries(namespace, name))
            response = respond(
                rules,
                previous_release=head.baseline_release_id,
                last_automatic_rollback=last,
                quarantined=quarantined(rollbacks, promotions),
                now=now,
            )
            request = (
                automation_name(name, Automation.ROLLBACK, head.seq)
                if response.action is OnFailure.ROLLBACK
                else None
            )
            entry = self.store.append(
                failure_record(namespace, name, head, check, tracker, response, request=request, now=now)
            )
            log.warning(
                "Ledgered the confirmed failure of %s on %s/%s as seq %d",
                head.release_id,
                namespace,
                name,
                entry.seq,
            )
            self._event(namespace, name, "Warning", Reason.VERIFICATION_FAILED, entry.reason)
            if response.held is not None:
                self._event(
                    namespace,
                    name,
                    "Warning",
                    Reason.AUTOMATION_HELD,
                    f"No automatic rollback: {response.held}",
                )
        details = entry.details or {}
        if details.get("action") == OnFailure.ROLLBACK.value and entry.seq not in self._finished:
            self._ensure_rollback(namespace, name, head, entry)
        return entry

    def _ensure_rollback(self, namespace: str, name: str, head: LedgerEntry, entry: LedgerEntry) -> None:
        details = entry.details or {}
        decided = automatic_decision(
            self.store.pointer_decisions_after(namespace, name, entry.seq), entry.seq
        )
        if decided is None:
            body = rollback_request(
                namespace,
                name,
                failing=str(head.release_id),
                target=str(details.get("target")),
                move_seq=head.seq,
                trigger_seq=entry.seq,
                reason=entry.reason,
                identity=self.identity,
            )
            self._create(namespace, name, body, Reason.AUTOMATIC_ROLLBACK, "rolling back")
        self._finished.add(entry.seq)

    def _create(self, namespace: str, pointer: str, body: dict[str, Any], reason: Reason, what: str) -> None:
        if self.create_delay_seconds:
            time.sleep(self.create_delay_seconds)  # testing only: the window a crash must not break
        found, created = self.gateway.create_or_get(PROMOTION_REQUEST.plural, namespace, body)
        request = body["metadata"]["name"]
        if created:
            log.info("Created PromotionRequest %s/%s (%s)", namespace, request, what)
            self._event(
                namespace,
                pointer,
                "Normal",
                reason,
                f"Created PromotionRequest {request}: {body['spec']['reason']}",
            )
        elif not is_ours(found, body, self.identity):
            log.warning(
                "PromotionRequest %s/%s exists but was not created by the operator for this; not replaced",
                namespace,
                request,
            )

    # -- pipelines ---------------------------------------------------------------------------------

    def advance_pipeline(
        self,
        namespace: str,
        name: str,
        pointer: ReleasePointerSpec,
        view: NamespaceView,
        heads: Mapping[Key, LedgerEntry],
    ) -> None:
        """Where the release upstream of ``name`` stands; ledger its soak once, and (autoPromote)
        create its promotion here once."""
        follows = pointer.follows
        if follows is None:
            self._show_pipeline(namespace, name, None)
            return
        upstream = follows.pointer
        nodes = {
            n: Node(p.agent_id, p.follows.pointer if p.follows else None) for n, p in view.pointers.items()
        }
        problem = follow_problem(name, pointer.agent_id, upstream, nodes)
        up_spec = view.pointers.get(upstream)
        if problem is None and up_spec is None:
            problem = f'ReleasePointer "{upstream}" does not exist'
        if problem is None and up_spec is not None:
            up_policy = view.policies.get(up_spec.policy_ref.name) if up_spec.policy_ref else None
            if up_policy is None or up_policy.verification is None:
                problem = (
                    f'ReleasePointer "{upstream}" has no verification (its policy sets no spec.verification): '
                    "nothing can soak there"
                )
        if problem is not None:
            self._show_pipeline(namespace, name, pipeline_status(upstream, PipelineState.INVALID, problem))
            return
        up_head = heads.get((namespace, upstream))
        here = heads.get((namespace, name))
        if up_head is None or up_head.release_id is None:
            message = f'No release is live on "{upstream}" yet'
            self._show_pipeline(namespace, name, pipeline_status(upstream, PipelineState.WAITING, message))
            return
        release = up_head.release_id
        if here is not None and here.release_id == release:
            message = f'{release} is live here, as on "{upstream}"'
            self._show_pipeline(
                namespace,
                name,
                pipeline_status(upstream, PipelineState.UP_TO_DATE, message, release_id=release),
            )
            return
        tracker = self.trackers.get((namespace, upstream))
        if tracker is not None and (tracker.release_id, tracker.move_seq) != (release, up_head.seq):
            tracker = None
        progress = soak_progress(tracker, parse_span(follows.soak_time))
        soaked = self.store.ledger_entry_for_key(release_soaked_key(namespace, name, upstream, up_head.seq))
        if soaked is None and not progress.soaked:
            if progress.due is None:
                message = f'{release} on "{upstream}" is not verified now; its soak starts at its next passing check'
                state = PipelineState.WAITING
            else:
                message = (
                    f'{release} soaks on "{upstream}" until {format_time(progress.due)} if every check passes'
                )
                state = PipelineState.SOAKING
            self._show_pipeline(
                namespace,
                name,
                pipeline_status(upstream, state, message, release_id=release, progress=progress),
            )
            return
        if soaked is None:
            soaked = self.store.append(
                soak_record(namespace, name, upstream, up_head, progress, follows.soak_time, self.clock())
            )
            log.info(
                "Ledgered that %s soaked on %s/%s (for %s) as seq %d",
                release,
                namespace,
                upstream,
                name,
                soaked.seq,
            )
            self._event(namespace, name, "Normal", Reason.RELEASE_SOAKED, soaked.reason)
        self._show_pipeline(
            namespace,
            name,
            self._promote_soaked(namespace, name, upstream, here, soaked, follows.auto_promote),
        )

    def _promote_soaked(
        self,
        namespace: str,
        name: str,
        upstream: str,
        here: LedgerEntry | None,
        soaked: LedgerEntry,
        auto_promote: bool,
    ) -> dict[str, Any]:
        release = str(soaked.release_id)

        def status(state: PipelineState, message: str, request: str | None = None) -> dict[str, Any]:
            return pipeline_status(
                upstream, state, message, release_id=release, soaked=soaked, request=request
            )

        if not auto_promote:
            return status(
                PipelineState.SOAKED,
                f'{release} soaked on "{upstream}"; promote it here when ready (autoPromote is off)',
            )
        request = automation_name(name, Automation.PROMOTION, soaked.seq)
        decided = automatic_decision(
            self.store.pointer_decisions_after(namespace, name, soaked.seq), soaked.seq
        )
        if decided is not None:
            if decided.pointer_changed:
                return status(
                    PipelineState.HELD,
                    f"The automatic promotion {request} made {release} live here; the pointer has moved "
                    "since, and the operator does not promote it again on its own",
                    request,
                )
            reasons = "; ".join(decided.policy_result.reasons) if decided.policy_result else ""
            return status(
                PipelineState.HELD, f"The automatic promotion {request} was blocked: {reasons}", request
            )
        if here is not None and here.seq > soaked.seq:
            # A person moved this pointer after the release soaked (a hotfix, a rollback): a newer
            # move is never overridden by an older soak.
            return status(
                PipelineState.HELD,
                f"This pointer moved to {here.release_id} (ledger seq {here.seq}) after {release} soaked "
                f"(seq {soaked.seq}); it is not promoted over a newer move automatically: promote it by hand",
            )
        rollbacks, promotions, _ = automation_history(self.store.automation_entries(namespace, name))
        if release in quarantined(rollbacks, promotions):
            return status(
                PipelineState.HELD,
                f"{release} was rolled back automatically here; it is not promoted again automatically "
                "until a person promotes it",
            )
        if soaked.seq not in self._finished:
            body = promotion_request(
                namespace,
                name,
                release=release,
                current=None if here is None else here.release_id,
                trigger_seq=soaked.seq,
                attempt=1,
                reason=f"Automatic promotion: {soaked.reason}",
                identity=self.identity,
            )
            self._create(namespace, name, body, Reason.AUTOMATIC_PROMOTION, "promoting")
            self._finished.add(soaked.seq)
        return status(
            PipelineState.PROMOTING,
            f'{release} soaked on "{upstream}"; promoting it here ({request})',
            request,
        )

    # -- status ------------------------------------------------------------------------------------

    def clear(self, namespace: str, name: str) -> None:
        """The pointer's policy no longer verifies (or it was deleted): forget it, drop what it showed."""
        self.trackers.pop((namespace, name), None)
        self._shown.pop((namespace, name), None)
        self._write(namespace, name, {"verification": None}, without_verification())

    def forget(self, namespace: str, name: str) -> None:
        for memory in (self.trackers, self._shown, self._pipelines):
            memory.pop((namespace, name), None)

    def _show(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any] | None,
        conditions: ConditionUpdate,
        now: dt.datetime,
        *,
        force: bool = False,
    ) -> None:
        key = (namespace, name)
        shown = self._shown.get(key)
        wanted = (
            *signature(status),
            *(c.reason for c in conditions.set),
            *(c.message for c in conditions.set),
        )
        if not force and shown is not None and shown[0] == wanted and now - shown[1] < self.status_refresh:
            return
        if self._write(namespace, name, {"verification": status}, conditions):
            self._shown[key] = (wanted, now)

    def _show_pipeline(self, namespace: str, name: str, status: dict[str, Any] | None) -> None:
        key = (namespace, name)
        if key in self._pipelines and self._pipelines[key] == status:
            return
        if self._write(namespace, name, {"pipeline": status}, None):
            self._pipelines[key] = status

    def _write(
        self, namespace: str, name: str, fields: Mapping[str, Any], conditions: ConditionUpdate | None
    ) -> bool:
        """Set ``fields`` of the pointer's status (and its conditions), compare-and-swap."""
        for _attempt in range(CAS_ATTEMPTS):
            try:
                body = self.gateway.get(RELEASE_POINTER.plural, namespace, name)
            except NotFound:
                return False
            status = dict(body.get("status") or {})
            for key, value in fields.items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
            if conditions is not None:
                generation = body["metadata"].get("generation")
                status["conditions"] = conditions.apply(status.get("conditions"), self.clock(), generation)
            if status == (body.get("status") or {}):
                return True
            try:
                self.gateway.replace_status(RELEASE_POINTER.plural, {**body, "status": status})
            except Conflict:
                continue
            except NotFound:
                return False
            self.on_status_written(namespace, name)
            return True
        log.info(
            "ReleasePointer %s/%s kept changing; its verification status waits for the next check",
            namespace,
            name,
        )
        return False

    def _event(self, namespace: str, name: str, event_type: str, reason: Reason, message: str) -> None:
        try:
            body = self.gateway.get(RELEASE_POINTER.plural, namespace, name)
        except NotFound:
            return
        self.gateway.post_event(
            body, kind=RELEASE_POINTER.kind, event_type=event_type, reason=reason.value, message=message
        )


def _condition_message(check: Any, tracker: Tracker, rules: VerificationRules) -> str | None:
    if tracker.verdict is Verdict.PASS:
        return None
    text = check_message(check)
    if tracker.verdict is Verdict.FAIL:
        return f"{tracker.release_id} failed {tracker.consecutive_failures} check(s) in a row (threshold {rules.failure_threshold}): {text}"
    return text
