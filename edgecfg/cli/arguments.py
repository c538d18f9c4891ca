"""How the ``edgecfg`` commands declare their arguments: each command is one
:func:`add_command` call listing what it takes, as :data:`Declare` values
(:func:`argument`, :func:`number` whose help ends with its default,
:data:`JSON`, or a function of the parser such as ``add_db_option``); a
family of commands of one form, the benchmarks, is a table
(:func:`add_commands`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from edgecfg.errors import EdgecfgError

Handler = Callable[[argparse.Namespace], int]
Declare = Callable[[argparse.ArgumentParser], object]
"""One option (or positional argument), added to the parser it is given."""


def add_command(
    commands: Any, name: str, handler: Handler, text: str, *declared: Declare, **options: Any
) -> argparse.ArgumentParser:
    """``name`` under ``commands`` (a subparsers action), run by ``handler``,
    ``text`` its help, taking what ``declared`` declares; ``options`` go to
    ``add_parser`` (``description``)."""
    parser = cast(argparse.ArgumentParser, commands.add_parser(name, help=text, **options))
    parser.set_defaults(handler=handler)
    for declare in declared:
        declare(parser)
    return parser


def add_actions(commands: Any, name: str, text: str) -> Any:
    """``name`` under ``commands``, whose next word names an action
    (``edgecfg group set``): the subparsers action to add those to."""
    parser = cast(argparse.ArgumentParser, commands.add_parser(name, help=text))
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def add_commands(
    commands: Any,
    table: Iterable[tuple[str, Handler, str]],
    options: Iterable[tuple[str, Declare]],
) -> None:
    """A command for each ``(name, handler, help)`` of ``table``, then each
    ``(name, declare)`` of ``options`` declared on its command, in order."""
    parsers = {name: add_command(commands, name, handler, text) for name, handler, text in table}
    for name, declare in options:
        declare(parsers[name])


def argument(*names: str, **options: Any) -> Declare:
    """``parser.add_argument(*names, **options)``, to be declared later."""
    return lambda parser: parser.add_argument(*names, **options)


def number(
    flag: str,
    default: float,
    text: str,
    *,
    metavar: str | None = None,
    also: str = "",
    then: str = "",
) -> Declare:
    """``flag`` takes a number of ``default``'s type; its help is ``text``,
    then the default in parentheses (``also`` beside it), then ``then``."""
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return argument(
        flag,
        type=type(default),
        default=default,
        metavar=metavar,
        help=f"{text} (default: {shown}{also}){then}",
    )


JSON: Final[Declare] = argument("--json", action="store_true", help="machine-readable output")


def dispatch(args: argparse.Namespace, name: str) -> int:
    """Run the command ``args`` were parsed for (its ``handler``); turn
    edgecfg's errors into one line on stderr, ``name: error: ...``."""
    handler = cast(Handler, args.handler)
    try:
        return handler(args)
    except EdgecfgError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except OSError as error:
        if error.filename is None:
            raise
        # a file the command may not open or lock (a read-only folder, a lock
        # path that is a folder): one line, as for edgecfg's own errors
        print(f"{name}: error: {error.filename}: {error.strerror}", file=sys.stderr)
        return 1
