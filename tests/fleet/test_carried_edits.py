"""Issue 12's law for fleet-wide edits: whatever the sequence of layer
writes, a device that syncs from the version it holds ends up with exactly
``resolve(layers at that moment)``, whether the gateway carried its config
over the edit (:meth:`Resolver.rederive`) or folded and diffed it again.

Writes go to the global, group and device layers: sets and unsets of leaves
and of whole maps, locks, values that turn a leaf into a map and back; some
through the serving fleet, some through another writer picked up with
``refresh``.  Each device asks with its previous ETag as base, applies the
delta (or takes the full config) and must hold the configuration a fleet that
never cached anything resolves from the store.
"""

from __future__ import annotations

from typing import cast

from hypothesis import event, given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import Layer, layer_from_parts
from edgecfg.core.path import Path
from edgecfg.errors import EdgecfgError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import NotModified, Representation, SyncService
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.cbor import Encoded, encode
from edgecfg.wire.delta import apply_delta
from edgecfg.wire.numbers import ContentFormat

DEVICES = [DeviceId(f"dev-{n}") for n in range(4)]
REGIONS = ["eu", "eu/west", "us", "eu/west"]
GROUPS = ["global", "global", "region/eu", "region/eu/west", "region/us", "function/a"]
OWN = [f"device/{d}" for d in DEVICES]
KEYS: list[Path] = [("net", "interval"), ("net", "mode"), ("net",), ("log", "level"), ("log",)]
VALUES = st.one_of(st.integers(0, 3), st.just(True), st.just({}))

writes = st.tuples(
    st.sampled_from([*GROUPS, *OWN]),
    st.sampled_from(["set", "set", "set", "unset", "lock"]),
    st.sampled_from(KEYS),
    VALUES,
    st.booleans(),  # through another writer (then picked up with refresh)
)


def _edit(kind: str, key: Path, value: object) -> Layer:
    if kind == "set":
        return layer_from_parts(sets={key: value})  # type: ignore[dict-item]
    if kind == "unset":
        return Layer(unsets=frozenset({key}))
    return Layer(locks=frozenset({key}))


def _held_after(answer: Representation | NotModified, held: Encoded) -> Encoded:
    if isinstance(answer, NotModified):
        assert answer.etag == held.etag
        return held
    if answer.content_format == ContentFormat.DELTA:
        now = Encoded.of(apply_delta(held, answer.payload))  # type: ignore[arg-type]
    else:
        now = Encoded.from_bytes(answer.payload)
    assert now.etag == answer.etag  # the ETag option names what the device now holds
    return now


@settings(max_examples=120, deadline=None)
@given(
    steps=st.lists(writes, min_size=1, max_size=10),
    sync_cache=st.sampled_from([1, 96 * 2**20]),
)
def test_a_device_served_after_any_writes_holds_the_resolution_of_that_moment(
    steps: list[tuple[str, str, Path, object, bool]], sync_cache: int
) -> None:
    store = MemoryStore()
    serving = Fleet(store)
    for device, region in zip(DEVICES, REGIONS, strict=True):
        function = "a" if device != DEVICES[3] else "b"
        serving.add_device(
            DeviceRecord(device, {"region": region, "function": function}, hardware="hw-1")
        )
    for device in DEVICES[:3]:  # the last one has no layer of its own
        own = layer_from_parts(sets={("id",): str(device)})
        serving.write_layer(LayerId(f"device/{device}"), own, author="t", message="m", now=1.0)
    sync = SyncService(serving, cache_bytes=sync_cache, clock=lambda: 10.0)
    held: dict[DeviceId, Encoded] = {}
    for device in DEVICES:
        first = sync.config(device)
        assert isinstance(first, Representation)
        held[device] = Encoded.from_bytes(first.payload)
    other = Fleet(store)
    for layer, kind, key, value, elsewhere in steps:
        writer = other if elsewhere else serving
        try:
            writer.write_layer(
                LayerId(layer), _edit(kind, key, value), author="t", message="m", now=2.0
            )
        except EdgecfgError:
            continue  # refused (a lock, a bad value): nothing changed
        if elsewhere:
            serving.refresh()
        else:
            other.refresh()
        carried = serving.carried
        truth = Fleet(store)  # has never cached anything
        for device in DEVICES:
            answer = sync.config(device, base=held[device].etag)
            held[device] = _held_after(answer, held[device])
            assert held[device].cbor == encode(truth.resolve(device).tree)
        event("carried" if serving.carried > carried else "folded")


def test_a_global_edit_reaches_every_device_as_a_carried_delta() -> None:
    """The fleet-wide edit of issue 12: each device's config is carried over
    the global layer's change, and its delta starts from the config the edit
    replaced, with no base rebuilt from history."""
    store = MemoryStore()
    serving = Fleet(store)
    serving.write_layer(
        LayerId("global"), layer_from_parts(sets={("net", "interval"): 60, ("log", "level"): 1}),
        author="t", message="m", now=1.0,
    )  # fmt: skip
    for device, region in zip(DEVICES, REGIONS, strict=True):
        serving.add_device(DeviceRecord(device, {"region": region}, hardware="hw-1"))
        own = layer_from_parts(sets={("id",): str(device), ("log", "level"): 2})
        serving.write_layer(LayerId(f"device/{device}"), own, author="t", message="m", now=1.0)
    sync = SyncService(serving, cache_bytes=1, clock=lambda: 10.0)  # keeps no version itself
    held = {d: Encoded.from_bytes(cast(Representation, sync.config(d)).payload) for d in DEVICES}
    rebuilt: list[DeviceId] = []
    rebuild = serving.rebuild
    serving.rebuild = lambda device, vector: rebuilt.append(device) or rebuild(device, vector)  # type: ignore[method-assign]
    Fleet(store).write_layer(  # another writer
        LayerId("global"), layer_from_parts(sets={("net", "interval"): 90}),
        author="t", message="m", now=2.0,
    )  # fmt: skip
    assert serving.refresh().layers == {LayerId("global")}
    for device in DEVICES:
        answer = sync.config(device, base=held[device].etag)
        assert isinstance(answer, Representation)
        assert answer.content_format == ContentFormat.DELTA
        now = _held_after(answer, held[device])
        assert now.tree["net"] == {"interval": 90}
        assert now.cbor == encode(Fleet(store).resolve(device).tree)
    assert serving.carried == len(DEVICES)
    assert rebuilt == []
