"""The balancer's routing policy (edgecfg/sim/balancer.py), with time given:
round robin, sticky, a silent backend is marked down and its clients move."""

from __future__ import annotations

from edgecfg.sim.balancer import Routing


def test_clients_are_spread_round_robin_and_stay_with_their_backend() -> None:
    routing = Routing(3, dead_after_s=1.0)
    first = [routing.route(("10.0.0.1", port), now=0.0) for port in range(6)]
    assert first == [0, 1, 2, 0, 1, 2]
    for port in range(6):
        routing.answered(("10.0.0.1", port))
    assert [routing.route(("10.0.0.1", port), now=5.0) for port in range(6)] == first


def test_a_silent_backend_is_marked_down_and_every_client_of_it_moves() -> None:
    routing = Routing(3, dead_after_s=1.0)
    a, b, c = ("h", 1), ("h", 2), ("h", 3)
    assert [routing.route(x, now=0.0) for x in (a, b, c)] == [0, 1, 2]
    routing.answered(b)
    assert routing.route(a, now=0.5) == 0  # a retransmission within the bound
    assert routing.route(a, now=1.6) in (1, 2)  # silence past it: backend 0 is down
    assert routing.down == {0}
    d = ("h", 4)
    assert routing.route(d, now=2.0) != 0  # new clients skip it
    assert routing.clients_of(0) == 0 and routing.moved == 1


def test_the_last_backend_up_is_never_marked_down() -> None:
    routing = Routing(2, dead_after_s=1.0)
    a, b = ("h", 1), ("h", 2)
    routing.route(a, now=0.0)
    routing.route(b, now=0.0)
    routing.route(a, now=2.0)  # backend 0 down, a moves to 1
    routing.route(a, now=4.0)  # silent again: 1 is the last one up
    assert routing.down == {0}
