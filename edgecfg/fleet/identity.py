"""Who is asking: one identity abstraction every resource authorizes through.

With OSCORE (the security issue) the identity comes from the security
context.  Until then the gateway runs only in an explicit insecure mode,
where a device is whoever names itself in the path and anyone may use the
operator resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from edgecfg.errors import PeerError

Role = Literal["device", "operator", "anonymous"]


class AccessDenied(PeerError):
    """Identity missing (4.01) or not allowed (4.03); ``unauthenticated`` says which."""

    def __init__(self, message: str, *, unauthenticated: bool = False) -> None:
        super().__init__(message)
        self.unauthenticated = unauthenticated


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated peer of a request."""

    role: Role
    name: str = ""


class IdentityPolicy(Protocol):
    """Decides who a request comes from and what it may touch."""

    def for_device(self, claimed: Identity | None, device: str) -> Identity:
        """The identity allowed to act for ``device``, or raise :class:`AccessDenied`."""
        ...

    def for_operator(self, claimed: Identity | None) -> Identity:
        """The operator identity behind the request, or raise :class:`AccessDenied`."""
        ...


class InsecurePolicy:
    """``--insecure``: trusts the device id in the path; everyone is an operator."""

    def for_device(self, claimed: Identity | None, device: str) -> Identity:
        del claimed
        return Identity("device", device)

    def for_operator(self, claimed: Identity | None) -> Identity:
        del claimed
        return Identity("operator", "insecure")


class AuthenticatedPolicy:
    """Devices only act for themselves; operator resources need an operator."""

    def for_device(self, claimed: Identity | None, device: str) -> Identity:
        if claimed is None or claimed.role == "anonymous":
            raise AccessDenied("authentication required", unauthenticated=True)
        if claimed.role == "operator":
            return claimed
        if claimed.name != device:
            raise AccessDenied(f"{claimed.name} may not act for device {device}")
        return claimed

    def for_operator(self, claimed: Identity | None) -> Identity:
        if claimed is None or claimed.role == "anonymous":
            raise AccessDenied("authentication required", unauthenticated=True)
        if claimed.role != "operator":
            raise AccessDenied(f"{claimed.role} {claimed.name} is not an operator")
        return claimed
