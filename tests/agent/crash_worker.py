# pyright: strict
"""The kill -9 target of ``test_sealed_store_crash.py``: commits configurations until killed.

Usage: ``python crash_worker.py DIRECTORY KEY_HEX SEED``

A fork server: the interpreter and edgecfg start once, then each ``go N``
line on stdin forks a *committer* that opens the store in DIRECTORY and
commits configurations (marking some good) until the test SIGKILLs it.
Starting a fresh interpreter per kill would cost ~0.2 s, too slow for
10,000 kills; the committer is still a separate process with its own file
descriptors, killed by a real SIGKILL.  ``quit`` or end of input stops
the server.

Lines on stdout, each written with one write(2) to the pipe, so they
never interleave and a killed committer never leaves half a line::

    P <pid>           server: forked committer <pid> for this iteration
    L <gen> <etag>    committer: loaded; current generation ("L - -" for none)
    W <etag>          committer: about to commit this configuration
    C <gen> <etag>    committer: commit returned
    M <gen>           committer: about to mark generation <gen> good
    G <gen>           committer: mark_good returned
    E <message>       committer: unexpected exception; it then waits to be killed
    D <pid> <status>  server: committer reaped, raw wait status

A committer stops by itself after 30 s, so nothing outlives a test that
died without killing it.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback

from edgecfg.agent.sealed_store import DeviceStore
from edgecfg.wire.cbor import Encoded

LIFETIME_S = 30.0
GOOD_RATE = 0.3


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def commit_until_killed(directory: str, key: bytes, seed: str, iteration: int) -> None:
    rng = random.Random(f"{seed}/{iteration}")
    store = DeviceStore(directory, key=key)
    current = store.load().current
    say(f"L {current.number} {current.etag.hex()}" if current else "L - -")
    deadline = time.monotonic() + LIFETIME_S
    serial = 0
    while time.monotonic() < deadline:
        config = Encoded.of(
            {
                "iteration": iteration,
                "serial": serial,
                "pad": rng.randbytes(rng.randrange(8192)),  # tear points all over the record
            }
        )
        serial += 1
        say(f"W {config.etag.hex()}")
        generation = store.commit(config)
        say(f"C {generation.number} {generation.etag.hex()}")
        if rng.random() < GOOD_RATE:
            say(f"M {generation.number}")
            store.mark_good(generation.number)
            say(f"G {generation.number}")


def committer(directory: str, key: bytes, seed: str, iteration: int) -> None:
    try:
        commit_until_killed(directory, key, seed, iteration)
    except Exception:
        say("E " + traceback.format_exc().replace("\n", " | "))
        time.sleep(LIFETIME_S)  # an error must not look like a kill: wait for the SIGKILL
    finally:
        os._exit(0)


def main(argv: list[str]) -> int:
    directory, key_hex, seed = argv
    key = bytes.fromhex(key_hex)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        pid = os.fork()
        if pid == 0:
            committer(directory, key, seed, int(command[1]))
        say(f"P {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"D {pid} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
