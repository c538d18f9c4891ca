"""The gateway database on the command line.

``--db FILE`` (a SQLite file) or ``--db postgresql://...`` (PostgreSQL) is
accepted before the subcommand (``edgecfg --db F group set``)
and after it (``edgecfg group set --db F``, as scripts write ``gateway serve
--db F``); after wins when both are given.  Without it: ``$EDGECFG_DB``, else
``./edgecfg.db``.

Only explicit commands create a database: ``edgecfg --db F init``, or a
writing command given ``--create``.  Every other command refuses a missing
file, so a typo in ``--db`` never serves or edits an empty fleet.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecfg import store as stores
from edgecfg.cli.arguments import add_command
from edgecfg.errors import CommandError
from edgecfg.fleet.fleet import Fleet
from edgecfg.store import SQLiteStore, is_postgres_url

if TYPE_CHECKING:
    from edgecfg.store import PostgresStore

DEFAULT_DB = "edgecfg.db"
MEMORY = ":memory:"


def default_db() -> str:
    """``$EDGECFG_DB`` or ``./edgecfg.db``."""
    return os.environ.get("EDGECFG_DB", DEFAULT_DB)


def add_db_option(parser: argparse.ArgumentParser, *, create: bool = False) -> None:
    """``--db`` after the subcommand (it overrides one given before it) and,
    for commands that may start a fleet, ``--create``."""
    parser.add_argument(
        "--db",
        default=argparse.SUPPRESS,  # keeps the value given before the subcommand
        metavar="FILE",
        help=f"gateway database (default: $EDGECFG_DB, else ./{DEFAULT_DB}); "
        "may also come before the command",
    )
    if create:
        parser.add_argument(
            "--create",
            action="store_true",
            help="create the database when it does not exist (default: refuse)",
        )


def check_exists(db: str, *, create: bool = False) -> None:
    """Refuse a database that does not exist yet, unless creating one."""
    if create or db == MEMORY:
        return
    if is_postgres_url(db):
        if not stores.is_initialised(db):
            raise CommandError(
                f"{stores.redact(db)}: no edgecfg database there yet; create it with "
                f"'edgecfg --db {stores.redact(db)} init' (or pass --create to this command)"
            )
        return
    if Path(db).is_file():
        return
    if Path(db).exists():
        raise CommandError(f"{db}: not a database file")
    raise CommandError(
        f"{db}: no such database; create it with 'edgecfg --db {db} init' "
        "(or pass --create to this command)"
    )


def connect(db: str) -> SQLiteStore | PostgresStore:
    """The store ``db`` names, opened (created or migrated as needed)."""
    return stores.PostgresStore(db) if is_postgres_url(db) else SQLiteStore(db)


def shown(db: str) -> str:
    """``db`` as messages name it (a URL without its password)."""
    return stores.redact(db) if is_postgres_url(db) else db


@contextmanager
def open_store(args: argparse.Namespace) -> Generator[SQLiteStore | PostgresStore]:
    """The store in ``args.db``; a missing one is created only with ``--create``."""
    check_exists(args.db, create=bool(getattr(args, "create", False)))
    with connect(args.db) as store:
        yield store


@contextmanager
def open_fleet(args: argparse.Namespace) -> Generator[Fleet]:
    """The fleet in ``args.db`` (see :func:`open_store`)."""
    with open_store(args) as store:
        yield Fleet(store)


def cmd_init(args: argparse.Namespace) -> int:
    """Create an empty gateway database (nothing to do when it exists)."""
    name = shown(args.db)
    if is_postgres_url(args.db):
        existed = stores.is_initialised(args.db)
    else:
        if Path(args.db).exists() and not Path(args.db).is_file():
            raise CommandError(f"{args.db}: not a database file")
        existed = args.db != MEMORY and Path(args.db).is_file()
    with connect(args.db):
        pass
    if existed:
        print(f"{name}: database exists; nothing to do")
    else:
        print(
            f"{name}: new database; next: 'edgecfg --db {name} schema load FILE' "
            "or 'group set' and 'device add'"
        )
    return 0


def register(commands: Any) -> None:
    """The ``init`` command."""
    add_db_option(add_command(commands, "init", cmd_init, "create an empty gateway database"))
