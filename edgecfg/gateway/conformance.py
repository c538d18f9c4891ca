"""The RFC 7252 and RFC 7959 rules a request must meet before any handler runs.

Pure functions over option numbers and block fields (no aiocoap): the
datagram screen in :mod:`edgecfg.gateway.hardening` applies them to every
plain request before aiocoap keeps any state for it, and the resources apply
them again to the inner request of an OSCORE message.

- RFC 7252 §5.4.1: an unrecognized *critical* option (an odd number) in a
  Confirmable request is answered 4.02 Bad Option; in a Non-confirmable one
  the message is rejected (dropped).  Elective options (even numbers) that
  are not recognized are ignored.
- RFC 7252 §5.4.5: a non-repeatable option given more than once: each
  supernumerary occurrence is treated like an unrecognized option, so a
  repeated non-repeatable *critical* option is 4.02 as well.
- RFC 7959 §2.2/§2.3: SZX 7 is reserved (BERT is for reliable transports
  only, RFC 8323 §6); a non-final block carries exactly the block size, a
  final one at most that: anything else is 4.00 Bad Request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final

IF_MATCH: Final = 1
URI_HOST: Final = 3
IF_NONE_MATCH: Final = 5
URI_PORT: Final = 7
OSCORE: Final = 9
URI_PATH: Final = 11
URI_QUERY: Final = 15
ACCEPT: Final = 17
BLOCK2: Final = 23
BLOCK1: Final = 27
PROXY_URI: Final = 35
PROXY_SCHEME: Final = 39

RECOGNIZED_CRITICAL: Final = frozenset(
    {IF_MATCH, URI_HOST, IF_NONE_MATCH, URI_PORT, OSCORE, URI_PATH, URI_QUERY, ACCEPT, BLOCK2,
     BLOCK1, PROXY_URI, PROXY_SCHEME}
)  # fmt: skip
"""Critical options the gateway understands (RFC 7252 §5.10, RFC 7959, RFC 8613)."""
REPEATABLE_CRITICAL: Final = frozenset({IF_MATCH, URI_PATH, URI_QUERY})
"""Of those, the ones RFC 7252 §5.10 marks repeatable."""

RESERVED_SZX: Final = 7


def is_critical(number: int) -> bool:
    """RFC 7252 §5.4.6: the lowest bit of the option number."""
    return number & 1 == 1


def bad_option(numbers: Iterable[int]) -> str | None:
    """Why a request with these option numbers (in any order, repeats
    included) must be refused 4.02, or None when it may be handled."""
    numbers = numbers if isinstance(numbers, list) else list(numbers)
    critical = [n for n in numbers if n & 1]
    if RECOGNIZED_CRITICAL.issuperset(critical):  # every request that is not refused
        once = [n for n in critical if n not in REPEATABLE_CRITICAL]
        if len(once) == len(set(once)):
            return None
    seen = Counter(numbers)
    unknown = sorted(n for n in seen if is_critical(n) and n not in RECOGNIZED_CRITICAL)
    if unknown:
        shown = ", ".join(map(str, unknown[:4])) + (" ..." if len(unknown) > 4 else "")
        return f"unrecognized critical option {shown}"  # RFC 7252 §5.4.1
    repeated = sorted(
        n for n, count in seen.items()
        if count > 1 and n in RECOGNIZED_CRITICAL and n not in REPEATABLE_CRITICAL
    )  # fmt: skip
    if repeated:
        return f"critical option {repeated[0]} is not repeatable"  # RFC 7252 §5.4.5
    return None


def block_size_fault(*, szx: int, more: bool, payload: int) -> str | None:
    """Why a Block1 block of ``payload`` bytes does not fit its SZX and M
    fields (RFC 7959 §2.2, §2.3), or None."""
    if szx >= RESERVED_SZX:
        return "Block1 SZX 7 is reserved (BERT is for reliable transports only)"
    size = 1 << (szx + 4)
    if more and payload != size:
        return f"a non-final Block1 block carries exactly {size} bytes, not {payload}"
    if payload > size:
        return f"a Block1 block of size {size} carries {payload} bytes"
    return None
