# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportAttributeAccessIssue=false
"""Block1 reassembly (RFC 7959 §2.3) for all resources of one gateway, bounded
per peer and in all (issue 20): see :class:`Spool`."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Final

import aiocoap
from aiocoap.numbers.codes import Code

from edgecfg.core.admission import Budgets, Refusal
from edgecfg.gateway.admission import refusal_response
from edgecfg.gateway.conformance import block_size_fault

MAX_BODY: Final = 64 * 1024
MAX_SPOOLS: Final = 256  # transfers of MAX_BODY in the default spool budget (16 MiB)
SPOOL_TTL_S: Final = 60.0


class Spool:
    """Bounded Block1 reassembly, shared by the resources of one gateway and
    keyed by peer, resource and request target.

    A transfer reserves ``MAX_BODY`` bytes (or its announced Size1) at block
    0, from its peer's share and from the total; a block 0 over either is
    refused (4.29 over the peer's share, 5.03 over the total, with Max-Age),
    so no peer can evict another's upload.  Transfers idle for
    ``SPOOL_TTL_S`` are dropped.
    """

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self._bodies: OrderedDict[tuple[object, ...], _Transfer] = OrderedDict()
        self._reserved: dict[object, int] = {}
        self.reserved = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def of(self, peer: object) -> int:
        """Bytes reserved by ``peer``'s transfers."""
        return self._reserved.get(peer, 0)

    def feed(
        self, request: aiocoap.Message, peer: object, resource: str
    ) -> bytes | aiocoap.Message:
        """The whole body, or the response that asks for (or refuses) more."""
        block1 = request.opt.block1
        if block1 is None:
            if len(request.payload) > MAX_BODY:
                return _too_large()
            return request.payload
        fault = block_size_fault(
            szx=block1.size_exponent, more=block1.more, payload=len(request.payload)
        )
        if fault is not None:
            return aiocoap.Message(code=Code.BAD_REQUEST, payload=fault.encode())
        key = (resource, request.remote, request.code, request.opt.uri_path, request.opt.uri_query)
        if request.opt.size1 is not None and request.opt.size1 > MAX_BODY:
            self._drop(key)
            return _too_large()  # RFC 7959 §4: the announced size is already too much
        now = time.monotonic()
        self.expire(now)
        if block1.block_number == 0:
            self._drop(key)  # starting over
            size = min(MAX_BODY, request.opt.size1 or MAX_BODY)
            refused = self._reserve(peer, size, now)
            if refused is not None:
                return refusal_response(refused)
            self._bodies[key] = _Transfer(peer, size, now)
        entry = self._bodies.get(key)
        if entry is None or block1.start != len(entry.body):
            self._drop(key)
            return aiocoap.Message(
                code=Code.REQUEST_ENTITY_INCOMPLETE,
                payload=f"expected block at byte {len(entry.body) if entry else 0}".encode(),
            )
        entry.body += request.payload
        if len(entry.body) > entry.size:
            self._drop(key)
            return _too_large()
        if block1.more:
            entry.touched = now
            self._bodies.move_to_end(key)
            response = aiocoap.Message(code=Code.CONTINUE)
            response.opt.block1 = block1
            return response
        self._drop(key)
        return bytes(entry.body)

    def expire(self, now: float) -> int:
        """Drop the transfers idle for ``SPOOL_TTL_S`` by ``now`` (feeding
        does this as it goes; the gateway's housekeeping calls it when no
        upload comes, so an abandoned one does not hold its peer's share);
        how many are left."""
        # least recently fed first (feeding moves a transfer to the end)
        while self._bodies:
            key, oldest = next(iter(self._bodies.items()))
            if now - oldest.touched <= SPOOL_TTL_S:
                break
            self._drop(key)
        return len(self._bodies)

    def _reserve(self, peer: object, size: int, now: float) -> Refusal | None:
        budgets = self.budgets
        oldest = next(iter(self._bodies.values()), None)
        wait = SPOOL_TTL_S - (now - oldest.touched) if oldest is not None else 1.0
        if self.reserved + size > budgets.spool_mib * 2**20:
            return Refusal("5.03", "upload spool", max(1, math.ceil(wait)))
        if self.of(peer) + size > budgets.peer_spool_kib * 1024:
            return Refusal("4.29", "peer upload spool", max(1, math.ceil(SPOOL_TTL_S)))
        self._reserved[peer] = self.of(peer) + size
        self.reserved += size
        return None

    def _drop(self, key: tuple[object, ...]) -> None:
        entry = self._bodies.pop(key, None)
        if entry is None:
            return
        self.reserved -= entry.size
        left = self._reserved.get(entry.peer, 0) - entry.size
        if left > 0:
            self._reserved[entry.peer] = left
        else:
            self._reserved.pop(entry.peer, None)


class _Transfer:
    __slots__ = ("body", "peer", "size", "touched")

    def __init__(self, peer: object, size: int, now: float) -> None:
        self.peer = peer
        self.size = size
        self.body = bytearray()
        self.touched = now


def _too_large() -> aiocoap.Message:
    response = aiocoap.Message(
        code=Code.REQUEST_ENTITY_TOO_LARGE, payload=f"body limit is {MAX_BODY} bytes".encode()
    )
    response.opt.size1 = MAX_BODY  # RFC 7959 §2.9.3
    return response
