"""Synthetic configurations shaped like the real ones in the corpus, and edits to them.

Three shapes, as in ``../shared/corpus``: *flat* INI-like sections
(Klipper ``{section: {option: value}}``, OpenWrt UCI with ``.type`` and lists),
*nested* YAML trees (ESPHome / Zigbee2MQTT: maps 3-6 deep, arrays of maps,
``!secret`` tags) and a *mixed* blend.  Leaves are ints, floats, bools, pins
(``PA1``, ``!ar38``), short text, lists of scalars and long multi-line strings
(gcode macros, lambdas, templates of 200-2000 characters).

Everything is pure: randomness comes only from ``random.Random(seed)`` built
from an explicit seed, so one seed names one tree everywhere.  Leaves are
counted as :func:`edgecfg.core.tree.walk_leaves` counts them (an array is one
leaf, an empty map is one leaf); :func:`generate_config` hits the count exactly.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Final, Literal, cast

from edgecfg.core.schema import KeySpec, Schema, TypeName
from edgecfg.core.tree import Tree, UnsetType, Value, set_value, values_equal, walk_leaves
from edgecfg.errors import UsageError

Shape = Literal["flat", "nested", "mixed"]
Loc = tuple[str | int, ...]  # a step into a map (key) or an array (index)

_SECTIONS: Final = tuple(
    "printer|mcu|stepper_x|stepper_y|stepper_z|extruder|heater_bed|fan|probe|bed_mesh|safe_z_home|"
    "idle_timeout|virtual_sdcard|tmc2209 stepper_x|tmc2209 extruder|heater_fan hotend_fan|display|"
    "temperature_sensor mcu_temp|output_pin beeper|neopixel lights|filament_switch_sensor runout|"
    "input_shaper|firmware_retraction".split("|")
)
_UCI_TYPES: Final = tuple("interface zone rule forwarding host redirect dnsmasq globals".split())
_MACROS: Final = tuple("PRINT_START PRINT_END PAUSE RESUME CANCEL_PRINT PARK HEAT_SOAK".split())
_NESTED: Final = tuple(
    "wifi ap api ota logger mqtt advanced availability device_options serial esphome substitutions "
    "pin count_mode total frontend discovery climate effects network ble experimental homeassistant "
    "options state".split()
)
_OPTIONS: Final = {  # option names by the kind of value they hold
    "int": "position_max position_endstop homing_speed microsteps max_temp min_temp max_accel "
    "max_velocity port channel baud accuracy_decimals timeout mtu metric lease_time retries",
    "float": "rotation_distance step_distance nozzle_diameter filament_diameter pid_kp pid_ki "
    "pid_kd pressure_advance smooth_time run_current hold_current multiply offset z_offset",
    "bool": "enabled inverted hidden fast_connect retain interpolate stealthchop pullup disabled",
    "pin": "step_pin dir_pin enable_pin endstop_pin heater_pin sensor_pin uart_pin cs_pin pin",
    "word": "kinematics sensor_type serial control mode platform name friendly_name base_topic "
    "server proto ifname ssid password target src dest log_level board",
    "list": "log_output bands servers dns positions points aliases ports",
    "long": "gcode lambda template script value_template on_boot",
    "maps": "filters sensor binary_sensor on_press then networks output",
    "null": "logger comment override",
}
_KIND_WEIGHTS: Final = {"int": 24, "float": 18, "bool": 11, "pin": 10, "word": 20, "list": 6,
                        "long": 5, "maps": 4, "null": 2}  # fmt: skip
_WORDS: Final = tuple(
    "cartesian|corexy|pid|watermark|/dev/ttyACM0|!secret wifi_ssid|!secret api_password|static|"
    "${esphome_name} Power Meter|mqtt://10.0.0.6|dhcp|lan|wan|ACCEPT|REJECT|EPCOS 100K B57560G104F|"
    "ATC Semitec 104GT-2|gpio|template|d1_mini|esp32dev|warn|info|zigbee2mqtt|tmc2209".split("|")
)
# Long strings are built from coherent snippets, as real macros, lambdas and templates are.
_GCODE: Final = (
    "G28", "G90\nM83", "G1 X{a} Y{b} F{c}00", "G1 Z{d} F600", "M104 S{e}\nM190 S{d}",
    "SET_PIN PIN=caselight VALUE={d}", "{{% set bed = params.BED|default({d})|float %}}",
    "{{% if printer.toolhead.homed_axes != 'xyz' %}}\n  G28\n{{% endif %}}", "BED_MESH_CALIBRATE",
    'RESPOND MSG="Heating to {e}C"', "TEMPERATURE_WAIT SENSOR=extruder MINIMUM={e}",
    "SAVE_GCODE_STATE NAME=park_{a}\nG1 X{b} Y{c} F6000\nRESTORE_GCODE_STATE NAME=park_{a}",
)  # fmt: skip
_LAMBDA: Final = (
    "if (id(led_enabled).state) {{\n  return x * 0.0{a};\n}} else {{\n  return {{}};\n}}",
    "auto v = id(sensor_{a}).state;", 'ESP_LOGD("main", "value %.2f", v * {b});',
    "id(counter_{b}) += {c};", "if (v > {e}) {{\n  id(relay_{c}).turn_on();\n}}",
    "for (int i = 0; i < {c}; i++) {{\n  sum += id(buf)[i];\n}}", "return sum / {d}.0;",
)  # fmt: skip
_TEMPLATE: Final = (
    "{{{{ value_json.temperature | round({c}) }}}}",
    "{{% if value_json.state == 'ON' %}}on{{% else %}}off{{% endif %}}",
    "{{{{ (value_json.battery | float * {a}) | int }}}}",
    "{{% for d in devices[{c}:] %}}\n  {{{{ d.friendly_name }}}}: {{{{ d.lqi | default({b}) }}}}"
    "\n{{% endfor %}}",
)  # fmt: skip
_PIN: Final = re.compile(r"[!^~]*(P[A-E]\d+|ar\d+|gpio\d+|analog\d+)")


def leaf_count(tree: Mapping[str, Value]) -> int:
    """Number of leaves as :func:`~edgecfg.core.tree.walk_leaves` yields them."""
    return sum(1 for _ in walk_leaves(tree))


class _Maker:
    """Builds values from one random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pin(self) -> str:
        r = self.rng
        port = f"P{r.choice('ABCDE')}{r.randint(0, 15)}"
        body = r.choice((port, port, f"ar{r.randint(2, 69)}", f"gpio{r.randint(0, 27)}"))
        return r.choice(("", "", "", "!", "^", "^!", "~")) + body

    def long_text(self, key: str) -> str:
        r = self.rng
        lines = _LAMBDA if "lambda" in key or "boot" in key else _GCODE
        lines = _TEMPLATE if "template" in key else lines
        target = r.choice(
            (r.randint(200, 800), r.randint(200, 800), r.randint(800, 2000), r.randint(60, 200))
        )
        out: list[str] = []
        size = 0
        while size < target:
            nums = {k: r.randint(1, 9) * 10 ** r.randint(0, 2) for k in "abcde"}
            line = r.choice(lines).format(**nums)
            out.append(line)
            size += len(line) + 1
        return "\n".join(out)

    def scalar(self, kind: str, key: str) -> Value:
        r = self.rng
        if kind == "int":
            return r.choice(
                (r.randint(0, 10), r.randint(0, 300), r.randint(1024, 65535), -r.randint(1, 120))
            )
        if kind == "float":
            return round(r.uniform(0.001, r.choice((1.0, 10.0, 500.0))), r.randint(1, 4))
        if kind == "bool":
            return r.random() < 0.5
        if kind == "pin":
            return self.pin()
        if kind == "long":
            return self.long_text(key)
        if kind == "list":
            if r.random() < 0.5:
                return [r.randint(1, 40) for _ in range(r.randint(0, 6))]
            return [r.choice(_WORDS) for _ in range(r.randint(1, 4))]
        if kind == "maps":
            return [self.element() for _ in range(r.randint(1, 4))]
        if kind == "null":
            return None
        word = r.choice(_WORDS)
        return word if r.random() < 0.7 else f"{word}_{r.randint(0, 99)}"

    def element(self) -> Value:
        """One map of an ESPHome-style array (``sensor:``, ``filters:``)."""
        r = self.rng
        node: Tree = {"platform": r.choice(("gpio", "template", "pulse_counter", "dht", "adc"))}
        if r.random() < 0.7:
            node["name"] = f"${{esphome_name}} {r.choice(_MACROS).lower()}"
        if r.random() < 0.5:
            node["pin"] = {"number": self.pin(), "inverted": r.random() < 0.5}
        if r.random() < 0.4:
            node["filters"] = [
                {"multiply": round(r.uniform(0.01, 2), 3)},
                {"lambda": self.long_text("lambda")},
            ]
        if r.random() < 0.5:
            node["update_interval"] = f"{r.choice((10, 30, 60))}s"
        return node

    def options(self, size: int, *, arrays: bool, node: Tree | None = None) -> Tree:
        """``node`` (or a new map) with ``size`` more options, each one leaf."""
        kinds = [k for k in _KIND_WEIGHTS if arrays or k != "maps"]
        weights = [_KIND_WEIGHTS[k] for k in kinds]
        node = {} if node is None else node
        for kind in self.rng.choices(kinds, weights, k=size):
            key = fresh(node, self.rng.choice(_OPTIONS[kind].split()))
            node[key] = self.scalar(kind, key)
        return node

    def flat_section(self, taken: Mapping[str, Value], size: int) -> tuple[str, Tree]:
        r = self.rng
        style = r.random()
        if size == 1 and style < 0.3:
            return fresh(taken, f"include common/{r.choice(_SECTIONS).replace(' ', '/')}.cfg"), {}
        if style < 0.2:
            kind = r.choice(_UCI_TYPES)
            node = self.options(size - 1, arrays=False, node={".type": kind})
            return fresh(taken, f"@{kind}[{r.randint(0, 3)}]"), node
        if style < 0.35 and size >= 2:
            node = self.options(size - 1, arrays=False, node={"gcode": self.long_text("gcode")})
            return fresh(taken, f"gcode_macro {r.choice(_MACROS)}"), node
        return fresh(taken, r.choice(_SECTIONS)), self.options(size, arrays=False)

    def nested(self, size: int, depth: int) -> Tree:
        """A map with exactly ``size`` leaves and maps up to ``depth`` levels below it."""
        if depth <= 0 or size < 3:
            return self.options(size, arrays=True)
        r = self.rng
        subs = r.randint(1, min(3, size // 2))
        own = r.randint(1, max(1, (size - subs) // 3))
        node = self.options(own, arrays=True)
        for index, part in enumerate(split(r, size - own, subs)):
            key = fresh(
                node,
                r.choice(_NESTED) if r.random() < 0.8 else f"0x00158d00{r.getrandbits(32):08x}",
            )
            node[key] = self.nested(part, depth - 1 if index == 0 else r.randint(0, depth - 1))
        return node

    def section(self, taken: Mapping[str, Value], size: int, flat: bool) -> tuple[str, Value]:
        if flat:
            return self.flat_section(taken, size)
        if size == 1 and self.rng.random() < 0.5:  # Zigbee2MQTT top-level `permit_join: false`
            kind = self.rng.choice(("bool", "word", "int", "null"))
            key = fresh(taken, self.rng.choice(_OPTIONS[kind].split()))
            return key, self.scalar(kind, key)
        return fresh(taken, self.rng.choice(_NESTED)), self.nested(size, self.rng.randint(1, 4))


def fresh(taken: Mapping[str, object], base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... whichever is not yet a key of ``taken``."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def split(rng: random.Random, total: int, parts: int) -> list[int]:
    """``total`` cut into ``parts`` positive pieces, largest first."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    edges = [0, *cuts, total]
    return sorted((b - a for a, b in zip(edges, edges[1:], strict=False)), reverse=True)


def generate_config(seed: int, *, leaves: int, shape: Shape = "mixed") -> Tree:
    """A configuration tree with exactly ``leaves`` leaves, shaped like the corpus."""
    if leaves < 1:
        raise UsageError(f"leaves must be >= 1, got {leaves}")
    rng = random.Random(seed)
    maker = _Maker(rng)
    tree: Tree = {}
    remaining = leaves
    while remaining > 0:
        flat = shape == "flat" or (shape == "mixed" and rng.random() < 0.5)
        size = min(remaining, rng.randint(3, 14) if flat else rng.randint(8, 60))
        name, value = maker.section(tree, size, flat)
        tree[name] = value
        remaining -= size
    return tree


# ---------------------------------------------------------------- edits


def _nodes(node: Value, loc: Loc = ()) -> Iterator[tuple[Loc, Value]]:
    yield loc, node
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _nodes(child, (*loc, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _nodes(child, (*loc, index))


def _update(node: Value, loc: Loc, change: Callable[[Value], Value]) -> Value:
    """A copy of ``node`` with ``change`` applied at ``loc``; only the way there is copied."""
    if not loc:
        return change(node)
    step, rest = loc[0], loc[1:]
    if isinstance(node, dict) and isinstance(step, str):
        out = dict(node)
        out[step] = _update(node[step], rest, change)
        return out
    if isinstance(node, list) and isinstance(step, int):
        items = list(node)
        items[step] = _update(node[step], rest, change)
        return items
    raise UsageError(f"location {loc!r} does not fit the tree")  # pragma: no cover


def _edit_text(rng: random.Random, text: str) -> str:
    numbers = list(re.finditer(r"\d+", text))
    lines = text.split("\n")
    how = rng.random()
    if numbers and how < 0.4:  # the most common real edit: a number inside a macro
        m = rng.choice(numbers)
        new = str(int(m.group()) + rng.choice((-5, -1, 1, 2, 10, 25)))
        out = text[: m.start()] + new.lstrip("-") + text[m.end() :]
    elif how < 0.6:
        at = rng.randint(0, len(lines))
        out = "\n".join(
            [*lines[:at], rng.choice(_GCODE).format(a=1, b=2, c=3, d=4, e=5), *lines[at:]]
        )
    elif how < 0.75 and len(lines) > 1:
        out = "\n".join(lines[: (at := rng.randrange(len(lines)))] + lines[at + 1 :])
    else:
        at = rng.randrange(len(text))
        out = text[:at] + rng.choice(("_", "1", "x", " ", "")) + text[at + rng.randint(1, 3) :]
    return out if out != text else text + " "


def _edit_scalar(rng: random.Random, value: Value) -> Value:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice((-10, -5, -2, -1, 1, 2, 5, 10, 100))
    if isinstance(value, float):
        new = round(value * rng.choice((0.5, 0.8, 0.9, 1.1, 1.25, 2.0)) + rng.choice((0, 0.05)), 4)
        return new if not values_equal(new, value) else value + 1.0
    if isinstance(value, str):
        if len(value) >= 40:
            return _edit_text(rng, value)
        new = _Maker(rng).pin() if _PIN.fullmatch(value) else rng.choice(_WORDS)
        return new if new != value else value + "_2"
    return rng.randint(0, 100)


def _insert(rng: random.Random, node: Value) -> Value:
    items = cast(list[Value], node)
    like = rng.choice(items) if items else 0
    new = _Maker(rng).element() if isinstance(like, dict) else _edit_scalar(rng, like)
    at = rng.randint(0, len(items))
    return [*items[:at], new, *items[at:]]


def _delete(rng: random.Random, node: Value) -> Value:
    items = cast(list[Value], node)  # only non-empty lists are chosen
    at = rng.randrange(len(items))
    return items[:at] + items[at + 1 :]


def _add_option(rng: random.Random, node: Value) -> Value:
    out = dict(cast(Tree, node))
    kind = rng.choice(("int", "float", "bool", "word", "pin"))
    name = fresh(out, rng.choice(_OPTIONS[kind].split()))
    out[name] = _Maker(rng).scalar(kind, name)
    return out


def _add_section(rng: random.Random, node: Value) -> Value:
    out = dict(cast(Tree, node))
    name, value = _Maker(rng).section(out, rng.randint(1, 8), rng.random() < 0.6)
    out[name] = value
    return out


def _drop_key(rng: random.Random, node: Tree, key: str) -> Value:
    return {k: v for k, v in node.items() if k != key}


def _rename_key(rng: random.Random, node: Tree, key: str) -> Value:
    if " " in key:  # `gcode_macro PRINT_START` -> `gcode_macro START_PRINT`, `tmc2209` -> `tmc5160`
        head, _, tail = key.partition(" ")
        options = (
            f"{head} {tail}_{rng.randint(1, 9)}",
            f"tmc5160 {tail}",
            f"{head} {tail.lower()}",
        )
    else:
        options = (f"{key}{rng.randint(1, 3)}", key.replace("_", "-"), f"{key}_old", f"{key} main")
    new = fresh(node, rng.choice(options))
    return {(new if k == key else k): v for k, v in node.items()}  # keep the section order


_NodeEdit = Callable[[random.Random, Value], Value]
_EntryEdit = Callable[[random.Random, Tree, str], Value]


def _apply_edit(rng: random.Random, tree: Tree) -> Tree:
    nodes = list(_nodes(tree))
    entries = [(loc, v) for loc, v in nodes if loc and isinstance(loc[-1], str)]
    at_node: dict[str, tuple[int, list[Loc], _NodeEdit]] = {
        "scalar": (40, [loc for loc, v in nodes if not isinstance(v, dict | list) and v is not None],
                   _edit_scalar),
        "text": (15, [loc for loc, v in nodes if isinstance(v, str) and len(v) >= 40], _edit_scalar),
        "insert": (7, [loc for loc, v in nodes if isinstance(v, list)], _insert),
        "delete": (5, [loc for loc, v in nodes if isinstance(v, list) and v], _delete),
        "add-option": (12, [loc for loc, v in nodes if loc and isinstance(v, dict)], _add_option),
        "add-section": (5, [()], _add_section),
    }  # fmt: skip
    at_entry: dict[str, tuple[int, list[Loc], _EntryEdit]] = {
        "remove": (8, [loc for loc, _ in entries if len(loc) >= 2], _drop_key),
        "rename": (4, [loc for loc, v in entries if isinstance(v, dict)], _rename_key),
    }
    weights = {k: (w, locs) for k, (w, locs, _) in [*at_node.items(), *at_entry.items()] if locs}
    kind = rng.choices(list(weights), [w for w, _ in weights.values()])[0]
    loc = rng.choice(weights[kind][1])
    if kind in at_entry:
        entry_edit, key = at_entry[kind][2], cast(str, loc[-1])
        changed = _update(tree, loc[:-1], lambda v: entry_edit(rng, cast(Tree, v), key))
    else:
        node_edit = at_node[kind][2]
        changed = _update(tree, loc, lambda v: node_edit(rng, v))
    return cast(Tree, changed)


def mutate_config(tree: Tree, seed: int, *, edits: int = 1) -> Tree:
    """A new tree with ``edits`` realistic edits applied; ``tree`` is left untouched.

    The edits are those seen in the corpus: change a number or a word, flip a
    bool, edit a few characters or a line of a long string, insert or delete a
    list element, add or remove an option, rename a section keeping its
    content, add a section.  With ``edits > 0`` the result always differs.
    """
    if edits < 0:
        raise UsageError(f"edits must be >= 0, got {edits}")
    rng = random.Random(seed)
    out = tree
    for _ in range(edits):
        out = _apply_edit(rng, out)
    while edits and values_equal(out, tree):  # later edits undid earlier ones
        out = _apply_edit(rng, out)
    return out


def generate_history(
    seed: int, *, leaves: int, versions: int, shape: Shape = "mixed"
) -> list[Tree]:
    """``versions`` consecutive versions of one configuration, oldest first.

    About one step in five leaves the tree equal (a comment-only change in the
    corpus; an equal copy, not the same object); the others apply one edit,
    sometimes a handful.
    """
    if versions < 1:
        raise UsageError(f"versions must be >= 1, got {versions}")
    rng = random.Random(seed)
    tree = generate_config(rng.getrandbits(64), leaves=leaves, shape=shape)
    history = [tree]
    for _ in range(versions - 1):
        if rng.random() < 0.2:
            tree = copy.deepcopy(tree)
        else:
            edits = 1 if rng.random() < 0.6 else rng.randint(2, 6)
            tree = mutate_config(tree, rng.getrandbits(64), edits=edits)
        history.append(tree)
    return history


# ---------------------------------------------------------------- schema-driven


def config_for_schema(schema: Schema, seed: int, *, hardware: str | None = None) -> Tree:
    """A full configuration that ``schema.validate`` accepts: defaults and random valid values.

    With ``hardware`` only the keys that apply to that hardware model are set.
    Raises :class:`UsageError` when a required key has no default and no value
    can be invented for it (a pattern this generator cannot satisfy).
    """
    rng = random.Random(seed)
    tree: Tree = {}
    for spec in sorted(schema, key=lambda s: s.path):
        if hardware is not None and spec.applies_to(hardware=hardware) is not None:
            continue
        value = _valid_value(rng, spec)
        if isinstance(value, UnsetType):
            if spec.required:
                raise UsageError(f"cannot invent a value for required key {spec.dotted}")
            continue
        tree = set_value(tree, spec.path, value)
    return tree


def _valid_value(rng: random.Random, spec: KeySpec) -> Value | UnsetType:
    default = cast("Value | UnsetType", spec.default)
    if not isinstance(default, UnsetType) and (rng.random() < 0.5 or spec.pattern):
        return default
    if spec.nullable and rng.random() < 0.1:
        return None
    if spec.enum or spec.pattern is not None:
        choices = spec.enum or _pattern_candidates(rng)
        fitting = [value for value in choices if not spec.check(value)]
        return rng.choice(fitting) if fitting else default
    for _ in range(20):
        value = _random_value(rng, spec)
        if not spec.check(value):
            return value
    return default


def _random_value(rng: random.Random, spec: KeySpec) -> Value:
    kind, low, high = spec.type, spec.min, spec.max
    if kind == "array":
        size = rng.randint(*_int_bounds(low if low is not None else 0, high, span=4))
        return [_random_scalar(rng, spec.items or "any", None, None) for _ in range(max(0, size))]
    if kind == "map":
        return {f"k{n}": _random_scalar(rng, "any", None, None) for n in range(rng.randint(0, 3))}
    return _random_scalar(rng, kind, low, high)


def _random_scalar(
    rng: random.Random, kind: TypeName, low: float | None, high: float | None
) -> Value:
    if kind in ("any", "number"):
        kind = rng.choice(("int", "float", "str", "bool") if kind == "any" else ("int", "float"))
    if kind == "int":
        return rng.randint(*_int_bounds(low, high, span=1000))
    if kind == "float":
        lo, hi = _int_bounds(low, high, span=1000) if low is None or high is None else (low, high)
        return float(min(max(round(rng.uniform(lo, hi), 3), lo), hi))
    if kind == "bool":
        return rng.random() < 0.5
    lo, hi = _int_bounds(low if low is not None else 0, high, span=24)
    size = rng.randint(max(lo, 0), min(hi, max(lo, 0) + 24))
    if kind == "bytes":
        return rng.randbytes(size)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(size))


def _int_bounds(low: float | None, high: float | None, *, span: int) -> tuple[int, int]:
    lo = math.ceil(low) if low is not None else None
    hi = math.floor(high) if high is not None else None
    lo = lo if lo is not None else (0 if hi is None or hi >= 0 else hi - span)
    return lo, hi if hi is not None else lo + span


def _pattern_candidates(rng: random.Random) -> list[Value]:
    """Text shapes that common schema patterns accept (identities, hex, versions, times)."""
    token = f"{rng.getrandbits(32):08x}"
    return [f"dev-{token}", token, f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}", f"coaps://gw-{token}.example:5684"]  # fmt: skip
