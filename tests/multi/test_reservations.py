"""OSCORE sender sequence numbers across gateways (RFC 8613 Appendix B.1.1):
reservations from several processes' stores on one PostgreSQL database never
overlap, and two gateway contexts of one peer never generate the same
(kid, Partial IV)."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator

import pytest

from edgecfg.fleet.credentials import Secret
from edgecfg.gateway.oscore import CHUNK_LIMIT, StoredContext
from edgecfg.store import CredentialRecord, PostgresStore
from tests.store.helpers import POSTGRES_URL, postgres_unreachable

KID = b"\x2a"


@pytest.fixture
def stores() -> Iterator[list[PostgresStore]]:
    """Three stores (three pools, as three gateways have) on one new schema."""
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    name = f"t_{uuid.uuid4().hex[:16]}"
    opened = [PostgresStore(POSTGRES_URL, schema=name) for _ in range(3)]
    try:
        yield opened
    finally:
        opened[0].drop_schema()
        for store in opened:
            store.close()


def test_concurrent_reservations_from_several_stores_are_disjoint(
    stores: list[PostgresStore],
) -> None:
    ranges: list[tuple[int, int]] = []
    lock = threading.Lock()

    def reserve(store: PostgresStore, count: int) -> None:
        for _ in range(40):
            first = store.reserve_sequence_numbers(KID, count)
            with lock:
                ranges.append((first, first + count))

    threads = [threading.Thread(target=reserve, args=(store, n))
               for n, store in enumerate(stores * 2, start=1)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ranges.sort()
    assert len(ranges) == 240
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))
    state = stores[0].oscore_state(KID)
    assert state is not None and state.next_to_send == ranges[-1][1] == 40 * sum(range(1, 7))


def test_two_gateway_contexts_of_one_peer_never_share_a_partial_iv(
    stores: list[PostgresStore],
) -> None:
    """Both load the same stored state (the race the atomic step closes)."""
    record = CredentialRecord(KID, "device", "dev-1", b"", 0.0)
    secret = Secret(bytes(16), bytes(8))
    used: list[tuple[bytes, int]] = []
    contexts = [
        StoredContext(record, secret, store.oscore_state(KID),
                      lambda kid, state, s=store: s.put_oscore_states([(kid, state)]),
                      reserve=store.reserve_sequence_numbers,
                      used=lambda kid, number: used.append((kid, number)))
        for store in stores[:2]
    ]  # fmt: skip
    for _ in range(300):
        for context in contexts:
            context.new_sequence_number()
    assert len(used) == 600 and len(set(used)) == 600
    state = stores[0].oscore_state(KID)
    assert state is not None and state.next_to_send > max(number for _, number in used)
    # a retired context (an observation holds it) and a reload of it never share one
    retiring = contexts[0]
    retiring.retire(retiring.retirement())
    reloaded = StoredContext(record, secret, stores[2].oscore_state(KID),
                             lambda kid, state: None, reserve=stores[2].reserve_sequence_numbers,
                             used=lambda kid, number: used.append((kid, number)))  # fmt: skip
    for _ in range(CHUNK_LIMIT // 8):
        retiring.new_sequence_number()
        reloaded.new_sequence_number()
    assert len(set(used)) == len(used) == 600 + CHUNK_LIMIT // 4
