"""``device enroll|revoke``, ``operator enroll|revoke`` and the operator master key.

The master key seals every OSCORE secret in the gateway database.  It comes
from ``--master-key FILE``, else ``$EDGECFG_MASTER_KEY``, else (development)
``DB.master-key`` beside the database: 32 random bytes, created ``0600`` by
the first enrolment.  A key file is never created once credentials exist
(they would no longer open), and ``gateway serve`` never creates one.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from edgecfg.cli.arguments import Handler, add_actions, add_command, argument
from edgecfg.cli.database import add_db_option, check_exists, open_store, shown
from edgecfg.core.ids import check_device_id
from edgecfg.crypto import RecordCipher, load_or_create_dev_key
from edgecfg.errors import CommandError, EdgecfgError
from edgecfg.fleet.credentials import check_master_key, check_out, enroll, write_peer_side
from edgecfg.store import is_postgres_url
from edgecfg.store.base import Store

MASTER_KEY_ENV = "EDGECFG_MASTER_KEY"


def master_key_path(args: argparse.Namespace) -> Path:
    """Where the operator master key is: flag, environment, or beside the database."""
    chosen = getattr(args, "master_key", None) or os.environ.get(MASTER_KEY_ENV)
    if chosen:
        return Path(chosen)
    if args.db == ":memory:":
        raise CommandError("an in-memory database needs --master-key FILE")
    if is_postgres_url(args.db):
        raise CommandError(
            f"{shown(args.db)}: a PostgreSQL database needs --master-key FILE "
            f"(or ${MASTER_KEY_ENV}): there is no folder beside it for a key file"
        )
    return Path(f"{args.db}.master-key")


def master_cipher(args: argparse.Namespace, store: Store, *, create: bool) -> RecordCipher:
    """The cipher under the operator master key; creates the key only for a
    database without credentials (``create``)."""
    path = master_key_path(args)
    if not path.exists() and not create and store.count_credentials(active=False) == 0:
        raise CommandError(
            f"{shown(args.db)}: no device or operator is enrolled yet, so OSCORE has nobody "
            f"to serve; enrol one with 'edgecfg --db {shown(args.db)} device enroll ID --out "
            "DIR', "
            "or serve plain CoAP on a test bench with --insecure"
        )
    if not path.exists() and not (create and store.count_credentials(active=False) == 0):
        raise CommandError(
            f"{path}: no operator master key; pass --master-key FILE (or set "
            f"${MASTER_KEY_ENV}) naming the key this database's credentials were sealed with"
        )
    try:
        return RecordCipher(load_or_create_dev_key(path))
    except EdgecfgError as error:
        raise CommandError(str(error)) from None


def _enroll(args: argparse.Namespace, role: str) -> int:
    out = Path(args.out)
    check_exists(args.db)
    if role == "device":
        check_device_id(args.id)
    check_out(out)  # before anything changes in the store
    with open_store(args) as store:
        cipher = master_cipher(args, store, create=True)
        try:
            check_master_key(store, cipher)
        except EdgecfgError as error:
            raise CommandError(str(error)) from None
        unregistered = role == "device" and not store.has_device(args.id)
        if store.active_credential(role, args.id) is not None and args.replace:
            store.revoke(role, args.id, now=time.time())
        enrolment = enroll(store, cipher, role, args.id, now=time.time())
        try:
            credentials = write_peer_side(enrolment, out, gateway=args.gateway)
        except BaseException:
            # The peer never got its half: do not leave a usable credential behind.
            store.revoke(role, args.id, now=time.time())
            raise
    print(
        f"{role} {args.id}: enrolled with key id {enrolment.record.kid.hex()}; "
        f"credentials in {credentials}"
    )
    if unregistered:
        print(
            f"note: device {args.id} is not registered yet; it gets 4.04 until "
            f"'edgecfg --db {shown(args.db)} device add {args.id} --group ...'"
        )
    return 0


def _revoke(args: argparse.Namespace, role: str) -> int:
    with open_store(args) as store:
        record = store.revoke(role, args.id, now=time.time())
    print(
        f"{role} {args.id}: credential {record.kid.hex()} revoked "
        "(a running gateway stops accepting it within its refresh interval)"
    )
    return 0


def cmd_device_enroll(args: argparse.Namespace) -> int:
    """Issue a device's OSCORE credentials."""
    return _enroll(args, "device")


def cmd_device_revoke(args: argparse.Namespace) -> int:
    """End a device's OSCORE credentials."""
    return _revoke(args, "device")


def cmd_operator_enroll(args: argparse.Namespace) -> int:
    """Issue an operator's OSCORE credentials."""
    return _enroll(args, "operator")


def cmd_operator_revoke(args: argparse.Namespace) -> int:
    """End an operator's OSCORE credentials."""
    return _revoke(args, "operator")


def add_master_key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--master-key",
        metavar="FILE",
        help=f"operator master key (default: ${MASTER_KEY_ENV}, else DB.master-key)",
    )


def add_device_actions(device: Any) -> None:
    """``device enroll`` and ``device revoke`` under the existing ``device`` command."""
    _add_credential_actions(device, "device", cmd_device_enroll, cmd_device_revoke)


def register(commands: Any) -> None:
    """The ``operator`` command: enrol and revoke operator identities."""
    operator = add_actions(commands, "operator", "operator identities (OSCORE)")
    _add_credential_actions(operator, "operator", cmd_operator_enroll, cmd_operator_revoke)


def _add_credential_actions(
    parent: Any, role: str, enroll_handler: Handler, revoke_handler: Handler
) -> None:
    article = "an" if role[0] in "aeiou" else "a"
    who = argument("id", metavar="ID" if role == "device" else "NAME")
    add_command(
        parent, "enroll", enroll_handler, f"issue {article} {role}'s OSCORE credentials",
        who,
        argument("--out", required=True, metavar="DIR", help="where the peer's side goes"),
        argument("--gateway", metavar="coap://HOST:PORT",
                 help="limit them to this gateway (default: any, coap://*)"),
        argument("--replace", action="store_true", help="revoke an active credential first"),
        add_master_key_option,
        add_db_option,
    )  # fmt: skip
    add_command(
        parent, "revoke", revoke_handler, f"end {article} {role}'s OSCORE credentials",
        who,
        add_db_option,
    )  # fmt: skip
