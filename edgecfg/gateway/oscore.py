# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
# pyright: reportAttributeAccessIssue=false, reportIncompatibleMethodOverride=false
# pyright: reportIncompatibleVariableOverride=false
"""OSCORE (RFC 8613) security contexts for 100,000 peers, kept in the store.

aiocoap's :class:`~aiocoap.credentials.CredentialsMap` tries every
credential in turn for each request, and its filesystem contexts hold a
directory and a lock per peer.  At fleet scale the gateway instead:

- finds a context by its key id (the ``kid`` of the OSCORE option) with one
  primary-key lookup, and only for a request that carries that kid;
- loads it lazily from the store, opening the sealed secret with the
  operator master key, and keeps at most ``cache_size`` contexts in memory
  (least recently used are saved and dropped);
- persists what must survive a restart in the store:

  * the **sender sequence number** is reserved ahead in growing chunks, each
    one atomic step in the store (``reserve_sequence_numbers``: one upsert
    with RETURNING) committed durably *before* a number from it is used
    (RFC 8613 Appendix B.1.1), so a crash skips numbers but never reuses one,
    and several gateways on one PostgreSQL database never hand out the same
    (kid, Partial IV); it lives in its own table, so no configuration
    rollback can take it back;
  * the **replay window** is marked unknown in the store as soon as it
    changes, and written back exactly on a clean shutdown or eviction.  After
    a crash the window is unknown and the peer's first request gets a 4.01
    with an Echo option; the repeat with that Echo proves freshness and
    re-initialises the window (Appendix B.1.2, aiocoap's client does this by
    itself).

Revoked credentials are found by :meth:`StoredCredentials.refresh` (the
gateway calls it with its store refresh) and stop working at once.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO

import aiocoap.error
from aiocoap import oscore
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from edgecfg.crypto import RecordCipher
from edgecfg.errors import StoreError
from edgecfg.fleet.credentials import (
    ALGORITHM,
    GATEWAY_SENDER_ID,
    HKDF,
    CredentialError,
    Secret,
    check_master_key,
    unseal,
)
from edgecfg.fleet.identity import Identity, Role
from edgecfg.store.base import CredentialRecord, OscoreState, Store

log = logging.getLogger("edgecfg.gateway.oscore")

CACHE_SIZE: Final = 20_000
"""Security contexts kept in memory; a context costs about 4 KiB (`bench oscore`)."""
WINDOW_SIZE: Final = oscore.DEFAULT_WINDOWSIZE
"""Replay window width in sequence numbers (aiocoap's default, 32)."""
PENDING_SIZE: Final = 1024
"""Loaded contexts waiting for their first verified request."""
CHUNK_START: Final = 16
"""First sender sequence number reservation after loading a context."""
CHUNK_LIMIT: Final = 4096
"""Largest reservation: at most this many numbers are skipped by a crash."""

MAX_PARTIAL_IV: Final = 5
"""Longest Partial IV (RFC 8613 §6.1: lengths 6 and 7 are reserved)."""
RESERVED_FLAGS: Final = 0xE0
"""Flag bits 0-2 of the OSCORE option (RFC 8613 §6.1: reserved; Group OSCORE,
RFC 9203, gives bit 2 a meaning this gateway does not speak)."""

Persist = Callable[[bytes, OscoreState], None]
Reserve = Callable[[bytes, int], int]
"""``(kid, count) -> first``: :meth:`~edgecfg.store.base.Store.reserve_sequence_numbers`."""
Used = Callable[[bytes, int], None]
"""``(kid, sequence number)``: told of every Partial IV the gateway generates."""


def encode_window(persisted: dict[str, Any]) -> bytes:
    """A replay window as stored: 8-byte index, then the bitfield (big-endian)."""
    index, bitfield = int(persisted["index"]), int(persisted["bitfield"])
    return index.to_bytes(8, "big") + bitfield.to_bytes(WINDOW_SIZE // 8, "big")


def decode_window(data: bytes) -> dict[str, int]:
    """Inverse of :func:`encode_window`; ValueError for anything else."""
    if len(data) != 8 + WINDOW_SIZE // 8:
        raise ValueError(f"stored replay window has {len(data)} bytes")
    return {"index": int.from_bytes(data[:8], "big"), "bitfield": int.from_bytes(data[8:], "big")}


class StoredContext(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """The gateway's side of one peer's OSCORE context, persisted through ``persist``.

    The gateway is the server: its Sender ID is empty and the peer's key id
    is its Recipient ID.  ``authenticated_claims`` carries the peer's
    :class:`~edgecfg.fleet.identity.Identity` for the resources.
    """

    def __init__(
        self,
        record: CredentialRecord,
        secret: Secret,
        state: OscoreState | None,
        persist: Persist,
        *,
        reserve: Reserve,
        used: Used | None = None,
    ) -> None:
        self.alg_aead = oscore.algorithms[ALGORITHM]
        self.hashfun = oscore.hashfunctions[HKDF]
        self.sender_id = GATEWAY_SENDER_ID
        self.recipient_id = record.kid
        self.id_context = None
        self.derive_keys(secret.master_salt, secret.master_secret)
        role: Role = "operator" if record.role == "operator" else "device"
        self.identity = Identity(role, record.name)
        self.revoked = False
        self.on_verified: Callable[[StoredContext], None] | None = None
        # Always on: committing the window on every request would cost a
        # durable write per request.
        self.echo_recovery = secrets.token_bytes(8)
        self._persist = persist
        self._reserve = reserve
        self._used = used
        self.recipient_replay_window = oscore.ReplayWindow(WINDOW_SIZE, self._window_changed)
        if state is None:
            self.sender_sequence_number = 0
            self.recipient_replay_window.initialize_empty()
            self.window_saved = True
        else:
            self.sender_sequence_number = state.next_to_send
            self.window_saved = False
            if state.window is not None:
                try:
                    window = decode_window(state.window)
                except ValueError:
                    # Unknown, then: the peer proves freshness with Echo.
                    log.error("stored replay window of kid %s is unreadable", record.kid.hex())
                else:
                    self.recipient_replay_window.initialize_from_persisted(window)
                    self.window_saved = True
        # Nothing reserved yet: the first number used reserves a chunk (which
        # may start above next_to_send: another gateway may have reserved).
        self.reserved = self.sender_sequence_number
        self.chunk = CHUNK_START
        self.retired = False

    def __repr__(self) -> str:
        who = f"{self.identity.role} {self.identity.name!r}"
        return f"<StoredContext {who} kid={self.recipient_id.hex()}>"

    @property
    def kid(self) -> bytes:
        return self.recipient_id

    @property
    def authenticated_claims(self) -> list[Identity]:  # type: ignore[override]
        """The peer's identity, while its credential is not revoked: a revoked
        context still held by an observation authorizes nothing."""
        return [] if self.revoked else [self.identity]

    def unprotect(self, protected_message: Any, request_id: Any = None) -> Any:
        result = super().unprotect(protected_message, request_id)
        # Verified: only now may a freshly loaded context take a cache slot.
        if self.on_verified is not None:
            verified, self.on_verified = self.on_verified, None
            verified(self)
        return result

    def state(self, *, exact: bool) -> OscoreState:
        """What to store: the reservation and an unknown window, or (``exact``,
        at shutdown) the next number and the window as they are."""
        if exact:
            window = None
            if self.recipient_replay_window.is_initialized():
                window = encode_window(self.recipient_replay_window.persist())
            return OscoreState(self.sender_sequence_number, window)
        return OscoreState(self.reserved, None)

    def _window_changed(self) -> None:
        if self.window_saved:
            # Once per load: from now on the stored window is stale.  The flag
            # drops only once that is stored, so a failed write is retried.
            self._persist(self.kid, self.state(exact=False))
            self.window_saved = False

    def retirement(self) -> OscoreState:
        """The state to store when the context leaves the cache: the window as
        it is (its reservations are stored already)."""
        return OscoreState(self.reserved, self.state(exact=True).window)

    def retire(self, stored: OscoreState) -> None:
        """Left the cache, with ``stored`` saved.  An observation can keep the
        context alive: it goes on reserving its own chunks, atomically, so it
        and a reload of the context never share a number."""
        del stored
        self.retired = True

    def new_sequence_number(self) -> int:
        """The next sender sequence number, from a reservation of this
        context's own: a new chunk is reserved atomically in the store when
        the current one is used up (RFC 8613 Appendix B.1.1), so no other
        gateway on the database and no restart can use it again."""
        if self.sender_sequence_number >= self.reserved:
            # Durable before the number is used, and in memory only once
            # stored: a failed reservation hands out nothing.
            first = self._reserve(self.kid, self.chunk)
            self.sender_sequence_number, self.reserved = first, first + self.chunk
            self.chunk = min(self.chunk * 2, CHUNK_LIMIT)
        number = int(super().new_sequence_number())
        if self._used is not None:
            self._used(self.kid, number)
        return number

    def post_seqnoincrease(self) -> None:
        """Nothing: :meth:`new_sequence_number` reserves before a number is used."""


class MemoryContext(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
    """An OSCORE context held only in memory, with no persistence at all.

    For the other end in benchmarks and tests (never for the gateway: its
    sequence numbers would be reused after a restart).
    """

    def __init__(
        self,
        sender_id: bytes,
        recipient_id: bytes,
        secret: Secret,
        *,
        id_context: bytes | None = None,
        sequence: int = 0,
    ) -> None:
        self.alg_aead = oscore.algorithms[ALGORITHM]
        self.hashfun = oscore.hashfunctions[HKDF]
        self.sender_id, self.recipient_id, self.id_context = sender_id, recipient_id, id_context
        self.derive_keys(secret.master_salt, secret.master_secret)
        self.sender_sequence_number = sequence
        self.recipient_replay_window = oscore.ReplayWindow(WINDOW_SIZE, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.echo_recovery = None

    def post_seqnoincrease(self) -> None:
        pass


class StoredCredentials(CredentialsMap):
    """Server credentials for aiocoap's OSCORE site wrapper, backed by the store.

    ``find_oscore`` is the only lookup aiocoap's
    :class:`~aiocoap.oscore_sitewrapper.OscoreSiteWrapper` makes per request;
    it costs one dictionary lookup for a cached context and one primary-key
    read plus a key derivation for a cold one.
    """

    def __init__(
        self,
        store: Store,
        cipher: RecordCipher,
        *,
        cache_size: int = CACHE_SIZE,
        piv_log: Path | None = None,
        shared: bool = False,
    ) -> None:
        super().__init__()
        self.store = store
        # Several gateways on one database (PostgreSQL): each keeps its own
        # replay windows, and a window one stored could be stale for what the
        # peer did at another since; so none is ever stored as known, and a
        # context loaded anywhere starts with Echo recovery (RFC 8613 B.1.2).
        self.shared = shared
        # told the key id of every context admitted to the cache (several
        # gateways: announced to the others, which forget theirs)
        self.on_admit: Callable[[bytes], None] | None = None
        # A debug record of every (kid, Partial IV) this gateway generates, one
        # "kid-hex number" line each, written at once (it survives a kill -9):
        # the failover test checks that no pair is ever used twice.
        self._piv_log: TextIO | None = None
        if piv_log is not None:
            self._piv_log = piv_log.open("a", encoding="ascii", buffering=1)
        self.cipher = cipher
        self.cache_size = cache_size
        self.loaded: OrderedDict[bytes, StoredContext] = OrderedDict()
        self.pending: OrderedDict[bytes, StoredContext] = OrderedDict()
        self._revocations = store.revocations()

    def find_oscore(self, unprotected: dict[Any, Any]) -> StoredContext:
        kid = unprotected.get(oscore.COSE_KID)
        if not isinstance(kid, bytes) or oscore.COSE_KID_CONTEXT in unprotected:
            raise KeyError(kid)
        context = self.loaded.get(kid)
        if context is not None:
            self.loaded.move_to_end(kid)
            return context
        context = self.pending.get(kid)
        if context is not None:
            return context
        try:
            return self._load(kid)
        except StoreError:
            log.exception("loading the OSCORE context of kid %s failed", kid.hex())
            raise aiocoap.error.ServiceUnavailable("credentials unavailable") from None

    def _load(self, kid: bytes) -> StoredContext:
        """A context not yet verified: it waits in ``pending`` (bounded, never
        saved: it has used nothing) until a request under it decrypts, so forged
        requests under enumerated key ids cannot churn the cache."""
        record = self.store.credential(kid)
        if record is None or not record.active:
            raise KeyError(kid)
        try:
            secret = unseal(self.cipher, record)
        except CredentialError:
            # The peer gets 4.01 (no context); the operator gets the reason.
            log.exception("OSCORE credential %s cannot be used", kid.hex())
            raise KeyError(kid) from None
        context = StoredContext(
            record, secret, self.store.oscore_state(kid), self._save,
            reserve=self.store.reserve_sequence_numbers,
            used=None if self._piv_log is None else self._log_piv,
        )  # fmt: skip
        context.on_verified = self._admit
        self.pending[kid] = context
        while len(self.pending) > PENDING_SIZE:
            self.pending.popitem(last=False)
        return context

    def _admit(self, context: StoredContext) -> None:
        """Move a verified context into the cache, saving the least recently
        used out of it first (if that save fails, nothing moves)."""
        while len(self.loaded) >= self.cache_size:
            kid, evicted = next(iter(self.loaded.items()))
            stored = self._unless_shared(evicted.retirement())
            self._save(kid, stored)
            evicted.retire(stored)
            del self.loaded[kid]
        self.pending.pop(context.kid, None)
        self.loaded[context.kid] = context
        if self.on_admit is not None:
            self.on_admit(context.kid)

    def forget(self, kid: bytes) -> bool:
        """Drop ``kid``'s context: another gateway loaded it, so the peer is
        served there and this replay window falls behind.  The peer's next
        request here reloads the context and recovers the window with Echo
        (RFC 8613 Appendix B.1.2), instead of being checked against a stale
        window that would let a request it sent elsewhere be replayed here.
        An observation holding the context keeps working.  Whether one was held."""
        self.pending.pop(kid, None)
        context = self.loaded.pop(kid, None)
        if context is None:
            return False
        stored = self._unless_shared(context.retirement())
        if not self.shared:  # shared: the reservations are stored, no window ever is
            try:
                self._save(kid, stored)
            except StoreError:
                log.exception("saving the OSCORE state of kid %s failed", kid.hex())
        context.retire(stored)
        return True

    def forget_all(self) -> int:
        """:meth:`forget` every context (this gateway may have missed
        announcements: its listener was disconnected); how many were held."""
        self.pending.clear()
        dropped = sum(1 for kid in list(self.loaded) if self.forget(kid))
        if dropped:
            log.info("dropped %d OSCORE context(s) after missing announcements", dropped)
        return dropped

    def _log_piv(self, kid: bytes, number: int) -> None:
        if self._piv_log is not None:
            self._piv_log.write(f"{kid.hex()} {number}\n")

    def close(self) -> None:
        """Close the Partial IV record (:meth:`flush` first at a clean stop)."""
        log_file, self._piv_log = self._piv_log, None
        if log_file is not None:
            log_file.close()

    def _save(self, kid: bytes, state: OscoreState) -> None:
        self.store.put_oscore_states([(kid, state)])

    def refresh(self) -> list[Identity]:
        """Drop contexts whose credential was revoked since the last call; returns
        their identities (the gateway ends their observations)."""
        revocations = self.store.revocations()
        if revocations == self._revocations:
            return []
        self.pending.clear()
        dropped: list[Identity] = []
        for kid in list(self.loaded):
            record = self.store.credential(kid)
            if record is None or not record.active:
                context = self.loaded[kid]
                context.revoked = True
                stored = self._unless_shared(context.retirement())
                self._save(kid, stored)
                context.retire(stored)
                del self.loaded[kid]
                dropped.append(context.identity)
        # Only now: a failure above leaves the counter stale, so the next call retries.
        self._revocations = revocations
        if dropped:
            log.info("dropped %d revoked OSCORE context(s)", len(dropped))
        return dropped

    def check_key(self) -> None:
        """Raise :class:`CredentialError` unless the master key opens the stored
        credentials: a gateway started with the wrong key fails at once."""
        check_master_key(self.store, self.cipher)

    def flush(self) -> None:
        """Save every loaded context exactly (clean shutdown): no Echo needed
        after, unless the store is ``shared`` (then windows stay unknown)."""
        self.store.put_oscore_states(
            (kid, self._unless_shared(context.state(exact=True)))
            for kid, context in self.loaded.items()
        )

    def _unless_shared(self, state: OscoreState) -> OscoreState:
        """``state`` with its window unknown when gateways share the store."""
        return OscoreState(state.next_to_send, None) if self.shared else state

    def find_all_used_contextless_oscore_kid(self) -> set[bytes]:
        # Only EDHOC asks; the gateway does not offer EDHOC.
        return set(self.loaded)


class OscoreSite(OscoreSiteWrapper):
    """aiocoap's OSCORE site wrapper, with the edges it leaves open closed.

    - A malformed OSCORE option is 4.02 Bad Option (RFC 8613 §8.2), where the
      wrapper would let the decoder's exception become 5.00; so is one with a
      reserved flag bit set, the group flag among them (aiocoap would try a
      group signature on a pairwise context: 5.00 and a traceback each).
    - ``/.well-known/edhoc`` is 4.04: the gateway does not offer EDHOC, and the
      wrapper would load contexts for it.
    """

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        if request.opt.uri_path == (".well-known", "edhoc"):
            raise aiocoap.error.NotFound("EDHOC is not offered")
        screen_oscore_option(request)
        await super().render_to_pipe(pipe)


def screen_oscore_option(request: aiocoap.Message) -> None:
    """Raise 4.02 Bad Option (RFC 8613 §8.2) for an OSCORE option this gateway
    cannot take: reserved or group flag bits, a reserved Partial IV length, or
    one aiocoap's parser refuses.  A request without the option passes."""
    option = request.opt.oscore
    if option is None:
        return
    if option and option[0] & RESERVED_FLAGS:
        raise aiocoap.error.BadOption("OSCORE option: reserved or group flag bits set")
    if option and option[0] & 0x07 > MAX_PARTIAL_IV:
        raise aiocoap.error.BadOption("OSCORE option: reserved partial IV length")
    try:
        oscore.verify_start(request)
    except (oscore.DecodeError, IndexError, ValueError) as error:
        raise aiocoap.error.BadOption(f"OSCORE option: {error}") from None
