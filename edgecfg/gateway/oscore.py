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

  * the **sender sequence number** is reserved ahead in growing chunks and
    the reservation is committed durably *before* a number from it is used
    (RFC 8613 Appendix B.1.1), so a crash skips numbers but never reuses one;
    it lives in its own table, so no configuration rollback can take it back;
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
from typing import Any, Final

from aiocoap import oscore
from aiocoap.credentials import CredentialsMap

from edgecfg.crypto import RecordCipher
from edgecfg.gateway.credentials import (
    ALGORITHM,
    GATEWAY_SENDER_ID,
    HKDF,
    CredentialError,
    Secret,
    unseal,
)
from edgecfg.gateway.identity import Identity, Role
from edgecfg.store.base import CredentialRecord, OscoreState, Store, kid_for

log = logging.getLogger("edgecfg.gateway.oscore")

CACHE_SIZE: Final = 20_000
"""Security contexts kept in memory; a context costs about 4 KiB (`bench oscore`)."""
WINDOW_SIZE: Final = oscore.DEFAULT_WINDOWSIZE
"""Replay window width in sequence numbers (aiocoap's default, 32)."""
CHUNK_START: Final = 16
"""First sender sequence number reservation after loading a context."""
CHUNK_LIMIT: Final = 4096
"""Largest reservation: at most this many numbers are skipped by a crash."""

Persist = Callable[[bytes, OscoreState], None]


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
    :class:`~edgecfg.gateway.identity.Identity` for the resources.
    """

    def __init__(
        self,
        record: CredentialRecord,
        secret: Secret,
        state: OscoreState | None,
        persist: Persist,
    ) -> None:
        self.alg_aead = oscore.algorithms[ALGORITHM]
        self.hashfun = oscore.hashfunctions[HKDF]
        self.sender_id = GATEWAY_SENDER_ID
        self.recipient_id = record.kid
        self.id_context = None
        self.derive_keys(secret.master_salt, secret.master_secret)
        role: Role = "operator" if record.role == "operator" else "device"
        self.identity = Identity(role, record.name)
        self.authenticated_claims = [self.identity]
        # Always on: committing the window on every request would cost a
        # durable write per request.
        self.echo_recovery = secrets.token_bytes(8)
        self._persist = persist
        self.recipient_replay_window = oscore.ReplayWindow(WINDOW_SIZE, self._window_changed)
        if state is None:
            self.sender_sequence_number = 0
            self.recipient_replay_window.initialize_empty()
            self.window_saved = True
        else:
            self.sender_sequence_number = state.next_to_send
            self.window_saved = state.window is not None
            if state.window is not None:
                self.recipient_replay_window.initialize_from_persisted(decode_window(state.window))
        self.reserved = self.sender_sequence_number
        self.chunk = CHUNK_START
        self.retired = False

    def __repr__(self) -> str:
        who = f"{self.identity.role} {self.identity.name!r}"
        return f"<StoredContext {who} kid={self.recipient_id.hex()}>"

    @property
    def kid(self) -> bytes:
        return self.recipient_id

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
            # Once per load: from now on the stored window is stale.
            self.window_saved = False
            self._persist(self.kid, self.state(exact=False))

    def retire(self) -> OscoreState:
        """Stop persisting (the context leaves the cache, but an observation may
        still hold it): it keeps the numbers up to a last reservation, which the
        returned state skips, and refuses to go beyond them."""
        self.retired = True
        self.reserved = self.sender_sequence_number + CHUNK_LIMIT
        state = self.state(exact=True)
        return OscoreState(self.reserved, state.window)

    def post_seqnoincrease(self) -> None:
        if self.sender_sequence_number > self.reserved and self.retired:
            raise oscore.ContextUnavailable("security context was unloaded")
        if self.sender_sequence_number > self.reserved:
            self.reserved += self.chunk
            self.chunk = min(self.chunk * 2, CHUNK_LIMIT)
            # Durable before the number is used (protect() runs after this).
            self._persist(self.kid, self.state(exact=False))


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

    def __init__(self, store: Store, cipher: RecordCipher, *, cache_size: int = CACHE_SIZE) -> None:
        super().__init__()
        self.store = store
        self.cipher = cipher
        self.cache_size = cache_size
        self.loaded: OrderedDict[bytes, StoredContext] = OrderedDict()
        self._revocations = store.revocations()

    def find_oscore(self, unprotected: dict[Any, Any]) -> StoredContext:
        kid = unprotected.get(oscore.COSE_KID)
        if not isinstance(kid, bytes) or oscore.COSE_KID_CONTEXT in unprotected:
            raise KeyError(kid)
        context = self.loaded.get(kid)
        if context is not None:
            self.loaded.move_to_end(kid)
            return context
        return self._load(kid)

    def _load(self, kid: bytes) -> StoredContext:
        record = self.store.credential(kid)
        if record is None or not record.active:
            raise KeyError(kid)
        try:
            secret = unseal(self.cipher, record)
        except CredentialError:
            # The peer gets 4.01 (no context); the operator gets the reason.
            log.exception("OSCORE credential %s cannot be used", kid.hex())
            raise KeyError(kid) from None
        context = StoredContext(record, secret, self.store.oscore_state(kid), self._save)
        self.loaded[kid] = context
        while len(self.loaded) > self.cache_size:
            _, evicted = self.loaded.popitem(last=False)
            self._save(evicted.kid, evicted.retire())
        return context

    def check_key(self) -> None:
        """Raise :class:`CredentialError` unless the master key opens the stored
        credentials (the first one ever enrolled stands for all): a gateway
        started with the wrong key fails at once, not on each request."""
        record = self.store.credential(kid_for(1))
        if record is not None:
            unseal(self.cipher, record)

    def _save(self, kid: bytes, state: OscoreState) -> None:
        self.store.put_oscore_states([(kid, state)])

    def refresh(self) -> int:
        """Drop contexts whose credential was revoked since the last call; how many."""
        revocations = self.store.revocations()
        if revocations == self._revocations:
            return 0
        self._revocations = revocations
        dropped = 0
        for kid in list(self.loaded):
            record = self.store.credential(kid)
            if record is None or not record.active:
                context = self.loaded.pop(kid)
                self._save(kid, context.retire())
                dropped += 1
        if dropped:
            log.info("dropped %d revoked OSCORE context(s)", dropped)
        return dropped

    def flush(self) -> None:
        """Save every loaded context exactly (clean shutdown): no Echo needed after."""
        self.store.put_oscore_states(
            (kid, context.state(exact=True)) for kid, context in self.loaded.items()
        )

    def find_all_used_contextless_oscore_kid(self) -> set[bytes]:
        # Only EDHOC asks; the gateway does not offer EDHOC.
        return set(self.loaded)
