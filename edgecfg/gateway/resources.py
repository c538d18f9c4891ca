# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
# pyright: reportUnknownLambdaType=false, reportAttributeAccessIssue=false
"""The gateway's CoAP resources (DESIGN §5) on aiocoap.

Each resource only translates: options and codes in, a
:class:`~edgecfg.fleet.sync.SyncService` call, options and codes out.
Block-wise transfer is handled here rather than by aiocoap, which caches a
response per peer and answers 4.08 to a new peer asking for block N:

- Block2 (RFC 7959 §2.2) is cut from the representation's cached bytes, so any
  block can be fetched at any time while its ETag is current, by any peer.
  Every block carries the ETag (§2.4), block 0 carries Size2, and a block
  past the end is 4.00.
- Block1 bodies (§2.3) are collected in one bounded
  :class:`~edgecfg.gateway.spool.Spool` per gateway: at most ``MAX_BODY``
  bytes a body (4.13 with Size1 beyond), a byte budget per peer and in all
  (4.29 / 5.03 with Max-Age for a new transfer beyond it; nobody's upload is
  evicted), blocks in order (4.08 for a gap); a Size1 beyond the bound is
  refused at block 0 (RFC 7959 §4).
  Every non-final block carries exactly its block size, SZX 7 is refused
  (4.00), and the answer to the final block carries the Block1 option (§2.3).
- A body in a content-format the resource does not take is 4.15 before any
  of it is spooled; a query of more than ``MAX_QUERY_OPTIONS`` options or
  ``MAX_QUERY_BYTES`` bytes, or with a key the resource does not define, is
  4.00 before any handler runs.
- An observation's notification is block 0 plus the ETag; a client fetches
  the rest with ordinary Block2 requests (aiocoap would send it unsplit).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar, Final, cast

import aiocoap
import aiocoap.resource
import cachetools
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.util.linkformat import Link, LinkFormat

from edgecfg.core.admission import Admission, Budgets
from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import GLOBAL, layer_from_document, layer_to_document
from edgecfg.core.tree import Value, is_map
from edgecfg.fleet.identity import Identity, IdentityPolicy
from edgecfg.fleet.sync import (
    BadRequest,
    NotModified,
    Representation,
    SyncService,
)
from edgecfg.gateway.admission import refusal_response, request_peer
from edgecfg.gateway.amplification import AddressGuard
from edgecfg.gateway.conformance import bad_option
from edgecfg.gateway.errors import (
    BadOption,
    MethodNotAllowed,
    StalePrecondition,
    UnsupportedFormat,
    error_response,
    log_failure,
)
from edgecfg.gateway.observations import Observations, decline
from edgecfg.gateway.spool import Spool
from edgecfg.gateway.telemetry_writer import TelemetryWriter
from edgecfg.wire.blocks import DEFAULT_SZX, MAX_SZX, block_of, block_size
from edgecfg.wire.cbor import decode, encode, etag_of_bytes
from edgecfg.wire.messages import MAX_SCHEMA_VERSION
from edgecfg.wire.numbers import ContentFormat

log = logging.getLogger("edgecfg.gateway")

MAX_QUERY_OPTIONS: Final = 8
MAX_QUERY_BYTES: Final = 256
MAX_ANSWER_BYTES: Final = 8 * 2**20
"""POST answers held for their later blocks (:class:`Answers`), in all."""

Handler = Callable[[aiocoap.Message, Identity | None], Awaitable[aiocoap.Message]]


class Gate:
    """The door every request of one gateway passes: admission while it is
    handled (in flight, per peer and in all: 4.29 or 5.03 with Max-Age; see
    :mod:`edgecfg.core.admission`), the observation registry, the shared
    Block1 spool, and the amplification guard that screens each response on
    its way out."""

    def __init__(
        self,
        admission: Admission | int,
        guard: AddressGuard | None = None,
    ) -> None:
        if isinstance(admission, int):  # a bare in-flight limit
            admission = Admission(dataclasses.replace(Budgets(), in_flight=admission))
        self.admission = admission
        self.guard = guard if guard is not None else AddressGuard(None)
        self.observations = Observations(admission.budgets)
        self.spool = Spool(admission.budgets)
        self.answers = Answers(admission.budgets.exchange_lifetime_s)

    @property
    def limit(self) -> int:
        """Requests handled at once, in all."""
        return self.admission.budgets.in_flight

    @limit.setter
    def limit(self, value: int) -> None:
        self.admission.budgets = dataclasses.replace(self.admission.budgets, in_flight=value)

    @property
    def active(self) -> int:
        return self.admission.in_flight


def serve_blocks(
    request: aiocoap.Message, representation: Representation, code: Code = Code.CONTENT
) -> aiocoap.Message:
    """The response carrying ``representation``, one block of it when it is large."""
    payload = representation.payload
    asked = request.opt.block2
    szx = min(asked.size_exponent, MAX_SZX) if asked is not None else DEFAULT_SZX
    if asked is None and len(payload) <= block_size(szx):
        response = aiocoap.Message(code=code, payload=payload)
    else:
        block = block_of(payload, asked.block_number if asked else 0, szx)
        response = aiocoap.Message(code=code, payload=block.payload)
        response.opt.block2 = BlockOption.BlockwiseTuple(block.number, block.more, szx)
        if block.number == 0 or request.opt.size2 is not None:
            response.opt.size2 = len(payload)
    response.opt.content_format = representation.content_format
    response.opt.etag = representation.etag  # RFC 7959 §2.4: on every block
    return response


class Answers:
    """The answers to POSTs too large for one block, kept per peer and path
    for ``lifetime`` seconds so that the peer can ask for their later blocks
    (RFC 7959 §2.5: the same POST, empty, with Block2 N; the gateway must not
    act on the request twice), at most ``MAX_ANSWER_BYTES`` in all (the
    oldest go first).  Another peer asking gets nothing: its key differs."""

    def __init__(self, lifetime: float) -> None:
        self._held: cachetools.TTLCache[tuple[object, tuple[str, ...]], Representation] = (
            cachetools.TTLCache(
                MAX_ANSWER_BYTES, lifetime, timer=time.monotonic, getsizeof=_answer_size
            )
        )

    def keep(
        self, request: aiocoap.Message, claimed: Identity | None, answer: Representation
    ) -> None:
        """Hold ``answer`` to the POST ``request`` (made as ``claimed``)."""
        if _answer_size(answer) <= MAX_ANSWER_BYTES:
            self._held[_asker(request, claimed), tuple(request.opt.uri_path)] = answer

    def block(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        """The block of the held answer that ``request`` asks for; 4.08 when
        none is held (expired, or never given: the POST must be sent again)."""
        answer = self._held.get((_asker(request, claimed), tuple(request.opt.uri_path)))
        if answer is None:
            return aiocoap.Message(
                code=Code.REQUEST_ENTITY_INCOMPLETE,
                payload=b"no answer to a POST to this path is held for this peer "
                b"(it expires after the exchange lifetime); send the request again",
            )
        return serve_blocks(request, answer, Code.CHANGED)


def _asker(request: aiocoap.Message, claimed: Identity | None) -> object:
    """Whose answer: the OSCORE identity, else the whole socket address (the
    budgets' key, an address without its port, would let every device
    behind one NAT read each other's answers)."""
    if claimed is not None:
        return (claimed.role, claimed.name)
    remote = request.remote
    remote = getattr(remote, "underlying_address", None) or remote
    return getattr(remote, "sockaddr", None)


def _answer_size(answer: Representation) -> int:
    return len(answer.payload) + 64


def valid(etag: ETag) -> aiocoap.Message:
    """2.03 Valid: the device holds the current version."""
    response = aiocoap.Message(code=Code.VALID)
    response.opt.etag = etag
    return response


class CoapResource(aiocoap.resource.Resource, aiocoap.resource.PathCapable):
    """Method dispatch with errors mapped once, overload shedding and no
    aiocoap block-wise assembly."""

    methods: ClassVar[dict[Code, str]] = {}
    link: ClassVar[dict[str, str | None]] = {}  # RFC 6690 attributes in /.well-known/core
    formats: ClassVar[tuple[int, ...]] = (ContentFormat.CBOR,)  # of request bodies
    queries: ClassVar[frozenset[str]] = frozenset()  # the Uri-Query keys it defines

    def __init__(self, service: SyncService, policy: IdentityPolicy, gate: Gate) -> None:
        super().__init__()
        self.service = service
        self.policy = policy
        self.gate = gate
        self.spool = gate.spool

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:  # pyright: ignore[reportIncompatibleMethodOverride]
        return False

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        name = self.methods.get(request.code) if request.code is not None else None
        if name is None:
            allowed = ", ".join(str(method) for method in self.methods)
            return error_response(MethodNotAllowed(f"this resource takes {allowed}"))
        # RFC 7252 §5.4.1, §5.4.5 for an OSCORE message's inner options (the
        # datagram screen checked the outer ones, and every plain request)
        if getattr(request.remote, "underlying_address", None) is not None:  # OSCORE's inner
            faulty = bad_option(int(option.number) for option in request.opt.option_list())
            if faulty is not None:
                return error_response(BadOption(faulty))
        refused = self.refused_query(request.opt.uri_query)
        if refused is not None:
            return error_response(BadRequest(refused))
        claimed = _claimed(request)
        peer = request_peer(request, claimed)
        admission, now = self.gate.admission, time.monotonic()
        # an identity is charged wherever it sends from (its address was charged too)
        refusal = admission.charge(peer, now) if claimed is not None else None
        refusal = refusal or admission.enter(peer, now)
        if refusal is not None:
            return refusal_response(refusal)
        try:
            try:
                asked = request.opt.block2
                if (
                    request.code == Code.POST
                    and asked is not None
                    and asked.block_number > 0
                    and not request.payload
                ):  # RFC 7959 §2.5: a later block of the answer to this peer's POST
                    response = self.gate.answers.block(request, claimed)
                else:
                    handler = cast(Handler, getattr(self, name))
                    response = await handler(request, claimed)
            except Exception as error:  # translated once, here (DESIGN §5)
                response = error_response(error)
                log_failure(response, request.get_request_uri(), error)
            block1 = request.opt.block1
            if (
                block1 is not None
                and response.code is not None
                and response.code.is_successful()
                and response.opt.block1 is None
            ):
                # RFC 7959 §2.3: the answer to the final block names it (M=0)
                response.opt.block1 = BlockOption.BlockwiseTuple(
                    block1.block_number, False, block1.size_exponent
                )  # fmt: skip
            return self.gate.guard.screen(request, response)  # RFC 9175 §2.4 item 3
        finally:
            admission.leave(peer)

    def refused_query(self, query: tuple[str, ...]) -> str | None:
        """Why a query is refused (too big, malformed, a key not defined here), or None."""
        if len(query) > MAX_QUERY_OPTIONS or sum(map(len, query)) > MAX_QUERY_BYTES:
            return (
                f"query of {len(query)} options exceeds {MAX_QUERY_OPTIONS} options "
                f"or {MAX_QUERY_BYTES} bytes"
            )
        try:
            unknown = set(parse_query(query)) - self.queries
        except BadRequest as error:
            return str(error)
        if not unknown:
            return None
        known = f"use {', '.join(sorted(self.queries))}" if self.queries else "none are defined"
        return f"unknown query keys {sorted(unknown)}; {known}"

    def body(self, request: aiocoap.Message) -> bytes | aiocoap.Message:
        """The whole request body, or the response to send instead (4.15, 2.31, 4.08, 4.13)."""
        if request.opt.content_format not in (None, *self.formats):
            taken = self.formats[0]
            return error_response(UnsupportedFormat(f"this resource takes content-format {taken}"))
        return self.spool.feed(
            request, request_peer(request, _claimed(request)), type(self).__name__
        )

    def device_body(
        self, request: aiocoap.Message, claimed: Identity | None
    ) -> tuple[DeviceId, bytes] | aiocoap.Message:
        """The device the path names (which ``claimed`` must be allowed to act
        for) and the whole request body, or the response to send instead
        (see :meth:`body`)."""
        device = _device_of(request)
        self.policy.for_device(claimed, device)
        body = self.body(request)
        return body if isinstance(body, aiocoap.Message) else (DeviceId(device), body)

    def answer_changed(
        self, request: aiocoap.Message, claimed: Identity | None, answer: Representation
    ) -> aiocoap.Message:
        """2.04 Changed carrying ``answer``: whole when it fits one block, else
        its block 0, the rest kept for this peer's POSTs asking for them."""
        response = serve_blocks(request, answer, Code.CHANGED)
        if response.opt.block2 is not None and response.opt.block2.more:
            self.gate.answers.keep(request, claimed, answer)
        return response

    def get_resources_as_linkheader(self) -> LinkFormat:
        """This resource's entry for /.well-known/core (the site adds the path)."""
        return LinkFormat([Link("", **self.link)] if self.link else [])


def _claimed(request: aiocoap.Message) -> Identity | None:
    """The identity OSCORE authenticated for this request, if any.

    aiocoap's OSCORE site wrapper sets the remote of an unprotected request
    to one carrying the security context's claims; a plain request (which
    the wrapper passes through) has none.
    """
    claims = getattr(request.remote, "authenticated_claims", ())
    return next((claim for claim in claims if isinstance(claim, Identity)), None)


def _device_of(request: aiocoap.Message) -> str:
    path = request.opt.uri_path
    if not path or not path[0]:
        raise BadRequest("the path must name a device: /cfg/{device}")
    return path[0]


def watch(
    table: dict[str, set[aiocoap.protocol.ServerObservation]],
    key: str,
    observation: aiocoap.protocol.ServerObservation,
) -> Callable[[], None]:
    """Register ``observation`` under ``key``; returns its cancel callback, which
    also drops an emptied entry (refused registrations for made-up names must
    not pile up)."""
    table.setdefault(key, set()).add(observation)

    def cancel() -> None:
        watchers = table.get(key)
        if watchers is not None:
            watchers.discard(observation)
            if not watchers:
                del table[key]

    return cancel


class ObservedByName(CoapResource):
    """A resource whose observations are filed by name (a device, a layer, a
    rollout), each within the observing peer's budgets."""

    @functools.cached_property
    def observers(self) -> dict[str, set[aiocoap.protocol.ServerObservation]]:
        """The observations of each name."""
        return {}

    async def observation_key(self, request: aiocoap.Message) -> str | None:
        """The name to file an observation of ``request`` under; None (a bad or
        unknown name) answers the registering GET as a plain one."""
        raise NotImplementedError

    async def add_observation(
        self, request: aiocoap.Message, serverobservation: aiocoap.protocol.ServerObservation
    ) -> None:
        key = await self.observation_key(request)
        if key is None:
            decline(serverobservation)
            return
        cancel = watch(self.observers, key, serverobservation)
        peer = request_peer(request, _claimed(request))
        self.gate.observations.register(peer, serverobservation, cancel)

    def changed_name(self, key: str) -> None:
        """Trigger every observation filed under ``key``."""
        for observation in list(self.observers.get(key, ())):
            observation.trigger()


class ConfigResource(ObservedByName, aiocoap.interfaces.ObservableResource):
    """/cfg/{dev}[/{key}...]: GET (deltas, prio, subtrees), FETCH, observe."""

    methods: ClassVar[dict[Code, str]] = {Code.GET: "get", Code.FETCH: "fetch"}
    link: ClassVar[dict[str, str | None]] = {
        "rt": "edgecfg.cfg",
        "ct": f"{ContentFormat.CBOR:d} {ContentFormat.DELTA:d}",
        "obs": None,
    }
    queries: ClassVar[frozenset[str]] = frozenset({"from", "prio", "sv"})

    async def observation_key(self, request: aiocoap.Message) -> str | None:
        path = request.opt.uri_path
        if len(path) != 1 or not path[0] or not self.service.fleet.has_device(DeviceId(path[0])):
            return None  # subtrees are not observable; unknown devices 4.04
        return path[0]

    def observed(self) -> list[str]:
        """The devices somebody observes now."""
        return [device for device, watchers in self.observers.items() if watchers]

    def changed(self, devices: set[str] | None = None) -> int:
        """Notify observers of these devices (all when None); returns how many."""
        count = 0
        for device, watchers in self.observers.items():
            if devices is None or device in devices:
                for observation in list(watchers):
                    observation.trigger()
                    count += 1
        return count

    async def get(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        device = _device_of(request)
        self.policy.for_device(claimed, device)
        query = parse_query(request.opt.uri_query)  # keys checked in render
        if len(request.opt.uri_path) > 1:
            representation = self.service.subtree(DeviceId(device), request.opt.uri_path[1:])
        else:
            prio = query.get("prio")
            if prio not in (None, "critical"):
                raise BadRequest(f"prio={prio}: only prio=critical is defined")
            # The version the device holds: ?from=, or else the ETag option it
            # sent (RFC 7252 §5.10.6.2 leaves the 2.05 representation to the
            # server; a delta against a stored version is one), which saves
            # a constrained device the 22 bytes of the query.
            held = request.opt.etags[0] if request.opt.etags else None
            answer = self.service.config(
                DeviceId(device),
                base=parse_etag(query["from"]) if "from" in query else held,
                prio="critical" if prio else None,
                schema_version=_version(query.get("sv")),
            )
            if isinstance(answer, NotModified):
                return valid(answer.etag)
            representation = answer
        if representation.etag in request.opt.etags:
            return valid(representation.etag)
        return serve_blocks(request, representation)

    async def fetch(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        upload = self.device_body(request, claimed)
        if isinstance(upload, aiocoap.Message):
            return upload
        device, body = upload
        representation = self.service.fetch(device, body)
        return serve_blocks(request, representation)


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    wrong = f"sv={text[:16]}: the schema version is a number up to {MAX_SCHEMA_VERSION}"
    # str.isdigit() takes "²" and other non-ASCII digits, which int() refuses
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_SCHEMA_VERSION)):
        raise BadRequest(wrong)
    version = int(text)
    if version > MAX_SCHEMA_VERSION:
        raise BadRequest(wrong)
    return version


class StateResource(CoapResource):
    """/state/{dev}: POST of the device's report."""

    methods: ClassVar[dict[Code, str]] = {Code.POST: "post"}
    link: ClassVar[dict[str, str | None]] = {"rt": "edgecfg.state", "ct": f"{ContentFormat.CBOR:d}"}

    async def post(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        upload = self.device_body(request, claimed)
        if isinstance(upload, aiocoap.Message):
            return upload
        device, body = upload
        answer = self.service.report(device, body, now=time.time())
        if answer is None:
            return aiocoap.Message(code=Code.CHANGED)  # current: nothing more to say
        return self.answer_changed(request, claimed, answer)


class TelemetryResource(CoapResource):
    """/tel/{dev}[?cfg=etag]: POST of SenML-CBOR (112) or SenML-JSON (110),
    ingested off the event loop by the ``writer``; the reply may carry the
    config delta.  The held version may come as an ETag option instead of
    ``?cfg=`` (9 bytes instead of 22)."""

    methods: ClassVar[dict[Code, str]] = {Code.POST: "post"}
    link: ClassVar[dict[str, str | None]] = {
        "rt": "edgecfg.tel",
        "ct": f"{ContentFormat.SENML_CBOR:d} {ContentFormat.SENML_JSON:d}",
    }
    formats: ClassVar[tuple[int, ...]] = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON)
    queries: ClassVar[frozenset[str]] = frozenset({"cfg"})

    def __init__(
        self, service: SyncService, policy: IdentityPolicy, gate: Gate, writer: TelemetryWriter
    ) -> None:
        super().__init__(service, policy, gate)
        self.writer = writer

    async def post(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        upload = self.device_body(request, claimed)
        if isinstance(upload, aiocoap.Message):
            return upload
        query = parse_query(request.opt.uri_query)
        held = parse_etag(query["cfg"]) if "cfg" in query else _held(request)
        device, body = upload
        now = time.time()
        pack = self.service.accept_telemetry(
            device, body, now=now, content_format=request.opt.content_format, held=held
        )
        await self.writer.write(pack)
        self.service.events.telemetry(device, pack.payload, now=now)
        answer = self.service.piggyback(device, held, now=now)
        if answer is None:
            return aiocoap.Message(code=Code.CHANGED)
        if isinstance(answer, NotModified):
            response = aiocoap.Message(code=Code.CHANGED)
            if held is not None and held != answer.etag:
                response.opt.etag = answer.etag  # stale, and too big to ride along
            return response
        return self.answer_changed(request, claimed, answer)


class _LayerResource(CoapResource):
    """A resource holding a layer document: PUT replaces it, iPATCH merges into
    it; If-Match (the layer's revision ETag) guards both (4.12 when stale)."""

    def __init__(
        self,
        service: SyncService,
        policy: IdentityPolicy,
        gate: Gate,
        on_change: Callable[[LayerId], None],
    ) -> None:
        super().__init__(service, policy, gate)
        self.on_change = on_change

    def target(self, request: aiocoap.Message) -> LayerId:
        """The layer a request addresses."""
        raise NotImplementedError

    def representation(self, layer: LayerId) -> Representation:
        """The layer document and its revision ETag."""
        document = layer_to_document(self.service.fleet.layer(layer))
        head = self.service.fleet.head(layer)
        blob = encode(document)
        tag = head.content if head is not None else etag_of_bytes(blob)
        return Representation(blob, ContentFormat.CBOR, tag)

    async def put(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        return await self._write(request, claimed, replace=True)

    async def patch(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        return await self._write(request, claimed, replace=False)

    async def _write(
        self, request: aiocoap.Message, claimed: Identity | None, *, replace: bool
    ) -> aiocoap.Message:
        operator = self.policy.for_operator(claimed)
        layer = self.target(request)
        body = self.body(request)
        if isinstance(body, aiocoap.Message):
            return body
        if request.opt.if_match:
            current = self.representation(layer).etag
            if current not in request.opt.if_match:
                raise StalePrecondition(f"{layer} is at {current.hex()}")
        document = decode(body)
        if not is_map(document):
            raise BadRequest("a layer document is a CBOR map with set, unset and lock")
        revision, _impact = self.service.fleet.write_layer(
            layer,
            layer_from_document(document),
            author=operator.name,
            message="via CoAP",
            now=time.time(),
            replace=replace,
        )
        self.on_change(layer)
        response = aiocoap.Message(code=Code.CHANGED)
        response.opt.etag = revision.content
        return response


class GroupResource(_LayerResource, ObservedByName, aiocoap.resource.ObservableResource):  # pyright: ignore[reportIncompatibleMethodOverride]
    """/grp/global and /grp/{dimension}/{path...}: a layer, observable."""

    methods: ClassVar[dict[Code, str]] = {Code.GET: "get", Code.PUT: "put", Code.iPATCH: "patch"}
    link: ClassVar[dict[str, str | None]] = {
        "rt": "edgecfg.grp",
        "ct": f"{ContentFormat.CBOR:d}",
        "obs": None,
    }

    async def observation_key(self, request: aiocoap.Message) -> str | None:
        try:
            layer = _layer_of(request)
        except BadRequest:
            return None  # the GET says why
        if layer != GLOBAL and self.service.fleet.head(layer) is None:
            return None  # a layer nobody wrote: answered, not observed
        return layer

    def changed(self, layer: LayerId) -> None:
        self.changed_name(layer)

    def changed_all(self) -> None:
        """Notify every group observer (an operator credential was revoked)."""
        for layer in list(self.observers):
            self.changed_name(layer)

    def target(self, request: aiocoap.Message) -> LayerId:
        return _layer_of(request)

    async def get(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        self.policy.for_operator(claimed)
        representation = self.representation(_layer_of(request))
        if representation.etag in request.opt.etags:
            return valid(representation.etag)
        return serve_blocks(request, representation)


def _layer_of(request: aiocoap.Message) -> LayerId:
    path = request.opt.uri_path
    if not path or not all(path):
        raise BadRequest("name a layer: /grp/global or /grp/{dimension}/{group...}")
    if path == ("global",):
        return GLOBAL
    return LayerId("/".join(path))


class DeviceResource(_LayerResource):
    """/dev/{dev}: GET the registry entry and effective ETag; PUT/iPATCH overrides."""

    methods: ClassVar[dict[Code, str]] = {Code.GET: "get", Code.PUT: "put", Code.iPATCH: "patch"}
    link: ClassVar[dict[str, str | None]] = {"rt": "edgecfg.dev", "ct": f"{ContentFormat.CBOR:d}"}

    def target(self, request: aiocoap.Message) -> LayerId:
        return LayerId(f"device/{_device_of(request)}")

    async def get(self, request: aiocoap.Message, claimed: Identity | None) -> aiocoap.Message:
        self.policy.for_operator(claimed)
        device = DeviceId(_device_of(request))
        record = self.service.fleet.record(device)
        document: dict[str, Value] = {
            "id": record.id,
            "groups": dict[str, Value](record.groups),
            "hardware": record.hardware,
            "firmware": record.firmware,
            "agent": record.agent_version,
            "last_seen": record.last_seen,
            "applied": record.applied_etag,
            "etag": self.service.fleet.etag(device),
        }
        blob = encode(document)
        return serve_blocks(request, Representation(blob, ContentFormat.CBOR, etag_of_bytes(blob)))


def _held(request: aiocoap.Message) -> ETag | None:
    """The version a device holds, from a request's ETag option (the short
    form of ``?cfg=`` on a telemetry POST: 9 bytes instead of 22)."""
    return ETag(request.opt.etags[0]) if request.opt.etags else None


def parse_etag(text: str) -> ETag:
    """An ETag from its hex form in a query (``from=``, ``cfg=``)."""
    shown = text if len(text) <= 16 else f"{text[:16]}..."  # the diagnostic stays short
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise BadRequest(f"ETag {shown!r} is not hexadecimal") from None
    if not 1 <= len(raw) <= 8:
        raise BadRequest(f"ETag {shown!r} must be 1 to 8 bytes")
    return ETag(raw)


def parse_query(options: Sequence[str]) -> dict[str, str]:
    """Uri-Query options as a map; repeated or malformed keys are refused."""
    query: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise BadRequest(f"query {option!r} must be key=value")
        if key in query:
            raise BadRequest(f"query key {key!r} given twice")
        query[key] = value
    return query
