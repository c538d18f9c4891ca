"""The gateway database on the command line (edgecfg/cli/database.py): where
``--db`` may stand, the default, and the refusal of a database that is not
there.  PostgreSQL URLs end to end: tests/cli/test_postgres_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecfg.cli.database import MEMORY, check_exists, default_db, shown
from edgecfg.cli.main import build_parser
from edgecfg.errors import CommandError


@pytest.mark.parametrize(
    ("argv", "db"),
    [
        (["--db", "a.db", "group", "show", "global"], "a.db"),
        (["group", "show", "global", "--db", "b.db"], "b.db"),
        (["--db", "a.db", "group", "show", "global", "--db", "b.db"], "b.db"),  # after wins
    ],
)
def test_db_may_come_before_or_after_the_command(argv: list[str], db: str) -> None:
    assert build_parser().parse_args(argv).db == db


def test_the_default_is_edgecfg_db_from_the_environment_else_the_current_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EDGECFG_DB", raising=False)
    assert default_db() == "edgecfg.db"
    monkeypatch.setenv("EDGECFG_DB", "/srv/fleet.db")
    assert default_db() == "/srv/fleet.db"
    assert build_parser().parse_args(["group", "show", "global"]).db == "/srv/fleet.db"


def test_a_missing_database_is_refused_unless_created(tmp_path: Path) -> None:
    typo = str(tmp_path / "fleet.bd")
    with pytest.raises(CommandError) as raised:
        check_exists(typo)
    assert str(raised.value) == (
        f"{typo}: no such database; create it with 'edgecfg --db {typo} init' "
        "(or pass --create to this command)"
    )
    check_exists(typo, create=True)  # no error: the command will create it
    check_exists(MEMORY)
    assert not Path(typo).exists()  # checking creates nothing


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"not a database file$"):
        check_exists(str(tmp_path))


def test_messages_never_show_a_postgresql_password() -> None:
    url = "postgresql://edge:s3cret@db.example:5432/fleet"
    assert shown(url) == "postgresql://edge:***@db.example:5432/fleet"
    assert shown("fleet.db") == "fleet.db"
