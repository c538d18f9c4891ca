"""Real-network mode: the shaping plan (pure), the namespaces (ip netns, tc tbf),
and a small real run of agent processes against a gateway process.

The namespace tests skip, with the one reason :func:`refusal` gives, where
``ip netns`` is not permitted.  The run's outcome is judged (every agent
converged, every namespace removed), never its durations."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.cli.main import main
from edgecfg.errors import UsageError
from edgecfg.sim import netns
from edgecfg.sim.link import LinkModel, LinkProfile
from edgecfg.sim.network import NetworkScenario, run
from edgecfg.sim.shaping import LTEM, NBIOT, PROFILES, link_profile, network_profile, rates

REFUSED = netns.refusal()
needs_netns = pytest.mark.skipif(REFUSED is not None, reason=f"ip netns refused: {REFUSED}")


def _mine() -> list[str]:
    """Namespaces this test process (and its runs) own."""
    return [
        name for name in netns.namespaces() if name.startswith(f"{netns.PREFIX}-{os.getpid()}-")
    ]


# ------------------------------------------------------------------ the plan (pure)


@given(seed=st.integers(0, 10**6), span=st.floats(1.0, 3600.0))
def test_a_run_s_trouble_lies_in_its_span_and_its_seed_names_it(seed: int, span: float) -> None:
    profile = link_profile(NBIOT, seed, span)
    assert profile == link_profile(NBIOT, seed, span)
    assert profile.partitions and profile.bursts  # at least one of each
    for start, end in (*profile.partitions, *profile.bursts):
        assert 0 <= start < span and end > start
    for start, end in profile.partitions:
        assert NBIOT.outage_s[0] <= end - start <= NBIOT.outage_s[1]


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_round_trips_through_the_proxy_stay_in_the_profile_s_range(profile: object) -> None:
    assert profile in (NBIOT, LTEM)
    network = NBIOT if profile is NBIOT else LTEM
    link = LinkModel(link_profile(network, 3, 60.0), seed=3)
    trips: list[float] = []
    for k in range(2000):
        now = 100.0 + k  # after the span: no outage, no burst
        up, down = link.decide(now, "up"), link.decide(now, "down")
        if up and down:
            trips.append(up[0] + down[0])
    low, high = network.rtt_s
    hold = 2 * link.profile.reorder_hold_s  # a reordered datagram is held back
    assert all(low - 1e-9 <= trip <= high + hold + 1e-9 for trip in trips)
    assert max(trips) - min(trips) > (high - low) / 2  # the range is used


def test_each_device_gets_rates_in_the_profile_s_range() -> None:
    drawn = rates(NBIOT, 1, 500)
    assert drawn == rates(NBIOT, 1, 500)
    values = [r.up_kbit for r in drawn] + [r.down_kbit for r in drawn]
    assert all(20 <= v <= 60 for v in values)
    assert len(set(values)) > 20


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="known: nbiot, ltem"):
        network_profile("5g")


def test_a_loss_burst_drops_at_its_own_rate_only_inside_its_window() -> None:
    model = LinkModel(LinkProfile(loss=0.0, bursts=((10.0, 20.0),), burst_loss=1.0), seed=1)
    assert all(model.decide(t / 10, "up") == () for t in range(100, 200))
    assert all(model.decide(t / 10, "up") != () for t in range(0, 100))
    assert all(model.decide(t / 10, "down") != () for t in range(200, 300))


def test_a_burst_window_is_checked_like_a_partition() -> None:
    with pytest.raises(UsageError, match=r"bursts\[0\]"):
        LinkProfile(bursts=((5.0, 1.0),))
    with pytest.raises(UsageError, match="burst_loss"):
        LinkProfile(burst_loss=1.5)


def test_cells_get_disjoint_slash_30s_in_their_subnet() -> None:
    subnet = ipaddress.IPv4Network("10.99.0.0/16")
    seen: set[str] = set()
    for index in (0, 1, 2, 63, 64, netns.MAX_CELLS - 1):
        host, device = netns.cell_addresses(subnet, index)
        pair = ipaddress.IPv4Network(f"{host}/30", strict=False)
        assert ipaddress.IPv4Address(device) in pair and pair.subnet_of(subnet)
        assert host not in seen and device not in seen
        seen |= {host, device}
    with pytest.raises(UsageError):
        netns.cell_addresses(subnet, netns.MAX_CELLS)


def test_a_scenario_is_checked() -> None:
    with pytest.raises(UsageError):
        NetworkScenario(agents=0).check()
    with pytest.raises(UsageError):
        NetworkScenario(profile="wifi").check()


# ------------------------------------------------------------------ the namespaces


@needs_netns
def test_cells_have_their_addresses_and_token_buckets_and_are_removed() -> None:
    with netns.Cells.open(rates(NBIOT, 2, 2)) as first, netns.Cells.open(rates(NBIOT, 3, 1)):
        cells = first.cells
        assert len(_mine()) == 3  # two runs side by side, names apart
        shown = subprocess.run(
            cells[0].command(["ip", "-o", "-4", "addr", "show", "dev", "eth0"]),
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"inet {cells[0].device_address}/30" in shown
        qdisc = subprocess.run(cells[1].command(["tc", "qdisc", "show", "dev", "eth0"]),
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert f"rate {cells[1].rates.up_kbit}Kbit" in qdisc
        ping = subprocess.run(  # the device reaches its host end, and only through the veth
            cells[0].command(["python3", "-c", "import socket; s = socket.socket(socket.AF_INET, "
                              f"socket.SOCK_DGRAM); s.connect(('{cells[0].host_address}', 9)); "
                              "print(s.getsockname()[0])"]),
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert ping == cells[0].device_address
    assert _mine() == []


@needs_netns
def test_cells_are_removed_when_the_run_fails_inside() -> None:
    with pytest.raises(RuntimeError), netns.Cells.open(rates(NBIOT, 4, 2)):
        assert len(_mine()) == 2
        raise RuntimeError("the run failed")
    assert _mine() == []


@needs_netns
def test_an_interrupted_run_leaves_no_namespace_and_no_process(tmp_path: Path) -> None:
    def interrupt(line: str) -> None:
        if "agent(s) in their namespaces" in line:
            raise KeyboardInterrupt

    before = _children()
    with pytest.raises(KeyboardInterrupt):
        run(NetworkScenario(agents=2, seconds=5, edits=0, seed=2), progress=interrupt,
            keep=tmp_path)  # fmt: skip
    assert _mine() == []
    assert _children() <= before  # the gateway and the agents are gone


def _children() -> set[str]:
    """This process's child processes (other tests may have left some)."""
    found = subprocess.run(
        ["pgrep", "-P", str(os.getpid())], capture_output=True, text=True, check=False
    )
    return set(found.stdout.split())


# ------------------------------------------------------------------ a real run


@pytest.mark.slow
@needs_netns
def test_three_agents_over_nbiot_links_converge_through_edits_and_outages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(["sim", "network", "--agents", "3", "--profile", "nbiot", "--seconds", "30",
                 "--edits", "2", "--interval", "15", "--settle", "900", "--seed", "5",
                 "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["divergent_devices"] == 0
    assert summary["agents"] == 3 and len(summary["edits"]) == 2
    devices = summary["devices"]
    assert len({d["address"] for d in devices}) == 3  # each its own address
    assert all(d["syncs"] >= 1 and d["held"] for d in devices)
    assert summary["outcomes"]["updated"] >= 3  # every device got its first config
    assert summary["link"]["outages"] and summary["link"]["stats"]["up"]["sent"] > 0
    assert (out / "network.png").stat().st_size > 0
    assert _mine() == []
