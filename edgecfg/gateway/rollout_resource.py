# aiocoap ships no type information (see edgecfg.gateway.resources).
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
"""/rollout/{id}: a rollout's status (GET, observable) and operator actions (POST).

GET answers the status ``edgecfg rollout status --json`` prints, as a CBOR
map; an observer is notified after every decision and action.  POST takes a
CBOR map ``{"action": "pause" | "resume" | "advance" | "rollback",
"reason": text}`` and answers 2.04 with the new status.  Operators only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import ClassVar, Final, Protocol, TypeVar, cast

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from edgecfg.core.rollout import Action
from edgecfg.core.tree import Value, is_map
from edgecfg.fleet.identity import Identity, IdentityPolicy
from edgecfg.fleet.rollouts import RolloutService
from edgecfg.fleet.sync import Representation, SyncService
from edgecfg.gateway.errors import BadRequest
from edgecfg.gateway.resources import (
    Gate,
    ObservedByName,
    serve_blocks,
    valid,
)
from edgecfg.wire.cbor import decode, encode, etag_of_bytes
from edgecfg.wire.numbers import ContentFormat

ACTIONS: Final[frozenset[str]] = frozenset({"pause", "resume", "advance", "rollback"})
T = TypeVar("T")


class RolloutRunner(Protocol):
    """Runs one step on a rollout service (the gateway's worker thread)."""

    def __call__(self, work: Callable[[RolloutService], T]) -> Awaitable[T]: ...


MAX_REASON: Final = 500


class RolloutResource(ObservedByName, aiocoap.resource.ObservableResource):  # pyright: ignore[reportIncompatibleMethodOverride]
    """/rollout/{id}: GET the status (observable), POST an action."""

    methods: ClassVar[dict[Code, str]] = {Code.GET: "get", Code.POST: "post"}
    link: ClassVar[dict[str, str | None]] = {
        "rt": "edgecfg.rollout",
        "ct": f"{ContentFormat.CBOR:d}",
        "obs": None,
    }

    def __init__(self, service: SyncService, policy: IdentityPolicy, gate: Gate,
                 run: RolloutRunner, known: Callable[[str], bool]) -> None:  # fmt: skip
        super().__init__(service, policy, gate)
        self.run = run  # runs a step on the gateway's rollout worker
        self.known = known  # whether a rollout exists, answered without waiting for the worker

    async def observation_key(self, request: aiocoap.Message) -> str | None:
        try:
            rollout = _rollout_of(request)
        except BadRequest:
            return None  # the GET says why
        if not self.known(rollout):
            return None  # answered 4.04, not observed
        return rollout

    def changed(self, rollout: str) -> None:
        """Notify the observers of ``rollout`` (a decision or an action)."""
        self.changed_name(rollout)

    async def representation(self, rollout: str) -> Representation:
        status = await self.run(lambda rollouts: rollouts.status(rollout, time.time()))
        blob = encode(_without_clock(cast(Value, status)))
        return Representation(blob, ContentFormat.CBOR, etag_of_bytes(blob))

    async def get(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        self.policy.for_operator(claimed)
        representation = await self.representation(_rollout_of(request))
        if representation.etag in request.opt.etags:
            return valid(representation.etag)
        return serve_blocks(request, representation)

    async def post(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        operator = self.policy.for_operator(claimed)
        rollout = _rollout_of(request)
        body = self.body(request)
        if isinstance(body, aiocoap.Message):
            return body
        action, reason = _action(decode(body))
        author, now = operator.name, time.time()
        await self.run(lambda rollouts: rollouts.act(rollout, action, reason, now=now,
                                                     author=author))  # fmt: skip
        self.changed(rollout)
        return self.answer_changed(request, claimed, await self.representation(rollout))


def _rollout_of(request: aiocoap.Message) -> str:
    path = request.opt.uri_path
    if len(path) != 1 or not path[0]:
        raise BadRequest("name a rollout: /rollout/{id}")
    return path[0]


def _action(body: Value) -> tuple[Action, str]:
    if not is_map(body):
        raise BadRequest('expected a CBOR map {"action": ..., "reason": ...}')
    action, reason = body.get("action"), body.get("reason")
    if not isinstance(action, str) or action not in ACTIONS:
        raise BadRequest(f"action: expected one of {sorted(ACTIONS)}, got {action!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise BadRequest("reason: a non-empty text is required (it is recorded)")
    if len(reason) > MAX_REASON:
        raise BadRequest(f"reason: at most {MAX_REASON} characters, got {len(reason)}")
    extra = sorted(set(body) - {"action", "reason"})
    if extra:
        raise BadRequest(f"unknown keys {extra}; expected action and reason")
    return cast(Action, action), reason


def _without_clock(status: Value) -> Value:
    """The status without its age, so its ETag changes with the rollout, not the clock."""
    if is_map(status):
        return {key: value for key, value in status.items() if key != "age_h"}
    return status  # pragma: no cover - status is a map
