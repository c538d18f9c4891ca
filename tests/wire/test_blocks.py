"""Block-wise transfer arithmetic (RFC 7959, edgecfg/wire/blocks.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.errors import PeerError
from edgecfg.wire.blocks import (
    DEFAULT_SZX,
    MAX_SZX,
    MIN_SZX,
    Block,
    BlockRangeError,
    block_count,
    block_of,
    block_size,
    szx_for,
)

szxs = st.integers(min_value=MIN_SZX, max_value=MAX_SZX)
representations = st.binary(max_size=3000) | st.sampled_from([b"", b"x" * 16, b"y" * 1024])


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("szx", "size"), [(0, 16), (1, 32), (2, 64), (3, 128), (4, 256), (5, 512), (6, 1024)]
)
def test_block_size_is_two_to_the_szx_plus_4(szx: int, size: int) -> None:
    # RFC 7959 §2.2: SZX 0..6 stand for 16..1024 bytes
    assert block_size(szx) == size
    assert szx_for(size) == szx


def test_default_is_the_largest_block() -> None:
    assert block_size(DEFAULT_SZX) == 1024


def test_szx_7_is_reserved_for_bert_and_refused() -> None:
    # RFC 7959 §2.2 / RFC 8323 §6: SZX 7 is BERT, only over reliable transports
    with pytest.raises(ValueError, match=r"szx 7 not in 0\.\.6"):
        block_size(7)


def test_a_negative_szx_is_the_peer_s_mistake() -> None:
    with pytest.raises(BlockRangeError) as raised:
        block_size(-1)
    assert isinstance(raised.value, PeerError)


@pytest.mark.parametrize("size", [0, 8, 15, 24, 100, 2048, 1023, 1025])
def test_szx_for_refuses_sizes_that_are_no_block_size(size: int) -> None:
    with pytest.raises(ValueError, match=f"block size {size} must be a power of two"):
        szx_for(size)


@pytest.mark.parametrize(
    ("size", "szx", "count"),
    [(0, 0, 1), (1, 0, 1), (16, 0, 1), (17, 0, 2), (6539, 2, 103), (1024, 6, 1), (1025, 6, 2)],
)
def test_block_count_is_the_ceiling_and_at_least_one(size: int, szx: int, count: int) -> None:
    assert block_count(size, szx) == count


# ---------------------------------------------------------------- cutting


def test_blocks_of_a_small_representation() -> None:
    data = bytes(range(40))
    assert block_of(data, 0, 0) == Block(0, True, 0, data[:16])
    assert block_of(data, 1, 0) == Block(1, True, 0, data[16:32])
    assert block_of(data, 2, 0) == Block(2, False, 0, data[32:])


def test_block_zero_of_an_empty_representation_is_empty_and_last() -> None:
    assert block_of(b"", 0, 6) == Block(0, False, 6, b"")


def test_a_representation_of_exactly_one_block_has_no_more() -> None:
    assert block_of(b"z" * 64, 0, 2) == Block(0, False, 2, b"z" * 64)
    with pytest.raises(BlockRangeError):
        block_of(b"z" * 64, 1, 2)


def test_a_block_past_the_end_names_the_representation() -> None:
    with pytest.raises(BlockRangeError) as raised:
        block_of(b"a" * 100, 7, 2)
    error = raised.value
    assert (error.number, error.szx, error.size) == (7, 2, 100)
    assert str(error) == (
        "block 7 of 64 bytes is beyond the end: the representation has 100 bytes in 2 block(s)"
    )
    assert isinstance(error, PeerError) and isinstance(error, ValueError)


def test_a_negative_block_number_is_refused() -> None:
    with pytest.raises(BlockRangeError):
        block_of(b"abc", -1, 0)


@given(data=representations, szx=szxs)
def test_the_blocks_in_order_are_the_representation(data: bytes, szx: int) -> None:
    count = block_count(len(data), szx)
    blocks = [block_of(data, n, szx) for n in range(count)]
    assert b"".join(block.payload for block in blocks) == data
    assert [block.more for block in blocks] == [True] * (count - 1) + [False]
    assert all(len(block.payload) == block_size(szx) for block in blocks[:-1])
    assert 0 < len(blocks[-1].payload) <= block_size(szx) or data == b""
    with pytest.raises(BlockRangeError):
        block_of(data, count, szx)


@given(data=representations, szx=szxs, number=st.integers(min_value=0, max_value=300))
def test_any_block_can_be_fetched_alone(data: bytes, szx: int, number: int) -> None:
    # DESIGN §5: any block at any time while the ETag is current; the same
    # block number always gives the same bytes
    size = block_size(szx)
    if number >= block_count(len(data), szx):
        with pytest.raises(BlockRangeError):
            block_of(data, number, szx)
        return
    block = block_of(data, number, szx)
    assert block.payload == data[number * size : (number + 1) * size]
    assert block == block_of(data, number, szx)


@given(data=representations, small=szxs, large=szxs)
def test_a_transfer_may_switch_to_a_smaller_block_size(data: bytes, small: int, large: int) -> None:
    # RFC 7959 §2.4: a client may ask for a smaller size later; block n at szx
    # covers bytes n*size.. so the same bytes come back at any size
    if small > large:
        small, large = large, small
    ratio = block_size(large) // block_size(small)
    for number in range(block_count(len(data), large)):
        big = block_of(data, number, large)
        first = number * ratio
        parts = [
            block_of(data, n, small).payload
            for n in range(first, min(first + ratio, block_count(len(data), small)))
        ]
        assert b"".join(parts) == big.payload
