"""Who may act for a device and who is an operator (edgecfg/fleet/identity.py,
DESIGN §5).  Over OSCORE with real contexts: tests/gateway/test_oscore.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.fleet.identity import (
    AccessDenied,
    AuthenticatedPolicy,
    Identity,
    InsecurePolicy,
    Role,
)

NAMES = st.sampled_from(["dev-1", "dev-2", "alice", ""])
ROLES: list[Role] = ["device", "operator", "anonymous"]
claims = st.none() | st.builds(Identity, st.sampled_from(ROLES), NAMES)

POLICY = AuthenticatedPolicy()


@given(claims, NAMES)
def test_a_device_acts_only_for_itself_and_an_operator_for_any(
    claimed: Identity | None, device: str
) -> None:
    allowed = claimed is not None and (
        claimed.role == "operator" or (claimed.role == "device" and claimed.name == device)
    )
    if allowed:
        assert POLICY.for_device(claimed, device) == claimed
    else:
        with pytest.raises(AccessDenied) as raised:
            POLICY.for_device(claimed, device)
        # 4.01 when nobody authenticated, 4.03 when the wrong one did
        assert raised.value.unauthenticated == (claimed is None or claimed.role == "anonymous")


@given(claims)
def test_operator_resources_need_an_operator(claimed: Identity | None) -> None:
    if claimed is not None and claimed.role == "operator":
        assert POLICY.for_operator(claimed) == claimed
    else:
        with pytest.raises(AccessDenied) as raised:
            POLICY.for_operator(claimed)
        assert raised.value.unauthenticated == (claimed is None or claimed.role == "anonymous")


def test_denials_name_who_asked_and_for_what() -> None:
    with pytest.raises(AccessDenied, match=r"^dev-2 may not act for device dev-1$"):
        POLICY.for_device(Identity("device", "dev-2"), "dev-1")
    with pytest.raises(AccessDenied, match=r"^device dev-1 is not an operator$"):
        POLICY.for_operator(Identity("device", "dev-1"))
    with pytest.raises(AccessDenied, match=r"^authentication required$"):
        POLICY.for_operator(None)


@given(claims, NAMES)
def test_insecure_mode_trusts_the_path_and_makes_everyone_an_operator(
    claimed: Identity | None, device: str
) -> None:
    insecure = InsecurePolicy()
    assert insecure.for_device(claimed, device) == Identity("device", device)
    assert insecure.for_operator(claimed) == Identity("operator", "insecure")
