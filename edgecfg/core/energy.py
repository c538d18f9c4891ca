"""What configuration management costs a battery device, in joules (DESIGN §6).

Pure: the input is what the agent itself counted — radio wakes, CoAP round
trips, bytes on the wire up and down (:class:`Counters`, filled from
``SyncResult`` / ``Traffic``), CPU seconds — and a :class:`RadioProfile` for
one technology at one coverage class.  Nothing here guesses a byte count.

The model is linear in each counter (LoRaWAN adds whole frames and follows
Semtech's airtime formula)::

    E = wakes * wake_j + round_trips * round_trip_j
        + bytes_up * up_j_per_byte + bytes_down * down_j_per_byte + cpu_s * cpu_w

and a device's standing cost is its sleep floor (PSM, or eDRX paging) times
the time.  What configuration *adds* is the difference between two sets of
counters; riding on telemetry it adds no wake and no round trip, only bytes.

Where the figures come from (each profile says which):

- [TR45820] 3GPP TR 45.820 (Cellular system support for ultra-low complexity
  and low throughput IoT), battery-life evaluation: the UE power model used
  by most NB-IoT/LTE-M lifetime studies — transmit at 23 dBm 500 mW, receive
  80 mW, light sleep 3 mW, deep sleep 15 uW — the coupling-loss points MCL
  144 / 154 / 164 dB, and the 164 dB target of >= 160 bit/s.
- [NRF9160] Nordic nRF9160 Product Specification: PSM floor current 2.7 uA
  (at 3.7 V: 10 uW); LTE-M and NB-IoT, 23 dBm class-3 transmitter.
- [SARAR4] u-blox SARA-R4 series data sheet and system integration manual
  (UBX-16029218): PSM "deep-sleep" with only the 32 kHz reference running,
  single-digit uA; the module's connected-mode TX/RX currents agree with the
  [TR45820] power model within tens of percent.
- [TS24008] 3GPP TS 24.008, Extended DRX parameters IE (NB-IoT eDRX cycles
  20.48 s .. 10485.76 s) and GPRS Timer 3 (T3412 extended, the PSM period);
  [TS23682] 3GPP TS 23.682, UE Power Saving Mode and extended idle-mode DRX.
- [MEAS] published measurements of commercial modules on live networks:
  Lauridsen et al., "From LTE to LTE-M: Reducing energy consumption" and
  "Coverage and capacity analysis of LTE-M and NB-IoT in a rural area"
  (VTC 2016); Andres-Maldonado et al., "Narrowband IoT data transmission
  procedures for massive machine-type communications" (IEEE Network 2017);
  Michelinakis et al., "Dissecting energy consumption of NB-IoT devices
  empirically" (IEEE IoT J. 2021); Sørensen et al., "Modelling and
  experimental validation for battery lifetime estimation in NB-IoT and
  LTE-M" (arXiv 2106.13286).  They put one small NB-IoT report at roughly
  0.3-1 J in good coverage and several J at the coverage edge, dominated by
  connection set-up, repetitions and the connected-mode tail, not by bytes;
  DESIGN §6 and fixtures/device_types.json use 0.5 J at good coverage.
- [AN1200.13] Semtech AN1200.13 "LoRa Modem Designer's Guide": time on air;
  [RP002] LoRaWAN Regional Parameters RP002, EU863-870 (max payload per data
  rate); [ETSI300220] ETSI EN 300 220: 1 % duty cycle in the 868.0-868.6 MHz
  sub-band; [SX1276] Semtech SX1276 data sheet (TX ~44 mA at +14 dBm on
  PA_BOOST, RX ~11.5 mA, 3.3 V).
- [ESP32] Espressif ESP32 data sheet: TX 802.11b ~240 mA, RX ~100 mA, deep
  sleep ~10 uA at 3.3 V.

Per-round-trip costs are the receiver kept on (monitoring the downlink
control channel) for the link's round-trip time plus the scheduling request
/ random-access preambles (with the coverage class's repetitions); per-byte
costs are the transmit or receive power over the effective MAC data rate
(the rates scale with the repetitions of each coverage class).  These are
model values to the precision the sources allow (a factor of about 2), not
a measurement of one module on one network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from edgecfg.errors import UsageError

Technology = Literal["nb-iot", "lte-m", "lte-cat1", "lorawan", "wifi"]

SECONDS_PER_DAY: Final = 86_400.0
DAYS_PER_YEAR: Final = 365.25
AA_PAIR_WH: Final = 9.0
"""Two lithium AA cells (e.g. Energizer L91: ~3 Ah at 1.5 V each): 9 Wh."""
TARGET_YEARS: Final = 10.0


def daily_budget_j(battery_wh: float, years: float = TARGET_YEARS) -> float:
    """Joules a day a ``battery_wh`` battery allows for ``years`` (2xAA over
    10 years: 9 Wh → 8.9 J/day; with 20 % lost to self-discharge and cold, 7.1)."""
    if not (battery_wh > 0 and years > 0):
        raise UsageError(f"a daily budget needs a battery > 0 Wh and years > 0, "
                         f"got {battery_wh} Wh over {years} years")  # fmt: skip
    return battery_wh * 3600.0 / (years * DAYS_PER_YEAR)


@dataclass(frozen=True, slots=True)
class Counters:
    """What the agent counted: radio wakes, CoAP round trips, bytes on the
    wire (headers included) and CPU seconds.  Counts are whole numbers as
    counted; an average per day may be a fraction."""

    wakes: float = 0
    round_trips: float = 0
    bytes_up: float = 0
    bytes_down: float = 0
    cpu_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("wakes", "round_trips", "bytes_up", "bytes_down", "cpu_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"Counters.{name} must be finite and >= 0, got {value!r}")

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.wakes + other.wakes,
            self.round_trips + other.round_trips,
            self.bytes_up + other.bytes_up,
            self.bytes_down + other.bytes_down,
            self.cpu_s + other.cpu_s,
        )

    def scaled(self, factor: float) -> Counters:
        """Every counter times ``factor`` (e.g. per day from a run of several
        days; counts become fractions)."""
        return Counters(
            self.wakes * factor,
            self.round_trips * factor,
            self.bytes_up * factor,
            self.bytes_down * factor,
            self.cpu_s * factor,
        )


@dataclass(frozen=True, slots=True)
class LoraRadio:
    """A LoRaWAN end device at one spreading factor (EU868, 125 kHz, CR 4/5)."""

    sf: int
    tx_w: float = 0.044 * 3.3  # [SX1276] +14 dBm (EU868 max ERP) on PA_BOOST
    rx_w: float = 0.0115 * 3.3  # [SX1276] RX, LnaBoost, 125 kHz

    def __post_init__(self) -> None:
        if self.sf not in range(7, 13):
            raise UsageError(f"a LoRa spreading factor is 7..12, got {self.sf}")

    @property
    def max_payload(self) -> int:
        """[RP002] EU863-870 max FRMPayload N: DR0-2 (SF12-10) 51, DR3 (SF9)
        115, DR4-5 (SF8-7) 242 bytes."""
        return 51 if self.sf >= 10 else 115 if self.sf == 9 else 242


@dataclass(frozen=True, slots=True)
class RadioProfile:
    """One technology at one coverage class: what a wake, a round trip, a
    byte each way, a CPU second and a second of sleep cost."""

    name: str
    technology: Technology
    coverage: str
    wake_j: float
    round_trip_j: float
    up_j_per_byte: float
    down_j_per_byte: float
    floor_w: float
    """Sleep floor between wakes (PSM, or deep sleep), watts."""
    cpu_w: float
    """The application MCU running, watts."""
    paging_j: float = 0.0
    """One eDRX paging occasion (wake, sync, listen), for :func:`edrx_floor_w`."""
    source: str = ""
    lora: LoraRadio | None = None

    def __post_init__(self) -> None:
        for name in ("wake_j", "round_trip_j", "up_j_per_byte", "down_j_per_byte",
                     "floor_w", "cpu_w", "paging_j"):  # fmt: skip
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"profile {self.name}: {name} must be finite and >= 0, "
                                 f"got {value!r}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Energy:
    """Joules, split by what spent them."""

    wake_j: float = 0.0
    round_trip_j: float = 0.0
    up_j: float = 0.0
    down_j: float = 0.0
    cpu_j: float = 0.0
    airtime_s: float = 0.0
    """LoRaWAN uplink time on air (for the duty cycle); 0 on other links."""

    @property
    def total_j(self) -> float:
        return self.wake_j + self.round_trip_j + self.up_j + self.down_j + self.cpu_j


def energy(profile: RadioProfile, counters: Counters) -> Energy:
    """What ``counters`` cost on ``profile`` (monotone in every counter)."""
    cpu_j = counters.cpu_s * profile.cpu_w
    if profile.lora is not None:
        return _lora_energy(profile, profile.lora, counters, cpu_j)
    return Energy(
        wake_j=counters.wakes * profile.wake_j,
        round_trip_j=counters.round_trips * profile.round_trip_j,
        up_j=counters.bytes_up * profile.up_j_per_byte,
        down_j=counters.bytes_down * profile.down_j_per_byte,
        cpu_j=cpu_j,
    )


def standing_j(profile: RadioProfile, seconds: float, *, floor_w: float | None = None) -> float:
    """The sleep floor over ``seconds`` (PSM unless ``floor_w`` says otherwise)."""
    return (profile.floor_w if floor_w is None else floor_w) * seconds


def edrx_floor_w(profile: RadioProfile, cycle_s: float) -> float:
    """Average power idling in eDRX with cycle ``cycle_s`` ([TS24008]: 20.48 s
    to 10485.76 s for NB-IoT): the PSM floor plus one paging occasion per
    cycle.  Reachable by the network every cycle, unlike PSM."""
    if not cycle_s > 0:
        raise UsageError(f"an eDRX cycle is > 0 s, got {cycle_s}")
    return profile.floor_w + profile.paging_j / cycle_s


# -- LoRaWAN ---------------------------------------------------------------------

LORAWAN_OVERHEAD: Final = 13
"""LoRaWAN PHY payload beyond FRMPayload: MHDR 1 + FHDR 7 + FPort 1 + MIC 4."""
LORA_BANDWIDTH_HZ: Final = 125_000
EU868_DUTY_CYCLE: Final = 0.01
"""[ETSI300220] sub-band g1 (868.0-868.6 MHz, the three default channels)."""


def lora_airtime_s(
    payload: int,
    sf: int,
    *,
    bandwidth_hz: int = LORA_BANDWIDTH_HZ,
    coding_rate: int = 1,
    preamble: int = 8,
    explicit_header: bool = True,
    crc: bool = True,
    low_data_rate: bool | None = None,
) -> float:
    """Time on air of one LoRa packet of ``payload`` PHY bytes ([AN1200.13] §4):

    T_sym = 2^SF / BW; T_preamble = (n_preamble + 4.25) T_sym;
    n_payload = 8 + max(ceil((8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE))) (CR + 4), 0)

    ``coding_rate`` 1..4 is 4/5..4/8; ``low_data_rate`` (DE) defaults to on
    when a symbol lasts 16 ms or more (SF11 and SF12 at 125 kHz), as LoRaWAN
    requires."""
    if payload < 0 or sf not in range(6, 13) or coding_rate not in range(1, 5):
        raise UsageError(f"LoRa airtime needs payload >= 0, SF 6..12 and CR 1..4, "
                         f"got {payload} B, SF{sf}, CR {coding_rate}")  # fmt: skip
    symbol_s = (2**sf) / bandwidth_hz
    de = symbol_s >= 0.016 if low_data_rate is None else low_data_rate
    bits = 8 * payload - 4 * sf + 28 + 16 * crc - 20 * (not explicit_header)
    blocks = max(math.ceil(bits / (4 * (sf - 2 * de))), 0)
    symbols = 8 + blocks * (coding_rate + 4)
    return (preamble + 4.25 + symbols) * symbol_s


def _lora_frames(messages: float, size: float, radio: LoraRadio) -> float:
    """Frames for ``messages`` messages of ``size`` bytes in all: at least one
    per message, and as many as fragmentation at the max payload needs.
    Bytes without a message of their own (a query riding on telemetry) join
    a frame that is sent anyway; only each full max payload adds a frame."""
    if not messages:
        return float(math.floor(size / radio.max_payload))
    return max(messages, math.ceil(size / radio.max_payload))


def _lora_energy(
    profile: RadioProfile, radio: LoraRadio, counters: Counters, cpu_j: float
) -> Energy:
    """Each round trip is one uplink and one downlink in RX1 ([RP002] class A);
    a frame costs its LoRaWAN header and preamble, each byte its symbols
    (the linear part of [AN1200.13]'s formula, so the cost is monotone)."""
    symbol_s = (2**radio.sf) / LORA_BANDWIDTH_HZ
    de = radio.sf >= 11
    per_byte_s = symbol_s * 5 * 8 / (4 * (radio.sf - 2 * de))  # CR 4/5
    frame_up_s = lora_airtime_s(LORAWAN_OVERHEAD, radio.sf)
    frame_down_s = lora_airtime_s(LORAWAN_OVERHEAD, radio.sf, crc=False)  # downlinks: no CRC
    frames_up = _lora_frames(counters.round_trips, counters.bytes_up, radio)
    frames_down = _lora_frames(counters.round_trips, counters.bytes_down, radio)
    up_s = frames_up * frame_up_s + counters.bytes_up * per_byte_s
    down_s = frames_down * frame_down_s + counters.bytes_down * per_byte_s
    return Energy(
        wake_j=counters.wakes * profile.wake_j,
        round_trip_j=counters.round_trips * profile.round_trip_j,
        up_j=up_s * radio.tx_w,
        down_j=down_s * radio.rx_w,
        cpu_j=cpu_j,
        airtime_s=up_s,
    )


# -- the profiles ------------------------------------------------------------------

TX_W: Final = 0.5  # [TR45820] 23 dBm
RX_W: Final = 0.08  # [TR45820]
MONITOR_W: Final = 0.04
"""Connected mode waiting for an answer: the receiver on for the downlink
control channel's search spaces about half the time ([TR45820] RX power;
[MEAS] connected-mode traces show this duty)."""
PSM_W: Final = 2.7e-6 * 3.7  # [NRF9160] PSM floor
MCU_W: Final = 0.01
"""An application MCU running (Cortex-M33 class at 64 MHz, ~3 mA at 3.3 V)."""


def _cellular(
    name: str, technology: Technology, coverage: str, *, wake_j: float, rtt_s: float,
    access_j: float, up_kbps: float, down_kbps: float, paging_j: float, source: str,
    rx_w: float = RX_W,
) -> RadioProfile:  # fmt: skip
    """A cellular profile from its link figures: a round trip is the access
    (scheduling request or random-access preambles, with repetitions) plus
    monitoring for ``rtt_s``; a byte is TX (RX) power over the data rate."""
    return RadioProfile(
        name=name,
        technology=technology,
        coverage=coverage,
        wake_j=wake_j,
        round_trip_j=access_j + rtt_s * MONITOR_W * rx_w / RX_W,
        up_j_per_byte=TX_W * 8 / (up_kbps * 1000),
        down_j_per_byte=rx_w * 8 / (down_kbps * 1000),
        floor_w=PSM_W,
        cpu_w=MCU_W,
        paging_j=paging_j,
        source=source,
    )


_NBIOT = "[TR45820] power model and MCL; [NRF9160]/[SARAR4] floor; [MEAS] per-wake cost"
PROFILES: Final[Mapping[str, RadioProfile]] = MappingProxyType({
    # NB-IoT CE0: ~20 kbit/s up (Cat-NB1 single/multi-tone after MAC overhead;
    # fixtures: 20), RTT 1.6 s (fixtures), 1-2 NPRACH preambles; 0.5 J a wake
    # (DESIGN §6, [MEAS]).  A paging occasion: ~50 ms of sync + NPDCCH at RX power.
    "nb-iot/mcl144": _cellular(
        "nb-iot/mcl144", "nb-iot", "CE0, MCL 144 dB", wake_j=0.5, rtt_s=1.6, access_j=0.02,
        up_kbps=16.0, down_kbps=20.0, paging_j=0.004, source=_NBIOT,
    ),
    # CE1: ~8x repetitions: rates /8, RTT ~4 s, more preamble repetitions; [MEAS]
    # put a report at 1-2 J here.
    "nb-iot/mcl154": _cellular(
        "nb-iot/mcl154", "nb-iot", "CE1, MCL 154 dB", wake_j=1.5, rtt_s=4.0, access_j=0.12,
        up_kbps=2.0, down_kbps=2.5, paging_j=0.03, source=_NBIOT,
    ),
    # CE2: up to 128 repetitions: [TR45820]'s >= 160 bit/s at 164 dB (0.2 kbit/s
    # taken), RTT ~10 s; [MEAS] report several J at the coverage edge.
    "nb-iot/mcl164": _cellular(
        "nb-iot/mcl164", "nb-iot", "CE2, MCL 164 dB", wake_j=5.0, rtt_s=10.0, access_j=0.8,
        up_kbps=0.2, down_kbps=0.5, paging_j=0.25, source=_NBIOT,
    ),
    # LTE-M CE mode A (Cat-M1, 1.4 MHz): ~300 kbit/s effective (fixtures), RTT
    # 0.4 s, SR on PUCCH; 0.3 J a wake (fixtures; [MEAS] Lauridsen et al. find
    # LTE-M cheaper than NB-IoT per report at good coverage: shorter on-time).
    "lte-m/mode-a": _cellular(
        "lte-m/mode-a", "lte-m", "CE mode A, MCL ~144 dB", wake_j=0.3, rtt_s=0.4, access_j=0.005,
        up_kbps=300.0, down_kbps=300.0, paging_j=0.003,
        source="[TR45820] power model; [NRF9160]/[SARAR4]; [MEAS] Lauridsen et al.",
    ),
    # LTE-M CE mode B (to MCL ~156 dB): repetitions as NB-IoT CE1.
    "lte-m/mode-b": _cellular(
        "lte-m/mode-b", "lte-m", "CE mode B, MCL ~155 dB", wake_j=1.2, rtt_s=2.0, access_j=0.08,
        up_kbps=10.0, down_kbps=20.0, paging_j=0.02,
        source="[TR45820] power model; [NRF9160]/[SARAR4]; [MEAS] Lauridsen et al.",
    ),
    # LTE Cat-1: a full 20 MHz receiver (~0.2 W RX), no coverage enhancement;
    # 1.2 J a wake (fixtures: RRC set-up plus an inactivity tail of a few s).
    "lte-cat1": _cellular(
        "lte-cat1", "lte-cat1", "normal coverage", wake_j=1.2, rtt_s=0.12, access_j=0.005,
        up_kbps=1000.0, down_kbps=5000.0, paging_j=0.01, rx_w=0.2,
        source="[TR45820]-style power model with a Cat-1 receiver; fixtures/device_types.json",
    ),
    # Wi-Fi (ESP32 class): association + DHCP lease reuse ~1 s at ~0.5 W, RTT
    # 20 ms at RX power, ~10 Mbit/s effective; deep sleep floor.
    "wifi": RadioProfile(
        name="wifi", technology="wifi", coverage="good signal", wake_j=0.5,
        round_trip_j=0.02 * 0.33, up_j_per_byte=0.8 * 8 / 10e6, down_j_per_byte=0.33 * 8 / 10e6,
        floor_w=10e-6 * 3.3, cpu_w=0.1, source="[ESP32]",
    ),
    **{
        f"lorawan/sf{sf}": RadioProfile(
            name=f"lorawan/sf{sf}", technology="lorawan", coverage=f"SF{sf}, EU868, 125 kHz",
            wake_j=0.0, round_trip_j=0.0, up_j_per_byte=0.0, down_j_per_byte=0.0,
            floor_w=1.6e-6 * 3.3, cpu_w=MCU_W, lora=LoraRadio(sf),
            source="[AN1200.13] airtime; [RP002] payloads; [SX1276] power; [ETSI300220]",
        )
        for sf in range(7, 13)
    },
})  # fmt: skip
"""Every profile by name; the NB-IoT ones ordered CE0 < CE1 < CE2 in every cost."""

LINK_PROFILES: Final[Mapping[str, str]] = MappingProxyType({
    "nb-iot": "nb-iot/mcl144", "lte-m": "lte-m/mode-a", "lte": "lte-cat1", "wifi": "wifi",
})  # fmt: skip
"""The profile of each ``link`` of fixtures/device_types.json at good coverage."""


def profile(name: str) -> RadioProfile:
    """The profile called ``name``; UsageError listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"no energy profile {name!r}; known: {', '.join(PROFILES)}") from None


def share_of_budget(joules_per_day: float, budget_j_per_day: float) -> float:
    """``joules_per_day`` as a percentage of ``budget_j_per_day``."""
    if not budget_j_per_day > 0:
        raise UsageError(f"a daily budget is > 0 J, got {budget_j_per_day}")
    return 100.0 * joules_per_day / budget_j_per_day
