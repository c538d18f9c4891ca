"""The numbers of the wire: content formats and CoAP codes, defined once."""

from __future__ import annotations

import aiocoap.numbers.codes
import pytest

from edgecfg.wire.numbers import CoapCode, ContentFormat


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (CoapCode.VALID, "2.03"),
        (CoapCode.CONTENT, "2.05"),
        (CoapCode.CONTINUE, "2.31"),
        (CoapCode.BAD_REQUEST, "4.00"),
        (CoapCode.REQUEST_ENTITY_INCOMPLETE, "4.08"),
        (CoapCode.UNPROCESSABLE_ENTITY, "4.22"),
        (CoapCode.TOO_MANY_REQUESTS, "4.29"),
        (CoapCode.SERVICE_UNAVAILABLE, "5.03"),
    ],
)
def test_a_code_is_written_and_read_the_way_people_write_it(code: CoapCode, text: str) -> None:
    assert code.dotted == text
    assert CoapCode.parse(text) is code


def test_every_code_has_aiocoaps_number() -> None:
    aiocoap_codes = aiocoap.numbers.codes.Code
    for code in CoapCode:
        assert int(aiocoap_codes[code.name]) == int(code), code.name


def test_only_2_xx_is_a_success() -> None:
    assert {code.dotted[0] for code in CoapCode if code.is_success} == {"2"}
    assert CoapCode.VALID.is_success  # 2.03 is a success too


@pytest.mark.parametrize("text", ["2.5", "205", "x.05", "2.99", "", "9.99", "2.0a"])
def test_a_malformed_or_unknown_code_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="CoAP"):
        CoapCode.parse(text)


def test_content_formats_are_the_registered_numbers() -> None:
    assert (ContentFormat.CBOR, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR) == (
        60,
        110,
        112,
    )
    assert 65000 <= ContentFormat.DELTA <= 65535  # the experimental range
