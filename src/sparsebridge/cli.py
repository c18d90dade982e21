"""``sparsebridge``: a thin command line over the library.

Exit codes: 0 success, 1 a backend, model or file-system failure, 2 bad usage or bad input
(nothing written), 130 interrupted.

Every subcommand is one row of :data:`COMMANDS` (its module in :mod:`sparsebridge.commands`
holds its options and what it runs); a new command is an import and a row.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from sparsebridge.commands import bench, encode, eval, ingest, search, serve
from sparsebridge.commands.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, Command, fail
from sparsebridge.errors import InputError, SparsebridgeError

COMMANDS: tuple[Command, ...] = (
    encode.COMMAND,
    ingest.COMMAND,
    bench.COMMAND,
    search.COMMAND,
    eval.COMMAND,
    serve.COMMAND,
)
"""Every subcommand, in the order ``--help`` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # the clients log every failed request with a traceback; our errors say what failed
        for name in ("opensearch", "elasticsearch", "elastic_transport", "urllib3"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        result: int = args.run(args)
        return result
    except InputError as e:
        fail(str(e))
        return EXIT_BAD_INPUT
    except (SparsebridgeError, ValueError) as e:
        fail(str(e))
        return EXIT_FAILURE if isinstance(e, SparsebridgeError) else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except OSError as e:  # a file we read or write: full disk, permissions, a missing directory
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}")
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsebridge", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log one INFO line per batch")
    # the global options again, for every subcommand (SUPPRESS: given before it, they are kept)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as above")
    _add_commands(parser, COMMANDS, common, dest="command")
    return parser


def _add_commands(
    parser: argparse.ArgumentParser, commands: Sequence[Command], common: argparse.ArgumentParser, dest: str
) -> None:
    class Subparser(argparse.ArgumentParser):  # every subcommand also accepts the ``common`` options
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs, parents=[common])

    actions = parser.add_subparsers(dest=dest, required=True, parser_class=Subparser)
    for command in commands:
        sub = actions.add_parser(command.name, help=command.help)
        command.arguments(sub)
        if command.subcommands:
            _add_commands(sub, command.subcommands, common, dest=command.name)
        else:
            sub.set_defaults(run=command.run)


if __name__ == "__main__":
    sys.exit(main())
