"""A configuration carried over a group layer's edit (issue 12) is exactly
the one folding gives, or the derivation declines.

:meth:`Resolver.rederive` lays one layer's change on the configuration a
device held.  The law: whatever the layers (values, tombstones, locks,
leaves where maps were, empty maps, tied tiers, the device's own layers, keys
its hardware does not support), the result is None or encodes exactly like
:meth:`Resolver.tree` of a resolver that never saw the layer before the
edit; and the held tree is left as it was.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import event, given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import Hierarchy, Layer
from edgecfg.core.path import Path, is_prefix
from edgecfg.core.resolve import DeviceFacts, Resolver
from edgecfg.core.schema import Schema
from edgecfg.core.schema_document import schema_from_document
from edgecfg.core.tree import Tree, Value
from edgecfg.wire.cbor import encode

PATHS: list[Path] = [
    ("a",), ("b",), ("a", "x"), ("a", "y"), ("b", "x"), ("a", "x", "p"), ("a", "y", "p"),
    ("b", "x", "p"),
]  # fmt: skip
LEAVES: list[Value] = [0, 1, 2, True, {}, [1], {"q": 1}]  # a map as a leaf replaces what is below
VALUES = st.sampled_from(LEAVES)
DEVICE = DeviceId("d")
GROUPS = {"hardware": "h", "function": "f", "region": "r/s"}
LAYER_IDS = [
    LayerId(i)
    for i in ("global", "hardware/h", "function/f", "region/r", "region/r/s", "device/d", "local/d")
]
GROUP_LAYERS = LAYER_IDS[:5]
HIERARCHIES = [Hierarchy(), Hierarchy((("hardware",), ("function", "region")))]
SCHEMA: Schema = schema_from_document(
    {
        "name": "s",
        "version": 1,
        "keys": {
            "a.x.p": {"id": 1, "type": "int", "default": 0, "hardware": ["hw-1"]},
            "b.y": {"id": 2, "type": "int", "default": 1},
        },
    }
)


def _unrelated(paths: list[Path]) -> list[Path]:
    kept: list[Path] = []
    for path in paths:
        if not any(is_prefix(path, k) or is_prefix(k, path) for k in kept):
            kept.append(path)
    return kept


@st.composite
def layers(draw: st.DrawFn, *, locks: bool = True) -> Layer:
    sets = {
        path: draw(VALUES)
        for path in _unrelated(draw(st.lists(st.sampled_from(PATHS), max_size=3, unique=True)))
    }
    unsets = draw(st.frozensets(st.sampled_from(PATHS), max_size=1)) - sets.keys()
    locked = locks and draw(st.integers(0, 4)) == 0  # locks decline most derivations
    return Layer(
        sets,
        unsets,
        draw(st.frozensets(st.sampled_from(PATHS), max_size=1)) if locked else frozenset(),
    )


@st.composite
def edits(draw: st.DrawFn, before: Layer, near: list[Path]) -> Layer:
    """Mostly one value changed, set or unset (what a derivation takes),
    often on a path other layers name or one next to it; sometimes a layer
    drawn afresh."""
    kind = draw(st.sampled_from(["value", "value", "unset", "fresh"]))
    if kind == "fresh":
        return draw(layers())
    path = draw(
        st.sampled_from(near or PATHS) if near and draw(st.booleans()) else st.sampled_from(PATHS)
    )
    sets = {p: v for p, v in before.sets.items() if not (is_prefix(p, path) or is_prefix(path, p))}
    unsets = set(before.unsets) - {path}
    if kind == "value":
        sets[path] = draw(VALUES)
    else:
        unsets.add(path)
    return Layer(sets, frozenset(unsets), before.locks)


@st.composite
def cases(
    draw: st.DrawFn, *, quiet_above: bool = False
) -> tuple[Hierarchy, dict[LayerId, Layer], LayerId, Layer, str]:
    """A stack, the group layer edited, its new content, the hardware.  With
    ``quiet_above`` the layers above the edited one set only ``c`` (most
    edits are then carried, over whatever the layers below hold)."""
    edited = draw(st.sampled_from(GROUP_LAYERS))
    stack: dict[LayerId, Layer] = {}
    for n, layer_id in enumerate(LAYER_IDS):
        if quiet_above and n > LAYER_IDS.index(edited):
            quiet = draw(st.sampled_from([Layer(), Layer({("c",): n})]))
            stack[layer_id] = quiet
        elif quiet_above or draw(st.integers(0, 2)) == 0:
            stack[layer_id] = draw(layers(locks=not quiet_above))
        else:
            stack[layer_id] = Layer()
    named = {p for layer in stack.values() for p in (*layer.sets, *layer.unsets, *layer.locks)}
    near = sorted(p for p in PATHS if any(is_prefix(p, n) or is_prefix(n, p) for n in named))
    after = draw(edits(stack[edited], near))
    hardware = draw(st.sampled_from(["hw-1", "hw-2"]))
    return draw(st.sampled_from(HIERARCHIES)), stack, edited, after, hardware


def _tree(hierarchy: Hierarchy, stack: Mapping[LayerId, Layer], device: DeviceFacts) -> Tree:
    return Resolver(hierarchy, stack, SCHEMA).tree(device)


@settings(max_examples=300, deadline=None)
@given(case=st.one_of(cases(), cases(quiet_above=True)))
def test_a_carried_configuration_is_the_fold_or_none(
    case: tuple[Hierarchy, dict[LayerId, Layer], LayerId, Layer, str],
) -> None:
    hierarchy, stack, edited, after, hardware = case
    device = DeviceFacts(DEVICE, GROUPS, hardware=hardware)
    resolver = Resolver(hierarchy, stack, SCHEMA)
    held = resolver.tree(device)
    held_bytes = encode(held)
    before = stack[edited]
    resolver.put_layer(edited, after)
    carried = resolver.rederive(device, resolver.tiers(device), held, edited, before)
    event("declined" if carried is None else "kept" if carried is held else "carried")
    assert encode(held) == held_bytes  # copy-on-write: what devices hold stays
    if carried is not None:
        want = _tree(hierarchy, {**stack, edited: after}, device)
        assert encode(carried) == encode(want)
        assert encode(carried) == encode(resolver.tree(device))


def _case(
    stack: dict[str, Layer], edited: str, after: Layer, hardware: str = "hw-1"
) -> tuple[Tree | None, Tree]:
    layers_ = {LayerId(i): layer for i, layer in stack.items()}
    device = DeviceFacts(DEVICE, GROUPS, hardware=hardware)
    resolver = Resolver(Hierarchy(), layers_, SCHEMA)
    held = resolver.tree(device)
    resolver.put_layer(LayerId(edited), after)
    carried = resolver.rederive(
        device, resolver.tiers(device), held, LayerId(edited), layers_[LayerId(edited)]
    )
    return carried, resolver.tree(device)


def _sets(values: Mapping[Path, Value], **kwargs: frozenset[Path]) -> Layer:
    return Layer(dict(values), **kwargs)


def test_a_global_value_no_one_shadows_is_carried() -> None:
    carried, want = _case(
        {"global": _sets({("b", "x"): 1, ("a", "y"): 2}), "device/d": _sets({("a", "x"): 5})},
        "global",
        _sets({("b", "x"): 7, ("a", "y"): 2}),
    )
    assert carried is not None
    assert encode(carried) == encode(want)


def test_a_value_a_higher_layer_sets_is_folded_again() -> None:
    carried, _ = _case(
        {"global": _sets({("b", "x"): 1}), "region/r": _sets({("b",): 3})},
        "global",
        _sets({("b", "x"): 2}),
    )
    assert carried is None


def test_a_value_under_a_lock_is_folded_again() -> None:
    carried, _ = _case(
        {"global": _sets({("b", "x"): 1}), "hardware/h": Layer(locks=frozenset({("b",)}))},
        "global",
        _sets({("b", "x"): 2}),
    )
    assert carried is None


def test_a_key_the_hardware_drops_is_folded_again() -> None:
    stack = {"global": _sets({("a", "x", "p"): 1})}
    carried, _ = _case(stack, "global", _sets({("a", "x", "p"): 2}), hardware="hw-2")
    assert carried is None
    carried, want = _case(stack, "global", _sets({("a", "x", "p"): 2}), hardware="hw-1")
    assert carried is not None and encode(carried) == encode(want)


def test_a_change_of_locks_is_folded_again() -> None:
    carried, _ = _case(
        {"global": _sets({("b", "x"): 1})},
        "global",
        Layer({("b", "x"): 1}, locks=frozenset({("a",)})),
    )
    assert carried is None


def test_an_edit_in_a_tied_tier_is_folded_again() -> None:
    tied = Hierarchy((("hardware",), ("function", "region")))
    stack = {
        LayerId("function/f"): Layer({("b", "x"): 1}),
        LayerId("region/r"): Layer({("b", "x"): 2}),  # a conflict: neither applies
    }
    device = DeviceFacts(DEVICE, GROUPS, hardware="hw-1")
    resolver = Resolver(tied, stack, SCHEMA)
    held = resolver.tree(device)
    resolver.put_layer(LayerId("function/f"), Layer({("b", "x"): 2}))  # now they agree
    tiers = resolver.tiers(device)
    assert (
        resolver.rederive(device, tiers, held, LayerId("function/f"), stack[LayerId("function/f")])
        is None
    )
    assert resolver.tree(device)["b"] == {"x": 2, "y": 1}
