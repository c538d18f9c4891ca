"""A device's agent process without the standard library's OpenSSL modules
(issue 16: :func:`edgecfg.agent.device_process.refuse_openssl`)."""

from __future__ import annotations

import json
import subprocess
import sys

from edgecfg.wire.cbor import etag

CONFIG = {"net": {"uplink": {"interval_s": 600}}, "log": {"level": "info"}}


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_agent_runs_without_openssl_and_computes_the_same_etags() -> None:
    code = (
        "import json, sys\n"
        "from edgecfg.agent.device_process import refuse_openssl\n"
        "refuse_openssl()\n"
        "import edgecfg.agent.sync, edgecfg.agent.coap, edgecfg.agent.sealed_store\n"
        "from edgecfg.wire.cbor import etag\n"
        f"tag = etag({CONFIG!r}).hex()\n"
        "absent = [n for n in ('ssl', '_ssl', '_hashlib') if sys.modules.get(n) is not None]\n"
        "print(json.dumps({'etag': tag, 'openssl_loaded': absent}))\n"
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer == {"etag": etag(CONFIG).hex(), "openssl_loaded": []}


def test_an_import_of_ssl_fails_once_refused() -> None:
    code = "from edgecfg.agent.device_process import refuse_openssl\nrefuse_openssl()\nimport ssl\n"
    result = run(code)
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr or "ImportError" in result.stderr


def test_refusing_after_ssl_was_loaded_is_an_error_not_a_silent_no_op() -> None:
    code = (
        "import ssl\n"
        "from edgecfg.agent.device_process import AlreadyLoaded, refuse_openssl\n"
        "try:\n"
        "    refuse_openssl()\n"
        "except AlreadyLoaded as error:\n"
        "    print(error)\n"
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert "after ssl" in result.stdout
