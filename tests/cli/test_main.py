"""The edgecfg command line: exit codes, one-line errors, file round trips."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import cast

import pytest

from edgecfg.cli.main import build_parser, main
from edgecfg.core.tree import Value
from edgecfg.wire.cbor import decode, encode, etag
from edgecfg.wire.delta import make_delta
from tests.cli.helpers import run
from tests.paths import FIXTURES, SCHEMA

CONFIGS = FIXTURES / "configs"


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("edgecfg ")


def test_validate_accepts_a_valid_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "validate", str(CONFIGS / "sensor-default.json"), "--schema", str(SCHEMA)
    )
    assert code == 0
    assert "valid against edgecfg-device v1" in out


def test_validate_reports_every_violation_with_its_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(CONFIGS / "invalid.json"), "--schema", str(SCHEMA))
    assert code == 1
    lines = [line for line in out.splitlines() if ": expected " in line]
    assert len(lines) == 12
    assert any("net.uplink.interval_s: expected >= 10, got 5" in line for line in lines)
    assert any(
        "device.id: expected a value (required key), it is missing" in line for line in lines
    )
    assert out.splitlines()[-1] == "12 violation(s) of edgecfg-device v1"


def test_validate_json_output_lists_violations(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "validate", str(CONFIGS / "invalid.json"), "--schema", str(SCHEMA), "--json"
    )
    document = json.loads(out)
    assert code == 1
    assert document["valid"] is False
    assert {"path", "value", "expected"} <= set(document["violations"][0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": ', "invalid JSON at line 1 column 7"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_config_files_give_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    code, out, err = run(capsys, "validate", str(bad), "--schema", str(SCHEMA))
    assert code == 1
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_missing_file_is_named_in_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "encode", "/nonexistent/config.json")
    assert code == 1
    assert err.strip() == "edgecfg encode: error: /nonexistent/config.json: no such file"


def test_encode_then_decode_round_trips(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "c.json"
    source.write_text(json.dumps({"net": {"interval_s": 300, "ratio": 0.5}, "on": True}))
    blob = tmp_path / "c.cbor"
    assert run(capsys, "encode", str(source), "-o", str(blob))[0] == 0
    assert decode(blob.read_bytes()) == {"net": {"interval_s": 300, "ratio": 0.5}, "on": True}
    code, out, _ = run(capsys, "decode", str(blob), "--to", "json")
    assert code == 0
    assert json.loads(out) == {"net": {"interval_s": 300, "ratio": 0.5}, "on": True}
    code, out, _ = run(capsys, "decode", str(blob))
    assert out.strip().startswith("{") and '"interval_s": 300' in out


def test_decode_reads_hex_from_coap_client_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hexfile = tmp_path / "payload.hex"
    hexfile.write_text(encode({"a": [1, 2]}).hex(" ") + "\n")
    code, out, _ = run(capsys, "decode", str(hexfile), "--hex", "--to", "json")
    assert code == 0
    assert json.loads(out) == {"a": [1, 2]}


def test_decode_rejects_trailing_bytes_naming_the_offset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blob = tmp_path / "x.cbor"
    blob.write_bytes(encode({"a": 1}) + b"\x00")
    code, _, err = run(capsys, "decode", str(blob))
    assert code == 1
    assert "1 trailing bytes after the CBOR item at byte offset 4" in err


def test_etag_prints_the_etag_of_the_canonical_encoding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "c.json"
    source.write_text('{"b": 1, "a": 2}')
    code, out, _ = run(capsys, "etag", str(source))
    assert code == 0
    assert out.split()[0] == etag({"a": 2, "b": 1}).hex()


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    old = json.loads((CONFIGS / "sensor-default.json").read_text())
    new = json.loads(json.dumps(old))
    new["net"]["uplink"]["interval_s"] = 1800
    old_file, new_file = tmp_path / "old.json", tmp_path / "new.json"
    old_file.write_text(json.dumps(old))
    new_file.write_text(json.dumps(new))
    return old_file, new_file


def test_validate_reports_a_list_top_as_one_violation_at_the_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "automations.json"
    config.write_text("[1, 2]")
    code, out, _ = run(capsys, "validate", str(config), "--schema", str(SCHEMA))
    assert code == 1
    assert "<root>: expected a map of the keys declared by schema" in out


def test_delta_patch_and_etag_take_a_list_at_the_top_level(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Home Assistant automations.yaml: a list of maps at the top level.
    old: list[Value] = [{"id": str(n), "alias": f"lamp {n}", "mode": "single"} for n in range(20)]
    new: list[Value] = [*old[:5], {"id": "new", "alias": "porch", "mode": "queued"}, *old[5:]]
    old_file, new_file = tmp_path / "old.json", tmp_path / "new.json"
    old_file.write_text(json.dumps(old))
    new_file.write_text(json.dumps(new))
    delta_file, result = tmp_path / "d.bin", tmp_path / "result.json"
    assert run(capsys, "delta", str(old_file), str(new_file), "-o", str(delta_file))[0] == 0
    assert run(capsys, "patch", str(old_file), str(delta_file), "-o", str(result))[0] == 0
    assert json.loads(result.read_text()) == new
    code, out, _ = run(capsys, "etag", str(new_file))
    assert code == 0
    assert etag(new).hex() in out


def test_delta_then_patch_reproduces_the_new_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old_file, new_file = _pair(tmp_path)
    delta_file, result = tmp_path / "d.bin", tmp_path / "result.cbor"
    code, out, _ = run(capsys, "delta", str(old_file), str(new_file), "-o", str(delta_file))
    assert code == 0
    assert "bytes (ops)" in out
    assert len(delta_file.read_bytes()) < 20
    assert run(capsys, "patch", str(old_file), str(delta_file), "-o", str(result))[0] == 0
    assert decode(result.read_bytes()) == json.loads(new_file.read_text())


def test_patch_on_the_wrong_base_names_both_checks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old_file, _new_file = _pair(tmp_path)
    delta_file = tmp_path / "d.bin"
    delta_file.write_bytes(make_delta({"x": 1}, {"x": 2}))
    code, _, err = run(capsys, "patch", str(old_file), str(delta_file), "-o", "-")
    assert code == 1
    assert "delta base mismatch" in err
    assert str(delta_file) in err


def test_patch_with_a_corrupt_delta_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old_file, new_file = _pair(tmp_path)
    delta_file = tmp_path / "d.bin"
    assert run(capsys, "delta", str(old_file), str(new_file), "-o", str(delta_file))[0] == 0
    delta_file.write_bytes(delta_file.read_bytes()[:-2])
    code, _, err = run(capsys, "patch", str(old_file), str(delta_file), "-o", "-")
    assert code == 1
    assert len(err.strip().splitlines()) == 1


def test_delta_with_classes_needs_a_schema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old_file, new_file = _pair(tmp_path)
    code, _, err = run(
        capsys, "delta", str(old_file), str(new_file), "-o", "-", "--classes", "critical"
    )
    assert code == 1
    assert "--classes needs --schema" in err


def test_demo_runs_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "demo finished" in out
    assert "10,000 devices" in out


def _parsers(
    parser: argparse.ArgumentParser, prog: str = "edgecfg"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prog, parser)]
    for action in parser._actions:  # pyright: ignore[reportPrivateUsage]
        if isinstance(action, argparse._SubParsersAction):  # pyright: ignore[reportPrivateUsage]
            choices = cast(dict[str, argparse.ArgumentParser], action.choices)
            for name, child in choices.items():
                found.extend(_parsers(child, f"{prog} {name}"))
    return found


def test_every_option_has_help_that_states_its_default() -> None:
    missing: list[str] = []
    for prog, parser in _parsers(build_parser()):
        for action in parser._actions:  # pyright: ignore[reportPrivateUsage]
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            name = f"{prog} {action.option_strings[-1]}"
            if not action.help:
                missing.append(f"{name}: no help")
            elif action.default not in (None, False, argparse.SUPPRESS) and (
                "default" not in action.help
            ):
                missing.append(f"{name}: help does not state the default {action.default!r}")
    assert missing == []


def test_demo_help_describes_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "OSCORE" in out
    assert "--keep" in out
    assert "keep the demo's folder" in out
