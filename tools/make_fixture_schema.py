"""Generate the fixture schema (v1 and v2) and the example configurations.

    uv run python tools/make_fixture_schema.py          # (re)write the files
    uv run python tools/make_fixture_schema.py --check  # exit 1 if a file is stale

Writes ``fixtures/schema/device.json`` (v1), ``fixtures/schema/device-v2.json``
and ``fixtures/configs/{sensor-default,camera,invalid}.json``.  The output is
deterministic: one key spec per line, keys in declaration order.

Ids are written literally, one block per namespace (device 1-19, net 20-119,
power 120-149, security 150-179, log 180-199, update 200-229, telemetry
230-259, features 260-289, scripts 290-299, camera 400-449, gateway 450-499,
extensions 500-509, sensor channel ``n`` at ``1000 + 32*n + field``).  Once a
version is committed its ids are permanent (DESIGN §3): never renumber, and
give new keys unused ids inside their block.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "fixtures" / "schema"
CONFIG_DIR = ROOT / "fixtures" / "configs"

SENSOR = "nbiot-sensor-r3"
GATEWAY = "pi-gateway-cm4"
CAMERA = "lte-camera-c2"
METER = "ltem-meter-w1"
CELLULAR = [SENSOR, CAMERA, METER]
BATTERY = [SENSOR, CAMERA, METER]

URI = r"^coaps?(\+tcp)?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/\S*)?$"
IPV4 = r"^([0-9]{1,3}\.){3}[0-9]{1,3}$"
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
LEVELS = ["error", "warn", "info", "debug", "trace"]

Spec = dict[str, Any]


class Keys:
    """Key specs in declaration order; refuses duplicate paths and ids."""

    def __init__(self) -> None:
        self.specs: dict[str, Spec] = {}
        self.ids: dict[int, str] = {}

    def add(self, path: str, key_id: int, kind: str, description: str, **fields: Any) -> None:
        if path in self.specs:
            raise ValueError(f"duplicate path {path}")
        if key_id in self.ids:
            raise ValueError(f"id {key_id} of {path} already used by {self.ids[key_id]}")
        self.ids[key_id] = path
        spec: Spec = {"id": key_id, "type": kind}
        spec.update(fields)
        spec["description"] = description
        self.specs[path] = spec


# ---------------------------------------------------------------- bulk texts

ON_BOOT = """-- runs once after every reboot, before the first uplink
local cfg = edgecfg.config()
if cfg.power.mode == "survival" then
  radio.disable_until(rtc.now() + cfg.power.wake.interval_s)
  return
end
for name, s in pairs(cfg.sensors) do
  if s.enabled then
    sensor.open(name, { bus = s.bus, pin = s.pin })
    sensor.schedule(name, s.sample_interval_s)
  end
end
log.info("boot complete, agent " .. edgecfg.version())
"""

ON_WAKE = """-- runs on every radio wake; keep it short, the modem is on
local b = battery.percent()
if b < edgecfg.config().power.battery.low_pct then
  edgecfg.local_override("net.uplink.interval_s", 21600)
end
local q = telemetry.queued()
if q > 0 then
  telemetry.flush({ max_records = 24, piggyback_config = true })
end
"""

GATEWAY_RULES = """// gateway rules: evaluated for every message from the local mesh
rule("door opened at night", function (msg) {
  if (msg.cluster !== "closures" || msg.state !== "open") return;
  const hour = new Date(msg.ts * 1000).getUTCHours();
  if (hour >= 22 || hour < 6) {
    publish("alerts/" + msg.device, { level: "warn", text: msg.friendly_name + " opened" });
  }
});

rule("battery low", function (msg) {
  if (typeof msg.battery === "number" && msg.battery < 15) {
    publish("maintenance/battery", { device: msg.device, battery: msg.battery });
  }
});

rule("climate summary", function (msg) {
  if (msg.cluster !== "climate") return;
  window("climate", 900).add(msg.temperature);
  if (window("climate", 900).full()) {
    publish("summary/climate", window("climate", 900).stats());
  }
});
"""

DASHBOARD = """<section class="site">
  <h1>{{ site.name }} <small>{{ devices | length }} devices</small></h1>
  <table>
    <tr><th>Device</th><th>Last seen</th><th>Battery</th><th>Link</th></tr>
    {% for d in devices | sort(attribute="friendly_name") %}
    <tr class="{{ 'stale' if d.last_seen_s > 7200 else 'ok' }}">
      <td>{{ d.friendly_name }}</td>
      <td>{{ d.last_seen_s | duration }}</td>
      <td>{{ d.battery | default('-') }}{% if d.battery is number %}%{% endif %}</td>
      <td>{{ d.linkquality | default('-') }}</td>
    </tr>
    {% endfor %}
  </table>
</section>
"""

TELEMETRY_RULES = """{# derived metrics, rendered once per report #}
{% set t = sensors.temperature %}
{% if t is defined and t.samples %}
dew_point: {{ (t.mean - ((100 - sensors.humidity.mean) / 5)) | round(1) }}
temp_spread: {{ (t.max - t.min) | round(2) }}
{% endif %}
battery_days_left: {{ (power.battery.remaining_j / power.daily_j) | int }}
"""

OVERLAY = (
    "{{ device.name }} | {{ now | strftime('%Y-%m-%d %H:%M:%S') }}\n"
    "{{ temperature | round(1) }}°C  bat {{ battery_pct }}%"
)


def transform(channel: str, scale: float) -> str:
    return (
        f"// {channel}: raw ADC/bus reading -> engineering units\n"
        "float v = raw * cal.gain + cal.offset;\n"
        f"if (isnan(v)) return NAN;\n"
        f"return roundf(v * {scale:g}f) / {scale:g}f;\n"
    )


# ---------------------------------------------------------------- v1


def v1_keys() -> Keys:
    k = Keys()
    _device(k)
    _net(k)
    _power(k)
    _security(k)
    _log(k)
    _update(k)
    _telemetry(k)
    _features(k)
    _scripts(k)
    _sensors(k)
    _camera(k)
    _gateway(k)
    _extensions(k)
    return k


def _device(k: Keys) -> None:
    k.add(
        "device.id",
        1,
        "str",
        "Stable device identity; equals the OSCORE identity bound to the device.",
        required=True,
        priority="critical",
        min=3,
        max=63,
        pattern=r"^[a-z0-9][a-z0-9-]{2,62}$",
    )
    k.add(
        "device.name", 2, "str", "Human-readable name shown by operator tools.", default="", max=64
    )
    k.add(
        "device.site",
        3,
        "str",
        "Site the device is installed at (null: unassigned).",
        default=None,
        nullable=True,
        max=64,
    )
    k.add(
        "device.tags",
        4,
        "array",
        "Operator tags used for group selection.",
        items="str",
        default=[],
        max=16,
    )
    k.add(
        "device.timezone",
        5,
        "str",
        "IANA time zone for local schedules.",
        default="UTC",
        max=64,
        pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$",
    )
    k.add(
        "device.location.lat",
        6,
        "float",
        "Latitude of the installation.",
        default=None,
        nullable=True,
        min=-90.0,
        max=90.0,
        unit="deg",
    )
    k.add(
        "device.location.lon",
        7,
        "float",
        "Longitude of the installation.",
        default=None,
        nullable=True,
        min=-180.0,
        max=180.0,
        unit="deg",
    )
    k.add(
        "device.location.alt_m",
        8,
        "float",
        "Altitude above sea level.",
        default=None,
        nullable=True,
        min=-500.0,
        max=9000.0,
        unit="m",
    )
    k.add(
        "device.location.source",
        9,
        "str",
        "Where the location came from; a GNSS fix may set it.",
        default="manual",
        enum=["none", "manual", "gnss", "cell"],
        local=True,
        merge="last-writer-wins",
    )
    k.add(
        "device.labels",
        10,
        "map",
        "Free-form labels (name -> text) copied into telemetry.",
        default={},
    )


def _net(k: Keys) -> None:
    # uplink schedule
    k.add(
        "net.uplink.interval_s",
        20,
        "int",
        "Seconds between telemetry uplinks.",
        default=3600,
        min=10,
        max=86400,
        unit="s",
        priority="critical",
        local={"allowed": True, "min": 600, "max": 86400},
        merge="device-wins-within-bounds",
    )
    k.add(
        "net.uplink.jitter_pct",
        21,
        "int",
        "Random spread of the uplink time, in percent of the interval.",
        default=10,
        min=0,
        max=50,
        unit="%",
    )
    k.add(
        "net.uplink.confirmable",
        22,
        "bool",
        "Send uplinks as confirmable CoAP messages.",
        default=True,
    )
    k.add(
        "net.uplink.max_payload_bytes",
        23,
        "int",
        "Largest uplink payload before splitting.",
        default=256,
        min=16,
        max=1024,
        unit="B",
    )
    k.add(
        "net.uplink.batch_max",
        24,
        "int",
        "Most records per uplink.",
        default=8,
        min=1,
        max=64,
        merge="min",
    )
    k.add(
        "net.uplink.mode",
        25,
        "str",
        "When to send: on schedule, on change, or both.",
        default="periodic",
        enum=["periodic", "on-change", "hybrid"],
        local={"enum": ["periodic", "hybrid"]},
        merge="device-wins-within-bounds",
    )
    k.add(
        "net.uplink.priority_queue",
        26,
        "bool",
        "Send alarms before routine records.",
        default=True,
        agent=">=1.3",
    )
    # CoAP
    k.add(
        "net.coap.server_uri",
        30,
        "str",
        "Gateway the agent syncs with.",
        required=True,
        priority="critical",
        default="coaps://gw.edgecfg.example:5684",
        max=255,
        pattern=URI,
    )
    k.add(
        "net.coap.block_size",
        31,
        "int",
        "RFC 7959 block size for Block1/Block2 transfers.",
        default=512,
        enum=[16, 32, 64, 128, 256, 512, 1024],
        unit="B",
        priority="critical",
        local={"enum": [16, 32, 64, 128, 256, 512]},
        merge="device-wins-within-bounds",
    )
    k.add(
        "net.coap.ack_timeout_s",
        32,
        "float",
        "RFC 7252 ACK_TIMEOUT.",
        default=2.0,
        min=1.0,
        max=60.0,
        unit="s",
    )
    k.add(
        "net.coap.ack_random_factor",
        33,
        "float",
        "RFC 7252 ACK_RANDOM_FACTOR.",
        default=1.5,
        min=1.0,
        max=4.0,
    )
    k.add(
        "net.coap.max_retransmit", 34, "int", "RFC 7252 MAX_RETRANSMIT.", default=4, min=0, max=10
    )
    k.add(
        "net.coap.nstart",
        35,
        "int",
        "RFC 7252 NSTART: outstanding interactions per peer.",
        default=1,
        min=1,
        max=4,
    )
    k.add(
        "net.coap.default_leisure_s",
        36,
        "float",
        "RFC 7252 DEFAULT_LEISURE for multicast.",
        default=5.0,
        min=0.5,
        max=30.0,
        unit="s",
    )
    k.add(
        "net.coap.probing_rate_bps",
        37,
        "int",
        "RFC 7252 PROBING_RATE.",
        default=1,
        min=1,
        max=10000,
        unit="B/s",
    )
    k.add(
        "net.coap.max_age_s",
        38,
        "int",
        "Max-Age assumed when a response has none.",
        default=60,
        min=0,
        max=86400,
        unit="s",
    )
    k.add(
        "net.coap.observe",
        39,
        "bool",
        "Observe the config resource while awake (RFC 7641).",
        default=True,
    )
    k.add("net.coap.port", 40, "int", "Local UDP port.", default=5684, min=1, max=65535)
    k.add(
        "net.coap.non_confirmable_telemetry",
        41,
        "bool",
        "Send routine telemetry as NON.",
        default=False,
    )
    k.add(
        "net.coap.exchange_lifetime_s",
        42,
        "int",
        "RFC 7252 EXCHANGE_LIFETIME.",
        default=247,
        min=10,
        max=3600,
        unit="s",
    )
    k.add(
        "net.coap.dtls_cid",
        43,
        "bool",
        "Use DTLS connection ids (RFC 9146) to survive NAT rebinding.",
        default=True,
        firmware=">=3.0",
    )
    k.add(
        "net.coap.prefer_tcp",
        44,
        "bool",
        "Use CoAP over TCP (RFC 8323) when available.",
        default=False,
        hardware=[GATEWAY, CAMERA],
    )
    # retry and backoff
    k.add(
        "net.retry.max_attempts",
        50,
        "int",
        "Attempts per sync before giving up until the next wake.",
        default=5,
        min=0,
        max=20,
    )
    k.add(
        "net.retry.backoff_base_s",
        51,
        "float",
        "First backoff delay.",
        default=30.0,
        min=0.5,
        max=600.0,
        unit="s",
    )
    k.add(
        "net.retry.backoff_max_s",
        52,
        "float",
        "Longest backoff delay.",
        default=3600.0,
        min=1.0,
        max=86400.0,
        unit="s",
        merge="max",
    )
    k.add(
        "net.retry.backoff_factor",
        53,
        "float",
        "Backoff growth per failed attempt.",
        default=2.0,
        min=1.0,
        max=4.0,
    )
    k.add(
        "net.retry.jitter",
        54,
        "float",
        "Fraction of each delay that is randomised.",
        default=0.25,
        min=0.0,
        max=1.0,
    )
    k.add(
        "net.retry.give_up_after_s",
        55,
        "int",
        "Stop retrying a transfer after this long.",
        default=86400,
        min=60,
        max=604800,
        unit="s",
    )
    # power saving on the cellular link
    k.add(
        "net.psm.enabled",
        60,
        "bool",
        "Request Power Saving Mode (3GPP TS 24.008).",
        default=True,
        hardware=CELLULAR,
    )
    k.add(
        "net.psm.tau_s",
        61,
        "int",
        "Requested periodic TAU timer (T3412 extended).",
        default=86400,
        min=60,
        max=35712000,
        unit="s",
        hardware=CELLULAR,
        local={"allowed": True, "min": 3600, "max": 604800},
        merge="device-wins-within-bounds",
    )
    k.add(
        "net.psm.active_time_s",
        62,
        "int",
        "Requested active time (T3324).",
        default=10,
        min=0,
        max=11160,
        unit="s",
        hardware=CELLULAR,
        merge="min",
    )
    k.add("net.edrx.enabled", 63, "bool", "Request extended DRX.", default=False, hardware=CELLULAR)
    k.add(
        "net.edrx.cycle_s",
        64,
        "float",
        "Requested eDRX cycle.",
        default=81.92,
        enum=[5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68, 655.36, 1310.72, 2621.44],
        unit="s",
        hardware=CELLULAR,
    )
    k.add(
        "net.edrx.ptw_s",
        65,
        "float",
        "Requested paging time window.",
        default=2.56,
        min=1.28,
        max=20.48,
        unit="s",
        hardware=CELLULAR,
    )
    k.add(
        "net.rai.enabled",
        66,
        "bool",
        "Use release assistance to drop the RRC connection early.",
        default=True,
        hardware=CELLULAR,
        firmware=">=3.1",
    )
    # cellular
    k.add(
        "net.cell.apn",
        70,
        "str",
        "Access point name.",
        default="iot.example.net",
        max=63,
        pattern=r"^[A-Za-z0-9.-]*$",
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.apn_user",
        71,
        "str",
        "APN user name, if the operator wants one.",
        default=None,
        nullable=True,
        max=64,
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.apn_password",
        72,
        "str",
        "APN password, if the operator wants one.",
        default=None,
        nullable=True,
        max=64,
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.plmn",
        73,
        "str",
        "Force this PLMN (MCC+MNC); null: automatic selection.",
        default=None,
        nullable=True,
        pattern=r"^[0-9]{5,6}$",
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.rat",
        74,
        "str",
        "Radio access technology.",
        default="auto",
        enum=["nb-iot", "lte-m", "lte", "auto"],
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.bands",
        75,
        "array",
        "LTE bands to scan, in order; empty: all supported.",
        items="int",
        default=[3, 8, 20],
        max=16,
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.ip_type",
        76,
        "str",
        "PDN type.",
        default="ipv4v6",
        enum=["ipv4", "ipv6", "ipv4v6", "non-ip"],
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.roaming", 77, "bool", "Allow roaming networks.", default=False, hardware=CELLULAR
    )
    k.add(
        "net.cell.coverage_enhancement",
        78,
        "int",
        "Highest CE level to accept (0-2).",
        default=2,
        enum=[0, 1, 2],
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.rsrp_min_dbm",
        79,
        "int",
        "Postpone non-critical transfers below this RSRP.",
        default=-120,
        min=-140,
        max=-44,
        unit="dBm",
        hardware=CELLULAR,
        local={"allowed": True, "min": -130, "max": -100},
        merge="device-wins-within-bounds",
    )
    k.add(
        "net.cell.mtu",
        80,
        "int",
        "Link MTU.",
        default=1280,
        min=128,
        max=1500,
        unit="B",
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.sim_pin",
        81,
        "str",
        "SIM PIN; null when the SIM has none.",
        default=None,
        nullable=True,
        pattern=r"^[0-9]{4,8}$",
        priority="critical",
        hardware=CELLULAR,
    )
    k.add(
        "net.cell.scan_timeout_s",
        82,
        "int",
        "Give up a network scan after this long.",
        default=180,
        min=10,
        max=600,
        unit="s",
        hardware=CELLULAR,
    )
    # Wi-Fi and Ethernet (gateway)
    k.add(
        "net.wifi.enabled",
        85,
        "bool",
        "Use Wi-Fi as a fallback uplink.",
        default=False,
        hardware=[GATEWAY],
    )
    k.add("net.wifi.ssid", 86, "str", "Network name.", default="", max=32, hardware=[GATEWAY])
    k.add(
        "net.wifi.psk",
        87,
        "str",
        "WPA2 passphrase; null for an open network.",
        default=None,
        nullable=True,
        min=8,
        max=63,
        priority="critical",
        hardware=[GATEWAY],
    )
    k.add(
        "net.wifi.country",
        88,
        "str",
        "Regulatory domain.",
        default="DE",
        pattern=r"^[A-Z]{2}$",
        hardware=[GATEWAY],
    )
    k.add(
        "net.wifi.hidden",
        89,
        "bool",
        "The network does not broadcast its SSID.",
        default=False,
        hardware=[GATEWAY],
    )
    k.add(
        "net.eth.dhcp", 90, "bool", "Configure Ethernet by DHCP.", default=True, hardware=[GATEWAY]
    )
    k.add(
        "net.eth.address",
        91,
        "str",
        "Static address with prefix length, when DHCP is off.",
        default=None,
        nullable=True,
        pattern=r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$",
        hardware=[GATEWAY],
    )
    k.add(
        "net.eth.gateway",
        92,
        "str",
        "Static default route, when DHCP is off.",
        default=None,
        nullable=True,
        pattern=IPV4,
        hardware=[GATEWAY],
    )
    k.add(
        "net.eth.mtu",
        93,
        "int",
        "Ethernet MTU.",
        default=1500,
        min=576,
        max=9000,
        unit="B",
        hardware=[GATEWAY],
    )
    # name and time services
    k.add(
        "net.dns.servers",
        100,
        "array",
        "DNS resolvers, in order.",
        items="str",
        default=["9.9.9.9", "1.1.1.1"],
        max=4,
    )
    k.add(
        "net.ntp.servers",
        101,
        "array",
        "NTP servers, in order.",
        items="str",
        default=["pool.ntp.org"],
        min=1,
        max=4,
    )
    k.add(
        "net.ntp.interval_s",
        102,
        "int",
        "Seconds between clock syncs.",
        default=86400,
        min=60,
        max=604800,
        unit="s",
        merge="max",
    )
    k.add(
        "net.ntp.max_drift_ms",
        103,
        "int",
        "Resync early when the measured drift exceeds this.",
        default=1000,
        min=10,
        max=60000,
        unit="ms",
    )


def _power(k: Keys) -> None:
    k.add(
        "power.mode",
        120,
        "str",
        "Overall power profile.",
        default="balanced",
        enum=["performance", "balanced", "saver", "survival"],
        local={"enum": ["balanced", "saver", "survival"]},
        merge="device-wins-within-bounds",
    )
    k.add(
        "power.battery.chemistry",
        121,
        "str",
        "Cell chemistry, for the state-of-charge model.",
        default="lithium",
        enum=["alkaline", "lithium", "li-ion", "lifepo4"],
        hardware=BATTERY,
    )
    k.add(
        "power.battery.capacity_mah",
        122,
        "int",
        "Nominal capacity.",
        default=3000,
        min=100,
        max=40000,
        unit="mAh",
        hardware=BATTERY,
    )
    k.add(
        "power.battery.low_pct",
        123,
        "int",
        "Enter saver behaviour below this charge.",
        default=20,
        min=0,
        max=100,
        unit="%",
        hardware=BATTERY,
    )
    k.add(
        "power.battery.critical_pct",
        124,
        "int",
        "Enter survival behaviour below this charge.",
        default=5,
        min=0,
        max=50,
        unit="%",
        hardware=BATTERY,
    )
    k.add(
        "power.battery.report_interval_s",
        125,
        "int",
        "Seconds between battery reports.",
        default=86400,
        min=600,
        max=604800,
        unit="s",
        hardware=BATTERY,
    )
    k.add(
        "power.budget_j_per_day",
        126,
        "number",
        "Daily energy budget; null: no budget enforced.",
        default=None,
        nullable=True,
        min=0.1,
        max=100000,
        unit="J",
    )
    k.add("power.sleep.deep_enabled", 127, "bool", "Enter deep sleep between wakes.", default=True)
    k.add(
        "power.sleep.min_awake_ms",
        128,
        "int",
        "Stay awake at least this long after a wake.",
        default=200,
        min=10,
        max=60000,
        unit="ms",
        merge="max",
    )
    k.add(
        "power.wake.interval_s",
        129,
        "int",
        "Seconds between scheduled wakes.",
        default=86400,
        min=60,
        max=604800,
        unit="s",
        local={"allowed": True, "min": 3600, "max": 604800},
        merge="min",
    )
    k.add(
        "power.wake.window_s",
        130,
        "int",
        "How long a wake may keep the radio on.",
        default=30,
        min=1,
        max=600,
        unit="s",
    )
    k.add(
        "power.brownout_mv",
        131,
        "int",
        "Shut down cleanly below this supply voltage.",
        default=2100,
        min=1800,
        max=3600,
        unit="mV",
        priority="critical",
    )
    k.add(
        "power.low_battery.uplink_interval_s",
        132,
        "int",
        "Uplink interval while the battery is low.",
        default=21600,
        min=600,
        max=604800,
        unit="s",
        merge="max",
        hardware=BATTERY,
    )
    k.add(
        "power.solar.enabled",
        133,
        "bool",
        "A solar panel charges the pack.",
        default=False,
        hardware=[CAMERA],
    )
    k.add(
        "power.solar.min_charge_ma",
        134,
        "int",
        "Charging current below which the panel counts as dark.",
        default=50,
        min=0,
        max=2000,
        unit="mA",
        hardware=[CAMERA],
    )


def _security(k: Keys) -> None:
    crit: Spec = {"priority": "critical"}
    k.add(
        "security.psk_identity",
        150,
        "str",
        "DTLS PSK identity presented to the gateway.",
        required=True,
        min=1,
        max=128,
        pattern=r"^[A-Za-z0-9._-]{1,128}$",
        **crit,
    )
    k.add(
        "security.psk",
        151,
        "bytes",
        "DTLS pre-shared key (provisioned, never shown).",
        min=16,
        max=32,
        **crit,
    )
    k.add(
        "security.oscore.enabled",
        152,
        "bool",
        "Protect requests with OSCORE (RFC 8613).",
        default=True,
        **crit,
    )
    k.add("security.oscore.sender_id", 153, "bytes", "OSCORE Sender ID.", max=7, **crit)
    k.add("security.oscore.recipient_id", 154, "bytes", "OSCORE Recipient ID.", max=7, **crit)
    k.add(
        "security.oscore.id_context",
        155,
        "bytes",
        "OSCORE ID Context; null when unused.",
        nullable=True,
        max=8,
        **crit,
    )
    k.add(
        "security.oscore.replay_window",
        156,
        "int",
        "Replay window size in messages.",
        default=32,
        min=32,
        max=4096,
        **crit,
    )
    k.add(
        "security.tls.min_version",
        157,
        "str",
        "Lowest (D)TLS version accepted.",
        default="1.2",
        enum=["1.2", "1.3"],
        **crit,
    )
    k.add(
        "security.tls.ciphersuites",
        158,
        "array",
        "Allowed cipher suites, preferred first.",
        items="str",
        default=["TLS_PSK_WITH_AES_128_CCM_8", "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"],
        min=1,
        max=8,
        **crit,
    )
    k.add(
        "security.key_rotation_days",
        159,
        "int",
        "Rotate keys after this many days.",
        default=365,
        min=1,
        max=3650,
        unit="d",
        **crit,
    )
    k.add(
        "security.debug_port",
        160,
        "bool",
        "Enable the SWD/UART debug port.",
        default=False,
        local={"allowed": False},
        **crit,
    )
    k.add(
        "security.insecure_allowed",
        161,
        "bool",
        "Accept an unauthenticated gateway (lab use only).",
        default=False,
        local=False,
        **crit,
    )
    k.add(
        "security.allowed_operators",
        162,
        "array",
        "Operator identities allowed to write this device.",
        items="str",
        default=["ops"],
        max=32,
        **crit,
    )
    k.add(
        "security.revoked_key_ids",
        163,
        "array",
        "Key ids the device must refuse.",
        items="int",
        default=[],
        max=64,
        **crit,
    )


def _log(k: Keys) -> None:
    k.add(
        "log.level",
        180,
        "str",
        "Lowest level kept in the local log.",
        default="warn",
        enum=LEVELS,
        local={"enum": ["error", "warn", "info"]},
        merge="last-writer-wins",
    )
    k.add(
        "log.format",
        181,
        "str",
        "Encoding of stored log records.",
        default="cbor",
        enum=["text", "json", "cbor"],
    )
    k.add(
        "log.buffer_kib",
        182,
        "int",
        "RAM ring buffer for log records.",
        default=16,
        min=1,
        max=4096,
        unit="KiB",
    )
    k.add("log.remote.enabled", 183, "bool", "Ship log records to a collector.", default=False)
    k.add(
        "log.remote.uri",
        184,
        "str",
        "Log collector; null: the sync gateway.",
        default=None,
        nullable=True,
        max=255,
        pattern=URI,
    )
    k.add(
        "log.remote.level",
        185,
        "str",
        "Lowest level shipped to the collector.",
        default="error",
        enum=LEVELS,
        merge="last-writer-wins",
    )
    k.add(
        "log.rotate.max_files",
        186,
        "int",
        "Rotated log files kept in flash.",
        default=4,
        min=1,
        max=32,
    )
    k.add(
        "log.rotate.max_kib",
        187,
        "int",
        "Size at which a log file is rotated.",
        default=256,
        min=4,
        max=65536,
        unit="KiB",
    )
    k.add("log.modules", 188, "map", "Per-module level overrides (module -> level).", default={})
    k.add("log.include_timestamps", 189, "bool", "Prefix records with the RTC time.", default=True)
    k.add(
        "log.rate_limit_per_min",
        190,
        "int",
        "Most records per minute; 0: unlimited.",
        default=60,
        min=0,
        max=6000,
        local=True,
        merge="min",
    )


def _update(k: Keys) -> None:
    k.add(
        "update.channel",
        200,
        "str",
        "Firmware release channel.",
        default="stable",
        enum=["stable", "beta", "canary"],
        priority="critical",
    )
    k.add("update.auto", 201, "bool", "Install updates without operator approval.", default=True)
    k.add(
        "update.window.start",
        202,
        "str",
        "Local time an update may start.",
        default="02:00",
        pattern=HHMM,
    )
    k.add(
        "update.window.end",
        203,
        "str",
        "Local time after which no update starts.",
        default="05:00",
        pattern=HHMM,
    )
    k.add(
        "update.max_download_kib_per_day",
        204,
        "int",
        "Daily download budget for firmware.",
        default=512,
        min=0,
        max=1048576,
        unit="KiB",
        local={"allowed": True, "min": 64, "max": 4096},
        merge="device-wins-within-bounds",
    )
    k.add("update.require_mains", 205, "bool", "Only update on external power.", default=False)
    k.add(
        "update.min_battery_pct",
        206,
        "int",
        "Only update above this charge.",
        default=30,
        min=0,
        max=100,
        unit="%",
        merge="max",
        hardware=BATTERY,
    )
    k.add(
        "update.delta",
        207,
        "bool",
        "Download binary deltas instead of full images.",
        default=True,
        agent=">=1.4",
    )
    k.add(
        "update.url",
        208,
        "str",
        "Firmware repository.",
        default="coaps://fw.edgecfg.example/fw",
        max=255,
        pattern=URI,
    )
    k.add(
        "update.check_interval_s",
        209,
        "int",
        "Seconds between update checks.",
        default=604800,
        min=3600,
        max=2592000,
        unit="s",
        merge="max",
    )
    k.add(
        "update.rollback_on_fail",
        210,
        "bool",
        "Boot the previous image when health checks fail.",
        default=True,
    )
    k.add(
        "update.pinned_version",
        211,
        "str",
        "Stay on this firmware version; null: follow the channel.",
        default=None,
        nullable=True,
        pattern=r"^[0-9]+(\.[0-9]+){0,2}$",
    )
    k.add(
        "update.health_check_s",
        212,
        "int",
        "Health-check period after an update.",
        default=120,
        min=10,
        max=3600,
        unit="s",
    )
    k.add(
        "update.signing_key_ids",
        213,
        "array",
        "Ids of the keys firmware must be signed with.",
        items="int",
        default=[1],
        min=1,
        max=4,
        priority="critical",
    )


def _telemetry(k: Keys) -> None:
    k.add("telemetry.enabled", 230, "bool", "Send telemetry.", default=True)
    k.add(
        "telemetry.format",
        231,
        "str",
        "Telemetry encoding.",
        default="senml+cbor",
        enum=["senml+cbor", "cbor", "json"],
    )
    k.add(
        "telemetry.interval_s",
        232,
        "int",
        "Seconds between telemetry reports.",
        default=3600,
        min=60,
        max=86400,
        unit="s",
        local={"allowed": True, "min": 300, "max": 86400},
        merge="device-wins-within-bounds",
    )
    k.add("telemetry.batch_max", 233, "int", "Most records per report.", default=24, min=1, max=256)
    k.add(
        "telemetry.piggyback_config",
        234,
        "bool",
        "Ask for config deltas on telemetry POSTs (?cfg=).",
        default=True,
        agent=">=1.3",
    )
    k.add("telemetry.include.rssi", 235, "bool", "Report signal strength.", default=True)
    k.add("telemetry.include.battery", 236, "bool", "Report battery state.", default=True)
    k.add(
        "telemetry.include.mcu_temperature",
        237,
        "bool",
        "Report MCU die temperature.",
        default=False,
    )
    k.add("telemetry.include.uptime", 238, "bool", "Report uptime.", default=True)
    k.add(
        "telemetry.include.config_etag",
        239,
        "bool",
        "Report the applied config ETag.",
        default=True,
    )
    k.add(
        "telemetry.aggregation",
        240,
        "str",
        "How samples between reports are summarised.",
        default="mean",
        enum=["none", "mean", "minmax", "histogram"],
    )
    k.add(
        "telemetry.histogram_bins",
        241,
        "array",
        "Bin edges for histogram aggregation.",
        items="float",
        default=[0.0, 10.0, 20.0, 30.0, 40.0],
        max=32,
    )
    k.add(
        "telemetry.max_queue",
        242,
        "int",
        "Records kept while offline.",
        default=500,
        min=1,
        max=10000,
    )
    k.add(
        "telemetry.drop_policy",
        243,
        "str",
        "Which records go when the queue is full.",
        default="oldest",
        enum=["oldest", "newest"],
    )
    k.add(
        "telemetry.custom",
        244,
        "map",
        "Custom SenML fields (name -> value) added to every report.",
        default={},
    )
    k.add(
        "telemetry.rules_template",
        245,
        "str",
        "Jinja template computing derived metrics.",
        default=TELEMETRY_RULES,
        max=16384,
        priority="bulk",
    )
    k.add(
        "telemetry.min_interval_s",
        246,
        "int",
        "Never report more often than this.",
        default=60,
        min=1,
        max=3600,
        unit="s",
        merge="max",
    )
    k.add(
        "telemetry.tags",
        247,
        "array",
        "Values attached to every report (any scalar).",
        items="any",
        default=[],
        max=8,
    )


def _features(k: Keys) -> None:
    k.add(
        "features.block_resume",
        260,
        "bool",
        "Resume interrupted Block2 transfers.",
        default=True,
        agent=">=1.1",
    )
    k.add(
        "features.delta_sync",
        261,
        "bool",
        "Fetch config deltas (?from=).",
        default=True,
        agent=">=1.2",
    )
    k.add(
        "features.piggyback",
        262,
        "bool",
        "Piggyback config on telemetry responses.",
        default=True,
        agent=">=1.3",
    )
    k.add(
        "features.critical_first",
        263,
        "bool",
        "Fetch the critical class first on poor links.",
        default=True,
        agent=">=1.5",
    )
    k.add(
        "features.local_rules",
        264,
        "bool",
        "Run local adaptation rules.",
        default=False,
        agent=">=2.0",
        local=True,
        merge="last-writer-wins",
    )
    k.add(
        "features.compression",
        265,
        "str",
        "Compress bulk transfers.",
        default="none",
        enum=["none", "lz4"],
        agent=">=2.1",
        firmware=">=3.0",
    )
    k.add(
        "features.q_block",
        266,
        "bool",
        "Use Q-Block transfers (RFC 9177).",
        default=False,
        agent=">=2.2, <3",
        firmware=">=3.2",
    )
    k.add(
        "features.gnss",
        267,
        "bool",
        "Take a GNSS fix on the first wake of the day.",
        default=False,
        hardware=[CAMERA, METER],
    )
    k.add(
        "features.experimental.adaptive_interval",
        268,
        "bool",
        "Stretch intervals on poor coverage.",
        default=False,
        agent=">=2.1",
    )
    k.add(
        "features.experimental.edge_inference",
        269,
        "bool",
        "Run the on-device vision model.",
        default=False,
        hardware=[CAMERA],
        agent=">=2.0",
        firmware=">=1.4",
    )


def _scripts(k: Keys) -> None:
    k.add("scripts.enabled", 290, "bool", "Run the device scripts.", default=True)
    k.add(
        "scripts.on_boot",
        291,
        "str",
        "Lua script run after every reboot.",
        default=ON_BOOT,
        max=16384,
        priority="bulk",
    )
    k.add(
        "scripts.on_wake",
        292,
        "str",
        "Lua script run on every radio wake.",
        default=ON_WAKE,
        max=16384,
        priority="bulk",
    )
    k.add(
        "scripts.on_alarm",
        293,
        "str",
        "Lua script run when a threshold trips; null: none.",
        default=None,
        nullable=True,
        max=16384,
        priority="bulk",
    )
    k.add(
        "scripts.max_runtime_ms",
        294,
        "int",
        "Abort a script that runs longer.",
        default=500,
        min=10,
        max=60000,
        unit="ms",
    )


# name, unit, low, high, models, bus, enabled by default
SENSORS: list[tuple[str, str, float, float, list[str], str, bool]] = [
    ("temperature", "Cel", -40.0, 125.0, ["sht31", "bme280", "ds18b20"], "i2c", True),
    ("humidity", "%RH", 0.0, 100.0, ["sht31", "bme280"], "i2c", True),
    ("pressure", "hPa", 300.0, 1100.0, ["bme280", "lps22"], "i2c", True),
    ("co2", "ppm", 0.0, 10000.0, ["scd41", "sunrise"], "i2c", False),
    ("pm25", "ug/m3", 0.0, 1000.0, ["sps30", "pmsa003"], "uart", False),
    ("vibration", "g", 0.0, 16.0, ["lis2dh12", "adxl345"], "spi", False),
    ("light", "lx", 0.0, 100000.0, ["veml7700", "bh1750"], "i2c", True),
    ("soil_moisture", "%", 0.0, 100.0, ["capacitive-v2"], "adc", False),
]


def _sensors(k: Keys) -> None:
    for n, (name, unit, low, high, models, bus, enabled) in enumerate(SENSORS):
        base, p = 1000 + 32 * n, f"sensors.{name}"
        span = high - low
        k.add(f"{p}.enabled", base, "bool", f"Sample the {name} sensor.", default=enabled)
        k.add(
            f"{p}.model",
            base + 1,
            "str",
            f"Fitted {name} sensor part.",
            default=models[0],
            enum=models,
        )
        k.add(f"{p}.label", base + 2, "str", "Display name in telemetry.", default=name, max=32)
        k.add(
            f"{p}.sample_interval_s",
            base + 3,
            "int",
            f"Seconds between {name} samples.",
            default=300,
            min=1,
            max=86400,
            unit="s",
            local={"allowed": True, "min": 60, "max": 86400},
            merge="device-wins-within-bounds",
        )
        k.add(
            f"{p}.samples_per_report",
            base + 4,
            "int",
            "Samples aggregated into one record.",
            default=12,
            min=1,
            max=64,
        )
        k.add(
            f"{p}.threshold.low",
            base + 5,
            "float",
            "Alarm below this value; null: no alarm.",
            default=None,
            nullable=True,
            min=low,
            max=high,
            unit=unit,
        )
        k.add(
            f"{p}.threshold.high",
            base + 6,
            "float",
            "Alarm above this value; null: no alarm.",
            default=None,
            nullable=True,
            min=low,
            max=high,
            unit=unit,
        )
        k.add(
            f"{p}.threshold.hysteresis",
            base + 7,
            "float",
            "Clear an alarm only this far back.",
            default=round(span / 100, 3),
            min=0.0,
            max=span / 10,
            unit=unit,
        )
        k.add(
            f"{p}.calibration.offset",
            base + 8,
            "number",
            "Added to every reading.",
            default=0,
            min=-span / 10,
            max=span / 10,
            unit=unit,
            local=True,
            merge="last-writer-wins",
        )
        k.add(
            f"{p}.calibration.gain",
            base + 9,
            "float",
            "Multiplies every reading.",
            default=1.0,
            min=0.5,
            max=2.0,
        )
        k.add(
            f"{p}.calibration.points",
            base + 10,
            "array",
            "Reference points (raw, true, raw, true, ...) for piecewise calibration.",
            items="float",
            default=[],
            max=16,
        )
        k.add(
            f"{p}.calibration.date",
            base + 11,
            "str",
            "Date of the last calibration.",
            default=None,
            nullable=True,
            pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        )
        k.add(
            f"{p}.filter.kind",
            base + 12,
            "str",
            "Smoothing filter.",
            default="ewma",
            enum=["none", "median", "ewma", "kalman"],
        )
        k.add(
            f"{p}.filter.window",
            base + 13,
            "int",
            "Samples in the median window.",
            default=5,
            min=1,
            max=32,
        )
        k.add(
            f"{p}.filter.alpha",
            base + 14,
            "float",
            "EWMA smoothing factor.",
            default=0.3,
            min=0.0,
            max=1.0,
        )
        k.add(
            f"{p}.report.on_change",
            base + 15,
            "bool",
            "Report early when the value moves.",
            default=False,
        )
        k.add(
            f"{p}.report.delta",
            base + 16,
            "float",
            "Movement that counts as a change.",
            default=round(span / 50, 3),
            min=0.0,
            max=span,
            unit=unit,
            merge="max",
        )
        k.add(
            f"{p}.bus",
            base + 17,
            "str",
            "Bus the sensor sits on.",
            default=bus,
            enum=["i2c", "spi", "adc", "onewire", "uart"],
        )
        k.add(
            f"{p}.pin",
            base + 18,
            "str",
            "Enable/chip-select pin ('!' inverts, '^' pulls up).",
            default=f"PA{n}",
            pattern=r"^[!^~]*P[A-H][0-9]{1,2}$",
        )
        k.add(
            f"{p}.transform",
            base + 19,
            "str",
            "C expression mapping a raw reading to units.",
            default=transform(name, 100.0 if span < 1000 else 1.0),
            max=4096,
            priority="bulk",
        )


def _camera(k: Keys) -> None:
    cam: Spec = {"hardware": [CAMERA]}
    k.add("camera.enabled", 400, "bool", "Capture images.", default=True, **cam)
    k.add(
        "camera.resolution",
        401,
        "str",
        "Capture resolution.",
        default="1280x720",
        enum=["320x240", "640x480", "1280x720", "1920x1080"],
        local={"enum": ["320x240", "640x480", "1280x720"]},
        merge="device-wins-within-bounds",
        **cam,
    )
    k.add(
        "camera.jpeg_quality",
        402,
        "int",
        "JPEG quality.",
        default=80,
        min=1,
        max=100,
        unit="%",
        local={"allowed": True, "min": 30, "max": 95},
        merge="device-wins-within-bounds",
        **cam,
    )
    k.add(
        "camera.fps",
        403,
        "float",
        "Frame rate while recording.",
        default=1.0,
        min=0.1,
        max=30.0,
        unit="1/s",
        **cam,
    )
    k.add(
        "camera.rotate",
        404,
        "int",
        "Rotate images.",
        default=0,
        enum=[0, 90, 180, 270],
        unit="deg",
        **cam,
    )
    k.add("camera.flip", 405, "bool", "Mirror images.", default=False, **cam)
    k.add(
        "camera.night_mode",
        406,
        "str",
        "Monochrome IR mode.",
        default="auto",
        enum=["auto", "on", "off"],
        **cam,
    )
    k.add("camera.ir_led", 407, "bool", "Use the IR illuminator at night.", default=True, **cam)
    k.add(
        "camera.exposure.mode",
        408,
        "str",
        "Exposure control.",
        default="auto",
        enum=["auto", "manual", "backlight"],
        **cam,
    )
    k.add(
        "camera.exposure.compensation",
        409,
        "float",
        "Exposure bias.",
        default=0.0,
        min=-2.0,
        max=2.0,
        unit="EV",
        **cam,
    )
    k.add(
        "camera.exposure.shutter_us",
        410,
        "int",
        "Fixed shutter time in manual mode.",
        default=None,
        nullable=True,
        min=100,
        max=1000000,
        unit="us",
        **cam,
    )
    k.add(
        "camera.white_balance",
        411,
        "str",
        "White balance preset.",
        default="auto",
        enum=["auto", "daylight", "cloudy", "tungsten", "fluorescent"],
        **cam,
    )
    k.add("camera.motion.enabled", 412, "bool", "Trigger captures on motion.", default=True, **cam)
    k.add(
        "camera.motion.sensitivity",
        413,
        "int",
        "Motion sensitivity.",
        default=60,
        min=0,
        max=100,
        unit="%",
        local={"allowed": True, "min": 20, "max": 90},
        merge="device-wins-within-bounds",
        **cam,
    )
    k.add(
        "camera.motion.zones",
        414,
        "array",
        "Motion zones as 'x,y,w,h' in pixels.",
        items="str",
        default=["0,0,1280,720"],
        max=8,
        **cam,
    )
    k.add(
        "camera.motion.cooldown_s",
        415,
        "int",
        "Quiet time after a motion event.",
        default=30,
        min=0,
        max=3600,
        unit="s",
        merge="max",
        **cam,
    )
    k.add(
        "camera.snapshot.interval_s",
        416,
        "int",
        "Seconds between timed snapshots; 0: none.",
        default=3600,
        min=0,
        max=86400,
        unit="s",
        **cam,
    )
    k.add(
        "camera.upload.policy",
        417,
        "str",
        "When images are uploaded.",
        default="batched",
        enum=["immediate", "batched", "on-wifi"],
        **cam,
    )
    k.add(
        "camera.upload.max_kbps",
        418,
        "int",
        "Upload rate cap.",
        default=512,
        min=8,
        max=50000,
        unit="kbit/s",
        merge="min",
        **cam,
    )
    k.add(
        "camera.upload.chunk_bytes",
        419,
        "int",
        "Block1 size for image uploads.",
        default=512,
        enum=[256, 512, 1024],
        unit="B",
        **cam,
    )
    k.add(
        "camera.retention.max_images",
        420,
        "int",
        "Images kept on the SD card.",
        default=2000,
        min=0,
        max=100000,
        **cam,
    )
    k.add(
        "camera.retention.max_age_h",
        421,
        "int",
        "Delete images older than this.",
        default=168,
        min=1,
        max=8760,
        unit="h",
        **cam,
    )
    k.add(
        "camera.overlay.enabled",
        422,
        "bool",
        "Burn a text overlay into images.",
        default=True,
        **cam,
    )
    k.add(
        "camera.overlay.template",
        423,
        "str",
        "Jinja template of the overlay text.",
        default=OVERLAY,
        max=1024,
        priority="bulk",
        **cam,
    )
    k.add(
        "camera.privacy_mask",
        424,
        "array",
        "Masked rectangles as flat x,y,w,h integers.",
        items="int",
        default=[],
        max=64,
        **cam,
    )
    k.add(
        "camera.ai.enabled",
        425,
        "bool",
        "Run on-device object detection.",
        default=False,
        agent=">=2.0",
        firmware=">=1.4",
        **cam,
    )
    k.add(
        "camera.ai.model",
        426,
        "str",
        "Detection model as name@version.",
        default="person-det@1.2",
        pattern=r"^[a-z0-9_-]+@[0-9]+\.[0-9]+$",
        agent=">=2.0",
        **cam,
    )
    k.add(
        "camera.ai.threshold",
        427,
        "float",
        "Detection confidence threshold.",
        default=0.6,
        min=0.0,
        max=1.0,
        agent=">=2.0",
        **cam,
    )
    k.add(
        "camera.ai.labels",
        428,
        "array",
        "Labels that trigger an upload.",
        items="str",
        default=["person", "vehicle"],
        min=1,
        max=16,
        agent=">=2.0",
        **cam,
    )
    k.add(
        "camera.ai.weights_digest",
        429,
        "bytes",
        "SHA-256 of the model weights; null: unchecked.",
        nullable=True,
        min=32,
        max=32,
        agent=">=2.0",
        **cam,
    )


def _gateway(k: Keys) -> None:
    gw: Spec = {"hardware": [GATEWAY]}
    k.add(
        "gateway.mesh.enabled", 450, "bool", "Run the local mesh coordinator.", default=True, **gw
    )
    k.add(
        "gateway.mesh.protocol",
        451,
        "str",
        "Mesh radio protocol.",
        default="zigbee",
        enum=["thread", "zigbee", "ble-mesh"],
        **gw,
    )
    k.add(
        "gateway.mesh.channel",
        452,
        "int",
        "IEEE 802.15.4 channel.",
        default=20,
        min=11,
        max=26,
        **gw,
    )
    k.add("gateway.mesh.pan_id", 453, "int", "PAN id.", default=6754, min=0, max=65534, **gw)
    k.add("gateway.mesh.extended_pan_id", 454, "bytes", "Extended PAN id.", min=8, max=8, **gw)
    k.add(
        "gateway.mesh.network_key",
        455,
        "bytes",
        "Mesh network key (provisioned).",
        min=16,
        max=16,
        priority="critical",
        **gw,
    )
    k.add(
        "gateway.mesh.permit_join",
        456,
        "bool",
        "Let new devices join (set from the site).",
        default=False,
        local=True,
        merge="last-writer-wins",
        **gw,
    )
    k.add(
        "gateway.mesh.tx_power_dbm",
        457,
        "int",
        "Radio transmit power.",
        default=5,
        min=-20,
        max=20,
        unit="dBm",
        **gw,
    )
    k.add(
        "gateway.mesh.max_children",
        458,
        "int",
        "Most directly attached end devices.",
        default=32,
        min=1,
        max=200,
        **gw,
    )
    k.add("gateway.broker.enabled", 459, "bool", "Run the local MQTT broker.", default=True, **gw)
    k.add(
        "gateway.broker.port", 460, "int", "Broker TCP port.", default=1883, min=1, max=65535, **gw
    )
    k.add(
        "gateway.broker.base_topic",
        461,
        "str",
        "Topic prefix for mesh devices.",
        default="edgecfg",
        max=64,
        pattern=r"^[a-z0-9_/-]+$",
        **gw,
    )
    k.add(
        "gateway.broker.retain", 462, "bool", "Publish device states retained.", default=False, **gw
    )
    k.add(
        "gateway.broker.qos",
        463,
        "int",
        "MQTT QoS for device states.",
        default=1,
        enum=[0, 1, 2],
        **gw,
    )
    k.add(
        "gateway.broker.max_clients",
        464,
        "int",
        "Most concurrent MQTT clients.",
        default=64,
        min=1,
        max=10000,
        **gw,
    )
    k.add("gateway.broker.tls", 465, "bool", "Require TLS on the broker.", default=False, **gw)
    k.add(
        "gateway.broker.allow_anonymous",
        466,
        "bool",
        "Accept clients without credentials.",
        default=False,
        priority="critical",
        **gw,
    )
    k.add(
        "gateway.cache.max_devices",
        467,
        "int",
        "Devices whose config is cached locally.",
        default=1000,
        min=1,
        max=100000,
        **gw,
    )
    k.add(
        "gateway.cache.max_mib",
        468,
        "int",
        "Cache size limit.",
        default=256,
        min=16,
        max=4096,
        unit="MiB",
        **gw,
    )
    k.add(
        "gateway.forward.upstream_uri",
        469,
        "str",
        "Upstream gateway for store-and-forward.",
        default="coaps://cloud.edgecfg.example:5684",
        max=255,
        pattern=URI,
        **gw,
    )
    k.add(
        "gateway.forward.batch_s",
        470,
        "int",
        "Batch upstream traffic for this long.",
        default=10,
        min=1,
        max=3600,
        unit="s",
        **gw,
    )
    k.add(
        "gateway.forward.store_and_forward",
        471,
        "bool",
        "Queue upstream traffic while offline.",
        default=True,
        **gw,
    )
    k.add(
        "gateway.rules_script",
        472,
        "str",
        "JavaScript rules run on mesh messages.",
        default=GATEWAY_RULES,
        max=65536,
        priority="bulk",
        **gw,
    )
    k.add(
        "gateway.dashboard_template",
        473,
        "str",
        "Jinja/HTML template of the site dashboard.",
        default=DASHBOARD,
        max=65536,
        priority="bulk",
        **gw,
    )
    k.add(
        "gateway.devices",
        474,
        "map",
        "Mesh devices by IEEE address (Zigbee2MQTT style: friendly_name, retain, ...).",
        default={},
        **gw,
    )
    k.add(
        "gateway.ha.discovery",
        475,
        "bool",
        "Publish Home Assistant discovery messages.",
        default=True,
        **gw,
    )
    k.add(
        "gateway.ha.prefix",
        476,
        "str",
        "Home Assistant discovery prefix.",
        default="homeassistant",
        pattern=r"^[a-z0-9_]+$",
        **gw,
    )
    k.add(
        "gateway.serial.port",
        477,
        "str",
        "Serial device of the mesh radio.",
        default="/dev/ttyACM0",
        pattern=r"^/dev/\S+$",
        **gw,
    )
    k.add(
        "gateway.serial.baud",
        478,
        "int",
        "Serial speed of the mesh radio.",
        default=115200,
        enum=[9600, 57600, 115200, 230400, 460800],
        unit="Bd",
        **gw,
    )
    k.add(
        "gateway.ota.concurrency",
        479,
        "int",
        "Mesh devices updated at once.",
        default=4,
        min=1,
        max=32,
        merge="min",
        **gw,
    )


def _extensions(k: Keys) -> None:
    k.add(
        "ext.vendor",
        500,
        "any",
        "Vendor extension value, passed through untouched.",
        default=None,
        nullable=True,
    )
    k.add(
        "ext.vendor_blob", 501, "bytes", "Opaque vendor blob; null: none.", nullable=True, max=4096
    )
    k.add("ext.schema_hint", 502, "any", "Free value for migration tooling.", default=0)


# ---------------------------------------------------------------- v2


def v2_keys() -> tuple[Keys, dict[str, int]]:
    """v1 evolved: new keys with new ids, one key retired, one renamed keeping its id."""
    old = v1_keys()
    k = Keys()
    retired = {"net.cell.roaming": old.specs["net.cell.roaming"]["id"]}
    for path, spec in old.specs.items():
        if path in retired:
            continue
        fields = {f: v for f, v in spec.items() if f not in ("id", "type", "description")}
        if path == "log.buffer_kib":
            k.add(
                "log.ring_buffer_kib",
                spec["id"],
                spec["type"],
                spec["description"],
                renamed_from=path,
                **fields,
            )
            continue
        k.add(path, spec["id"], spec["type"], spec["description"], **fields)
    k.add(
        "net.cell.roaming_policy",
        83,
        "str",
        "Roaming: never, home-only fallback, or always.",
        default="never",
        enum=["never", "fallback", "always"],
        hardware=CELLULAR,
    )
    k.add(
        "net.coap.edhoc",
        45,
        "bool",
        "Establish OSCORE contexts with EDHOC (RFC 9528).",
        default=False,
        agent=">=2.2",
        priority="critical",
    )
    k.add(
        "telemetry.compression",
        248,
        "str",
        "Compress telemetry batches.",
        default="none",
        enum=["none", "lz4"],
        agent=">=2.2",
    )
    k.add(
        "power.solar.mppt",
        135,
        "bool",
        "Track the panel's maximum power point.",
        default=True,
        hardware=[CAMERA],
    )
    for n, (name, *_rest) in enumerate(SENSORS):
        k.add(
            f"sensors.{name}.alarm.latch",
            1000 + 32 * n + 20,
            "bool",
            "Keep an alarm raised until acknowledged.",
            default=False,
        )
    return k, retired


# ---------------------------------------------------------------- documents


def schema_text(version: int, keys: Keys, retired: dict[str, int] | None = None) -> str:
    head = {
        "name": "edgecfg-device",
        "version": version,
        "description": "Configuration of edgecfg field devices (NB-IoT sensors, LTE cameras, "
        "LTE-M meters, Pi gateways). Generated by tools/make_fixture_schema.py.",
    }
    lines = ["{"]
    lines += [f"  {json.dumps(f)}: {json.dumps(v, ensure_ascii=False)}," for f, v in head.items()]
    lines.append('  "keys": {')
    entries = [
        f"    {json.dumps(p)}: {json.dumps(s, ensure_ascii=False)}" for p, s in keys.specs.items()
    ]
    lines.append(",\n".join(entries))
    lines.append("  }" + ("," if retired else ""))
    if retired:
        lines.append(f'  "retired": {json.dumps(retired)}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def full_config(keys: Keys, hardware: str, values: dict[str, Any]) -> dict[str, Any]:
    """Every default that applies to ``hardware`` (JSON can't hold bytes: those stay unset)."""
    tree: dict[str, Any] = {}
    for path, spec in sorted(keys.specs.items()):
        if "hardware" in spec and hardware not in spec["hardware"]:
            continue
        if path in values:
            value = values[path]
        elif "default" in spec:
            value = spec["default"]
        else:
            continue
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def configs(keys: Keys) -> dict[str, Any]:
    sensor = full_config(
        keys,
        SENSOR,
        {
            "device.id": "nbs-000001",
            "device.name": "Orchard north, row 4",
            "device.site": "site-17",
            "device.tags": ["orchard", "eu-west"],
            "security.psk_identity": "nbs-000001",
            "net.coap.block_size": 64,
            "net.cell.rat": "nb-iot",
            "net.cell.bands": [8, 20],
            "net.uplink.interval_s": 86400,
            "power.mode": "saver",
            "sensors.temperature.threshold.low": -5.0,
            "sensors.temperature.calibration.offset": -0.4,
            "sensors.temperature.calibration.date": "2024-03-18",
        },
    )
    camera = full_config(
        keys,
        CAMERA,
        {
            "device.id": "cam-00042",
            "device.name": "Gate camera",
            "device.location.lat": 47.3769,
            "device.location.lon": 8.5417,
            "security.psk_identity": "cam-00042",
            "net.cell.rat": "lte",
            "net.uplink.interval_s": 900,
            "power.solar.enabled": True,
            "power.battery.chemistry": "li-ion",
            "power.battery.capacity_mah": 10000,
            "camera.resolution": "1920x1080",
            "camera.ai.enabled": True,
            "camera.motion.zones": ["0,200,1920,880", "1500,0,420,400"],
            "camera.upload.policy": "immediate",
        },
    )
    broken: dict[str, Any] = json.loads(json.dumps(sensor))
    breakage: list[tuple[str, object]] = [
        ("device.id", None),  # removed: a required key is missing
        ("net.uplink.interval_s", 5),  # below min
        ("net.uplink.interval", 60),  # not declared (a typo)
        ("net.coap.block_size", 100),  # not in enum
        ("net.coap.server_uri", "http://gw.example"),  # pattern
        ("log.level", "verbose"),  # enum
        ("sensors.temperature.enabled", "yes"),  # type
        ("sensors.humidity.calibration.points", [1.0, "two"]),  # array element type
        ("device.name", "x" * 100),  # string too long
        ("net.cell.apn", None),  # null where not nullable
        ("power.battery.low_pct", 150),  # above max
        ("device.tags", ["t"] * 20),  # array too long
    ]
    for path, value in breakage:
        node = broken
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        if path == "device.id":
            del node[leaf]
        else:
            node[leaf] = value
    return {"sensor-default.json": sensor, "camera.json": camera, "invalid.json": broken}


def outputs() -> dict[Path, str]:
    v1 = v1_keys()
    v2, retired = v2_keys()
    files = {
        SCHEMA_DIR / "device.json": schema_text(1, v1),
        SCHEMA_DIR / "device-v2.json": schema_text(2, v2, retired),
    }
    for name, tree in configs(v1).items():
        files[CONFIG_DIR / name] = json.dumps(tree, indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = 0
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale += 1
        if check:
            print(f"stale: {path.relative_to(ROOT)}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
