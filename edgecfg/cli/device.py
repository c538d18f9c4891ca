"""``edgecfg-agent``: the device's own entry point (issue 16).

``edgecfg-agent run ...`` (or ``python -m edgecfg.cli.device run ...``)
takes the arguments of ``edgecfg agent run`` and does the same, in a
process that loads what a device needs and nothing else: not the operator
CLI's parser of every command (which imports the gateway, the fleet, the
stores, MQTT and OSCORE's server side: 12 MB of RSS), and not the standard
library's OpenSSL modules (:func:`~edgecfg.agent.device_process.refuse_openssl`,
4.4 MB).  ``tests/agent/test_imports.py`` keeps its import set small.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from edgecfg.agent.device_process import refuse_openssl

PROG = "edgecfg-agent"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``run``'s arguments, run it; edgecfg errors become one line on stderr."""
    refuse_openssl()  # before anything imports asyncio or hashlib
    import argparse

    from edgecfg.cli.agent_run import register_agent_run
    from edgecfg.cli.arguments import dispatch

    parser = argparse.ArgumentParser(prog=PROG, description="the device agent")
    register_agent_run(parser.add_subparsers(dest="action", required=True, metavar="ACTION"))
    args = parser.parse_args(argv)
    return dispatch(args, f"{PROG} {args.action}")


if __name__ == "__main__":
    sys.exit(main())
