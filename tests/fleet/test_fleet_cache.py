"""The fleet's bounded caches never serve a stale configuration.

A free-form fleet (no schema) of a few devices, some with layers of their
own, goes through random sequences of writes (group layers, device layers,
re-registrations into other groups), made through the fleet that serves or
by another writer and picked up with ``refresh``; with a cache so small that
entries are evicted all the time, or one that holds everything.  After each
step every device's served config must be exactly ``resolve(layers at that
moment)``, computed from the store by a fleet that has never cached anything.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.fleet.fleet import Fleet
from edgecfg.store import DeviceRecord, MemoryStore

DEVICES = [DeviceId(f"dev-{n}") for n in range(5)]
GROUPS = ["global", "region/eu", "region/eu/west", "region/us", "function/a", "function/b"]
REGIONS = ["eu", "eu/west", "us"]
FUNCTIONS = ["a", "b"]
KEYS = [("net", "interval"), ("net", "mode"), ("log", "level")]

writes = st.one_of(
    st.tuples(
        st.just("layer"),
        st.sampled_from([*GROUPS, *(f"device/{d}" for d in DEVICES)]),
        st.sampled_from(KEYS),
        st.integers(0, 3),
    ),
    st.tuples(
        st.just("move"),
        st.sampled_from(DEVICES),
        st.sampled_from(REGIONS),
        st.sampled_from(FUNCTIONS),
    ),
)


def record(device: DeviceId, region: str, function: str) -> DeviceRecord:
    return DeviceRecord(device, {"region": region, "function": function}, hardware="hw-1")


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(writes, st.booleans()), min_size=1, max_size=12),
    cache_bytes=st.sampled_from([1, 10**9]),
)
def test_served_config_is_the_resolution_of_the_layers_at_that_moment(
    steps: list[tuple[tuple[object, ...], bool]], cache_bytes: int
) -> None:
    store = MemoryStore()
    serving = Fleet(store, cache_bytes=cache_bytes)
    for number, device in enumerate(DEVICES):
        serving.add_device(record(device, REGIONS[number % 3], FUNCTIONS[number % 2]))
    for device in DEVICES:
        serving.encoded(device)  # fill the caches before anything changes
    for step, by_other in steps:
        writer = Fleet(store) if by_other else serving
        if step[0] == "layer":
            _, layer, key, value = step
            edit = layer_from_parts(sets={key: value})  # type: ignore[dict-item]
            writer.write_layer(LayerId(str(layer)), edit, author="t", message="m", now=1.0)
        else:
            _, device, region, function = step
            writer.add_device(record(DeviceId(str(device)), str(region), str(function)))
        if by_other:
            serving.refresh()
        fresh = Fleet(store)
        for device in DEVICES:
            served = serving.encoded(device)
            expected = fresh.resolve(device).tree
            assert served.tree == expected, (device, step)
            assert served.etag == fresh.encoded(device).etag


def test_a_tiny_cache_keeps_nothing_but_answers_the_same() -> None:
    store = MemoryStore()
    roomy, tiny = Fleet(store), Fleet(store, cache_bytes=1)
    roomy.add_device(record(DEVICES[0], "eu", "a"))
    roomy.write_layer(
        LayerId("region/eu"), layer_from_parts(sets={KEYS[0]: 5}), author="t", message="m",
        now=1.0,
    )  # fmt: skip
    tiny.refresh()
    assert tiny.encoded(DEVICES[0]) == roomy.encoded(DEVICES[0])
    assert tiny.cached_configs() == 0
    assert roomy.cached_configs() == 1
