"""What other systems would send for a configuration change, for comparison.

``edgecfg bench delta`` measures the edgecfg delta against these in one run:

- :func:`full_lz4` — the whole new config, canonical CBOR, LZ4 block
  compressed (what a system without deltas sends);
- :func:`json_patch_cbor` — an RFC 6902 JSON Patch (AWS shadows, Azure twins
  send patches of this kind), encoded as CBOR to be fair;
- :func:`zstd_dictionary` — the new CBOR compressed by zstd level 19 with the
  previous CBOR as a raw-content dictionary, frame without magic number,
  dictionary id or checksum: the strongest generic technique on the corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import zstandard

from edgecfg.errors import CommandError

try:
    import jsonpatch  # pyright: ignore[reportMissingTypeStubs]
    import lz4.block  # pyright: ignore[reportMissingTypeStubs]
except ImportError as missing:  # a device install leaves the baselines out
    raise CommandError(
        f"the delta baselines need {missing.name}: install edgecfg[bench] (uv sync does)"
    ) from None

from edgecfg.core.tree import Value
from edgecfg.wire.cbor import encode


def full_lz4(new: Value) -> bytes:
    """The new config's canonical CBOR, LZ4-compressed (block format, no size prefix)."""
    compress = cast(Callable[..., bytes], lz4.block.compress)  # pyright: ignore[reportUnknownMemberType]
    return compress(encode(new), store_size=False)


def json_patch_cbor(old: Value, new: Value) -> bytes:
    """An RFC 6902 patch from ``old`` to ``new`` (python-jsonpatch), as canonical CBOR."""
    patch = jsonpatch.make_patch(old, new)  # pyright: ignore[reportUnknownMemberType]
    operations = cast(list[dict[str, Value]], patch.patch)  # pyright: ignore[reportUnknownMemberType]
    return encode(cast(Value, operations))


def zstd_dictionary(old: Value, new: Value, *, level: int = 19) -> bytes:
    """The new CBOR compressed by zstd with the old CBOR as dictionary (magicless frame)."""
    dictionary = zstandard.ZstdCompressionDict(
        encode(old), dict_type=zstandard.DICT_TYPE_RAWCONTENT
    )
    params = zstandard.ZstdCompressionParameters.from_level(  # pyright: ignore[reportUnknownMemberType]
        level,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_checksum=False,
        write_content_size=False,
        write_dict_id=False,
    )
    compressor = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params)
    return compressor.compress(encode(new))
