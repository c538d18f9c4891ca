"""The light load driver of ``bench multi``: its pre-built datagram is the
GET it claims to be (aiocoap decodes it), and its token and ETag patches
land where the driver reads them."""

from __future__ import annotations

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from edgecfg.bench.multi import datagram


def test_the_prebuilt_datagram_is_a_con_get_of_the_device_config_with_its_etag() -> None:
    for device in ("dev-000001", "a-device-with-a-long-name-0042"):
        raw = datagram(device)
        raw[9:17] = bytes(range(8))
        raw[2:4] = b"\x12\x34"
        raw[4:8] = b"tokn"
        message = aiocoap.Message.decode(bytes(raw))
        assert message.code == Code.GET and message.mtype == Type.CON
        assert message.opt.uri_path == ("cfg", device)
        assert message.opt.etags == (bytes(range(8)),)
        assert message.mid == 0x1234 and message.token == b"tokn"
