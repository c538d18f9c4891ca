"""Block-wise transfer arithmetic (RFC 7959), independent of any CoAP library.

A representation is cut into blocks of ``2 ** (szx + 4)`` bytes (16 to 1024).
Because the gateway keeps every representation's bytes, any block can be
served at any time while its ETag is current: a device resumes at block N
after days (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edgecfg.errors import PeerError

MIN_SZX: Final = 0
MAX_SZX: Final = 6  # 1024 bytes; szx 7 is reserved (BERT, RFC 8323 only)
DEFAULT_SZX: Final = 6


class BlockRangeError(PeerError, ValueError):
    """A block number beyond the end of the representation (answered 4.00)."""

    def __init__(self, number: int, szx: int, size: int) -> None:
        blocks = block_count(size, szx)
        super().__init__(
            f"block {number} of {block_size(szx)} bytes is beyond the end: the "
            f"representation has {size} bytes in {blocks} block(s)"
        )
        self.number = number
        self.szx = szx
        self.size = size


def block_size(szx: int) -> int:
    """Bytes per block for a size exponent (RFC 7959 §2.2)."""
    if not MIN_SZX <= szx <= MAX_SZX:
        raise BlockRangeError(0, MIN_SZX, 0) if szx < 0 else ValueError(f"szx {szx} not in 0..6")
    return 1 << (szx + 4)


def block_count(size: int, szx: int) -> int:
    """Blocks needed for ``size`` bytes (at least one, even when empty)."""
    return max(1, -(-size // block_size(szx)))


@dataclass(frozen=True, slots=True)
class Block:
    """One block of a representation."""

    number: int
    more: bool
    szx: int
    payload: bytes


def block_of(data: bytes, number: int, szx: int) -> Block:
    """Block ``number`` of ``data`` at size exponent ``szx``.

    Raises :class:`BlockRangeError` for a block past the end (block 0 of an
    empty representation exists and is empty).
    """
    size = block_size(szx)
    start = number * size
    if number < 0 or (start >= len(data) and not (number == 0 and not data)):
        raise BlockRangeError(number, szx, len(data))
    chunk = data[start : start + size]
    return Block(number, start + size < len(data), szx, chunk)


def szx_for(size: int) -> int:
    """The size exponent of a block size (16..1024, a power of two)."""
    if size < 16 or size > 1024 or size & (size - 1):
        raise ValueError(f"block size {size} must be a power of two in 16..1024")
    return size.bit_length() - 5
