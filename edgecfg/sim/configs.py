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
import itertools
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Final, Literal, cast

from edgecfg.core.schema import KeySpec, Schema, TypeName
from edgecfg.core.tree import Tree, UnsetType, Value, set_value, values_equal, walk_leaves
from edgecfg.errors import UsageError

Shape = Literal["flat", "nested", "mixed"]
Loc = tuple[str | int, ...]  # steps into maps (keys) and arrays (indexes)


def _names(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_SECTIONS: Final = _names(
    "printer|mcu|stepper_x|stepper_y|stepper_z|extruder|heater_bed|fan|probe|bed_mesh|safe_z_home|"
    "idle_timeout|virtual_sdcard|tmc2209 stepper_x|tmc2209 extruder|heater_fan hotend_fan|display|"
    "temperature_sensor mcu_temp|output_pin beeper|neopixel lights|filament_switch_sensor runout|"
    "input_shaper|firmware_retraction",
    "|",
)
_UCI_TYPES: Final = _names("interface zone rule forwarding host redirect dnsmasq globals")
_MACROS: Final = _names("PRINT_START PRINT_END PAUSE RESUME CANCEL_PRINT PARK HEAT_SOAK")
_NESTED: Final = _names(
    "wifi ap api ota logger mqtt advanced availability device_options serial esphome substitutions "
    "pin count_mode total frontend discovery climate effects network ble experimental options "
    "homeassistant state"
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
                        "long": 2, "maps": 2, "null": 2}  # fmt: skip
_WORDS: Final = _names(
    "cartesian|corexy|pid|watermark|/dev/ttyACM0|!secret wifi_ssid|!secret api_password|static|"
    "${esphome_name} Power Meter|mqtt://10.0.0.6|dhcp|lan|wan|ACCEPT|REJECT|EPCOS 100K B57560G104F|"
    "ATC Semitec 104GT-2|gpio|template|d1_mini|esp32dev|warn|info|zigbee2mqtt|tmc2209",
    "|",
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
_PIN: Final = re.compile(r"[!^~]*(P[A-E]\d+|ar\d+|gpio\d+)")


def leaf_count(tree: Mapping[str, Value]) -> int:
    """Number of leaves as :func:`~edgecfg.core.tree.walk_leaves` yields them."""
    return sum(1 for _ in walk_leaves(tree))


def fresh(taken: Mapping[str, object], base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... whichever is not yet a key of ``taken``."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


class _Maker:
    """Builds corpus-like values from one random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pin(self) -> str:
        r = self.rng
        port = f"P{r.choice('ABCDE')}{r.randint(0, 15)}"
        body = r.choice((port, port, f"ar{r.randint(2, 69)}", f"gpio{r.randint(0, 27)}"))
        return r.choice(("", "", "", "!", "^", "^!", "~")) + body

    def long_text(self, key: str) -> str:
        r = self.rng
        snippets = _LAMBDA if "lambda" in key or "boot" in key else _GCODE
        snippets = _TEMPLATE if "template" in key else snippets
        # Real macros are mostly short; a few run long (corpus: ~22 bytes per leaf overall).
        target = r.choice((r.randint(60, 200), r.randint(60, 300), r.randint(200, 600), 1500))
        out: list[str] = []
        while sum(len(line) + 1 for line in out) < target:
            numbers = {k: r.randint(1, 9) * 10 ** r.randint(0, 2) for k in "abcde"}
            out.append(r.choice(snippets).format(**numbers))
        return "\n".join(out)

    def scalar(self, kind: str, key: str) -> Value:
        r = self.rng
        makers: dict[str, Callable[[], Value]] = {
            "int": lambda: r.choice((r.randint(0, 10), r.randint(0, 300), r.randint(1024, 65535))),
            "float": lambda: round(r.uniform(0.001, r.choice((1.0, 10.0, 500.0))), r.randint(1, 4)),
            "bool": lambda: r.random() < 0.5,
            "pin": self.pin,
            "long": lambda: self.long_text(key),
            "list": lambda: (
                [r.randint(1, 40) for _ in range(r.randint(0, 6))]
                if r.random() < 0.5
                else [r.choice(_WORDS) for _ in range(r.randint(1, 4))]
            ),
            "maps": lambda: [self.element() for _ in range(r.randint(1, 4))],
            "null": lambda: None,
            "word": lambda: r.choice(_WORDS) if r.random() < 0.7 else f"{key}_{r.randint(0, 99)}",
        }
        return makers[kind]()

    def element(self) -> Value:
        """One map of an ESPHome-style array (``sensor:``, ``filters:``)."""
        r = self.rng
        node: Tree = {"platform": r.choice(("gpio", "template", "pulse_counter", "dht", "adc"))}
        if r.random() < 0.7:
            node["name"] = f"${{esphome_name}} {r.choice(_MACROS).lower()}"
        if r.random() < 0.5:
            node["pin"] = {"number": self.pin(), "inverted": r.random() < 0.5}
        if r.random() < 0.15:
            lam = self.long_text("lambda")
            node["filters"] = [{"multiply": round(r.uniform(0.01, 2), 3)}, {"lambda": lam}]
        if r.random() < 0.5:
            node["update_interval"] = f"{r.choice((10, 30, 60))}s"
        return node

    def options(self, size: int, *, arrays: bool, node: Tree | None = None) -> Tree:
        """``node`` (or a new map) with ``size`` more options, each one leaf."""
        kinds = [k for k in _KIND_WEIGHTS if arrays or k != "maps"]
        node = {} if node is None else node
        for kind in self.rng.choices(kinds, [_KIND_WEIGHTS[k] for k in kinds], k=size):
            key = fresh(node, self.rng.choice(_OPTIONS[kind].split()))
            node[key] = self.scalar(kind, key)
        return node

    def nested(self, size: int, depth: int) -> Tree:
        """A map with exactly ``size`` leaves and maps up to ``depth`` levels below it."""
        if depth <= 0 or size < 3:
            return self.options(size, arrays=True)
        r = self.rng
        subs = r.randint(1, min(3, size // 2))
        own = r.randint(1, max(1, (size - subs) // 3))
        node = self.options(own, arrays=True)
        cuts = sorted(r.sample(range(1, size - own), subs - 1))
        parts = sorted((b - a for a, b in itertools.pairwise([0, *cuts, size - own])), reverse=True)
        for index, part in enumerate(parts):  # the largest part carries the full depth
            name = r.choice(_NESTED) if r.random() < 0.8 else f"0x00158d00{r.getrandbits(32):08x}"
            node[fresh(node, name)] = self.nested(part, depth - 1 if index == 0 else depth // 2)
        return node

    def section(self, taken: Mapping[str, Value], size: int, flat: bool) -> tuple[str, Value]:
        """A new top-level entry with exactly ``size`` leaves and a name not in ``taken``."""
        r = self.rng
        style = r.random()
        if flat and size == 1 and style < 0.3:
            return fresh(taken, f"include common/{r.choice(_SECTIONS).replace(' ', '/')}.cfg"), {}
        if flat and style < 0.2:  # OpenWrt UCI
            kind = r.choice(_UCI_TYPES)
            node = self.options(size - 1, arrays=False, node={".type": kind})
            return fresh(taken, f"@{kind}[{r.randint(0, 3)}]"), node
        if flat and style < 0.26 and size >= 2:  # Klipper macro
            node = self.options(size - 1, arrays=False, node={"gcode": self.long_text("gcode")})
            return fresh(taken, f"gcode_macro {r.choice(_MACROS)}"), node
        if flat:
            return fresh(taken, r.choice(_SECTIONS)), self.options(size, arrays=False)
        if size == 1 and style < 0.5:  # Zigbee2MQTT top-level `permit_join: false`
            kind = r.choice(("bool", "word", "int", "null"))
            key = fresh(taken, r.choice(_OPTIONS[kind].split()))
            return key, self.scalar(kind, key)
        return fresh(taken, r.choice(_NESTED)), self.nested(size, r.randint(1, 4))


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
    step = loc[0]
    if isinstance(node, dict) and isinstance(step, str):
        return {**node, step: _update(node[step], loc[1:], change)}
    items = list(cast(list[Value], node))
    items[cast(int, step)] = _update(items[cast(int, step)], loc[1:], change)
    return items


def _edit_text(rng: random.Random, text: str) -> str:
    numbers = list(re.finditer(r"\d+", text))
    lines = text.split("\n")
    how = rng.random()
    if numbers and how < 0.4:  # the most common real edit: a number inside a macro
        m = rng.choice(numbers)
        new = str(max(0, int(m.group()) + rng.choice((-5, -1, 1, 2, 10, 25))))
        out = text[: m.start()] + new + text[m.end() :]
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
    if isinstance(value, str) and len(value) >= 40:
        return _edit_text(rng, value)
    if isinstance(value, str):
        new = _Maker(rng).pin() if _PIN.fullmatch(value) else rng.choice(_WORDS)
        return new if new != value else value + "_2"
    return rng.randint(0, 100)


def _edit(rng: random.Random, kind: str, node: Value, key: str) -> Value:
    """Edit ``kind`` applied to ``node`` (to its entry ``key`` for remove/rename), as a copy."""
    if kind in ("scalar", "text"):
        return _edit_scalar(rng, node)
    if kind in ("insert", "delete"):  # delete is only chosen for non-empty lists
        items = cast(list[Value], node)
        if kind == "delete":
            return items[: (at := rng.randrange(len(items)))] + items[at + 1 :]
        like = rng.choice(items) if items else 0
        new = _Maker(rng).element() if isinstance(like, dict) else _edit_scalar(rng, like)
        return [*items[: (at := rng.randint(0, len(items)))], new, *items[at:]]
    out = dict(cast(Tree, node))
    if kind == "remove":
        del out[key]
    elif kind == "rename":  # `gcode_macro PRINT_START` -> `gcode_macro PRINT_START_2`, `tmc5160 x`
        head, _, tail = key.partition(" ")
        names = (f"{head} {tail}_{rng.randint(1, 9)}", f"tmc5160 {tail}", f"{head} {tail.lower()}")
        if not tail:
            names = (f"{key}{rng.randint(1, 3)}", key.replace("_", "-"), f"{key}_old", f"{key} x")
        new_key = fresh(out, rng.choice(names))
        return {(new_key if k == key else k): v for k, v in out.items()}  # keep the order
    elif kind == "add-option":
        option = rng.choice(("int", "float", "bool", "word", "pin"))
        name = fresh(out, rng.choice(_OPTIONS[option].split()))
        out[name] = _Maker(rng).scalar(option, name)
    else:  # add-section
        name, value = _Maker(rng).section(out, rng.randint(1, 8), rng.random() < 0.6)
        out[name] = value
    return out


def _apply_edit(rng: random.Random, tree: Tree) -> Tree:
    nodes = list(_nodes(tree))
    entries = [(loc, v) for loc, v in nodes if loc and isinstance(loc[-1], str)]
    where: dict[str, tuple[int, list[Loc]]] = {
        "scalar": (40, [loc for loc, v in nodes if not isinstance(v, dict | list | None)]),
        "text": (15, [loc for loc, v in nodes if isinstance(v, str) and len(v) >= 40]),
        "insert": (7, [loc for loc, v in nodes if isinstance(v, list)]),
        "delete": (5, [loc for loc, v in nodes if isinstance(v, list) and v]),
        "add-option": (12, [loc for loc, v in nodes if loc and isinstance(v, dict)]),
        "add-section": (5, [()]),
        "remove": (8, [loc for loc, _ in entries if len(loc) >= 2]),
        "rename": (4, [loc for loc, v in entries if isinstance(v, dict)]),
    }
    usable = [kind for kind, (_, locs) in where.items() if locs]
    kind = rng.choices(usable, [where[k][0] for k in usable])[0]
    loc = rng.choice(where[kind][1])
    if kind in ("remove", "rename"):  # these act on the map that holds the entry
        key, loc = cast(str, loc[-1]), loc[:-1]
    else:
        key = ""
    return cast(Tree, _update(tree, loc, lambda node: _edit(rng, kind, node, key)))


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
    history = [generate_config(rng.getrandbits(64), leaves=leaves, shape=shape)]
    for _ in range(versions - 1):
        if rng.random() < 0.2:
            history.append(copy.deepcopy(history[-1]))
        else:
            edits = 1 if rng.random() < 0.6 else rng.randint(2, 6)
            history.append(mutate_config(history[-1], rng.getrandbits(64), edits=edits))
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
        if not isinstance(value, UnsetType):
            tree = set_value(tree, spec.path, value)
        elif spec.required:
            raise UsageError(f"cannot invent a value for required key {spec.dotted}")
    return tree


def _valid_value(rng: random.Random, spec: KeySpec) -> Value | UnsetType:
    default = cast("Value | UnsetType", spec.default)
    if not isinstance(default, UnsetType) and (rng.random() < 0.5 or spec.pattern):
        return default
    if spec.nullable and rng.random() < 0.1:
        return None
    if spec.enum or spec.pattern is not None:
        token = f"{rng.getrandbits(32):08x}"  # shapes that identity, hex, time, URI patterns take
        hhmm = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        version = f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        shapes: list[Value] = [f"dev-{token}", token, hhmm, version, f"coaps://gw-{token}.example"]
        fitting = [value for value in spec.enum or shapes if not spec.check(value)]
        return rng.choice(fitting) if fitting else default
    for _ in range(20):
        if spec.type == "array":
            size = rng.randint(*_bounds(spec.min if spec.min is not None else 0, spec.max, 4))
            value: Value = [_random_scalar(rng, spec.items or "any") for _ in range(size)]
        elif spec.type == "map":
            value = {f"k{n}": _random_scalar(rng, "any") for n in range(rng.randint(0, 3))}
        else:
            value = _random_scalar(rng, spec.type, spec.min, spec.max)
        if not spec.check(value):
            return value
    return default


def _random_scalar(
    rng: random.Random, kind: TypeName, low: float | None = None, high: float | None = None
) -> Value:
    if kind in ("any", "number"):
        kind = rng.choice(("int", "float", "str", "bool") if kind == "any" else ("int", "float"))
    if kind == "int":
        return rng.randint(*_bounds(low, high, 1000))
    if kind == "float":
        lo, hi = (low, high) if low is not None and high is not None else _bounds(low, high, 1000)
        return float(min(max(round(rng.uniform(lo, hi), 3), lo), hi))
    if kind == "bool":
        return rng.random() < 0.5
    lo, hi = _bounds(max(low or 0, 0), high, 24)  # str and bytes: bounds are on the length
    size = rng.randint(lo, min(hi, lo + 24))
    if kind == "bytes":
        return rng.randbytes(size)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(size))


def _bounds(low: float | None, high: float | None, span: int) -> tuple[int, int]:
    """Integer range inside [low, high]; a missing side lies ``span`` away from the other."""
    lo = math.ceil(low) if low is not None else None
    hi = math.floor(high) if high is not None else None
    if lo is None:
        lo = 0 if hi is None or hi >= 0 else hi - span
    return lo, hi if hi is not None else lo + span
