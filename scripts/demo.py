"""A demo fleet on this machine: `make demo`.

Provisions a fleet (CA, broker, controller, four camera units), starts Mosquitto with the
fleet's TLS + ACL config, the controller (SQLite) and the four agents, creates a demo login
for each role, raises one deployment that is approved (so a unit records) and one that
waits in the manager's queue, prints the address and the logins, and stops everything
cleanly on Ctrl-C.

Units:
  cam-01  Market Square       the sample real footage, authorised: records
  cam-02  Station Approach    the sample real footage, its PIA awaits the manager
  cam-03  Riverside Park      a synthetic camera whose picture goes black: a P1 callout
  cam-04  Industrial Estate   a synthetic camera on a UPS (a real NUT dummy-ups, when NUT
                              is installed): it reports its battery
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioning import Fleet, write_broker_config  # noqa: E402
from provisioning.files import toml_document  # noqa: E402

BIN = Path(sys.executable).parent
CLIP = ROOT / "samples" / "concourse-720p.avi"  # the sample footage in the repository
PASSPHRASE = "demo evidence passphrase"
CONTRACTOR = "Demo Maintenance Ltd"
USERS = [  # (login, role, password, contractor)
    ("manager", "manager", "manager-demo-1", None),
    ("manager2", "manager", "manager-demo-2", None),
    ("operator", "operator", "operator-demo", None),
    ("datacontroller", "data_controller", "datacontroller-demo", None),
    ("contractor", "contractor", "contractor-demo", CONTRACTOR),
    ("auditor", "auditor", "auditor-demo", None),
]
UNITS = {
    "cam-01": ("Market Square", 51.5033, -0.1196),
    "cam-02": ("Station Approach", 51.5079, -0.1224),
    "cam-03": ("Riverside Park", 51.5055, -0.1160),
    "cam-04": ("Industrial Estate", 51.4990, -0.1300),
}


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def write_toml(path: Path, doc: dict[str, Any]) -> None:
    path.write_bytes(toml_document(doc))


class Demo:
    def __init__(self, work: Path, http_port: int, broker_port: int) -> None:
        self.work = work
        self.http_port = http_port
        self.broker_port = broker_port
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.nut: Any = None
        self.logs = work / "logs"

    # -- processes --------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
            )
        self.procs.append((name, proc))

    def stop(self) -> None:
        # A second Ctrl-C or SIGTERM must not cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            say(f"{name} stopped (exit {code})")
        if self.nut is not None:
            self.nut.stop()
            say("UPS simulator stopped")

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"demo: {name} exited ({proc.returncode}); its log ends:\n{tail}")

    # -- set-up -------------------------------------------------------------------------

    def provision(self) -> Fleet:
        fleet_dir = self.work / "fleet"
        if (fleet_dir / "fleet.toml").exists():
            return Fleet.open(fleet_dir)
        say("provisioning the fleet (CA, broker, controller, 4 units)")
        fleet = Fleet.create(
            fleet_dir,
            name="Demo Borough Council",
            evidence_passphrase=PASSPHRASE,
            broker_port=self.broker_port,
        )
        for unit_id, (site, _, _) in UNITS.items():
            fleet.add_unit(
                unit_id, site=site, model="Deployable column camera", contractor=CONTRACTOR
            )
        return fleet

    def start_broker(self, fleet: Fleet) -> None:
        import getpass

        files = write_broker_config(
            fleet, self.work / "broker", port=self.broker_port, run_as=getpass.getuser(), force=True
        )
        self.spawn("mosquitto", ["mosquitto", "-c", str(files.config)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.broker_port)) == 0:
                    say(f"broker up on 127.0.0.1:{self.broker_port} (TLS, client certificates)")
                    return
            time.sleep(0.1)
        self.check_alive()
        raise SystemExit("demo: the broker did not start")

    def start_ups(self) -> dict[str, Any]:
        try:
            from tests.harness.nut import NutServer, nut_binaries

            nut_binaries()
        except Exception as exc:  # NUT missing: the unit watches a battery folder instead
            say(f"NUT not available ({exc}); cam-04 reports a simulated battery")
            return self.battery_folder()
        self.nut = NutServer(self.work / "ups")
        self.nut.start()
        self.nut.set_state(
            ups_status="OB DISCHRG", battery_charge=64, battery_runtime=2400, input_voltage=0
        )
        say(f"UPS simulator (NUT upsd + dummy-ups) on 127.0.0.1:{self.nut.port}: mains failed")
        return dict(self.nut.agent_power(poll_s=5.0))

    def battery_folder(self) -> dict[str, Any]:
        root = self.work / "power_supply"
        bat = root / "BAT0"
        bat.mkdir(parents=True, exist_ok=True)
        for name, value in {
            "type": "Battery",
            "status": "Discharging",
            "capacity": "64",
            "capacity_level": "Normal",
            "present": "1",
        }.items():
            (bat / name).write_text(value + "\n")
        return {"source": "sysfs", "sysfs_root": str(root), "poll_s": 5.0}

    def start_controller(self, fleet: Fleet) -> Path:
        config = self.work / "controller.toml"
        write_toml(
            config,
            {
                "database_url": f"sqlite+aiosqlite:///{self.work / 'controller.db'}",
                "fleet_dir": str(fleet.root),
                "offline_timeout_s": 60,
                "http": {"host": "127.0.0.1", "port": self.http_port},
                "broker": {"host": "127.0.0.1", "port": self.broker_port},
            },
        )
        env = {"CCTV_CONTROLLER_CONFIG": str(config)}
        ctl = str(BIN / "cctv-controller")
        subprocess.run(
            [ctl, "units", "import", "--fleet", str(fleet.root), "--config", str(config)],
            check=True,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
        )
        existing = subprocess.run(
            [ctl, "user", "list", "--json", "--config", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        for login, role, password, contractor in USERS:
            if f'"{login}"' in existing.stdout:
                continue
            argv = [ctl, "user", "add", login, "--role", role, "--config", str(config)]
            if contractor:
                argv += ["--contractor", contractor]
            subprocess.run(
                argv,
                check=True,
                env={**os.environ, **env, "CCTV_USER_PASSWORD": password},
                stdout=subprocess.DEVNULL,
            )
        self.spawn("controller", [ctl, "serve", "--config", str(config)], env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/healthz", timeout=1
                ):
                    say(f"controller up on http://127.0.0.1:{self.http_port}")
                    return config
            except (urllib.error.URLError, OSError):
                self.check_alive()
                time.sleep(0.3)
        raise SystemExit("demo: the controller did not answer")

    def start_agents(self, fleet: Fleet, power: dict[str, Any]) -> None:
        cameras = {
            "cam-01": str(CLIP),
            "cam-02": str(CLIP),
            "cam-03": "synthetic:?width=960&height=540&fps=15&fault=black",
            "cam-04": "synthetic:?width=960&height=540&fps=15",
        }
        for unit_id, url in cameras.items():
            unit_dir = self.work / "units" / unit_id
            if not unit_dir.exists():
                shutil.copytree(fleet.root / "units" / unit_id / "bundle", unit_dir)
            doc = tomllib.loads((unit_dir / "agent.toml").read_text())
            doc["broker"]["port"] = self.broker_port
            doc["camera"] = {"url": url}
            doc["link"] = {"heartbeat_interval_s": 10.0, "power_interval_s": 30.0}
            doc["storage"] = {**doc.get("storage", {}), "min_free_mb": 256}
            if unit_id == "cam-04":
                doc["power"] = power
            write_toml(unit_dir / "agent.toml", doc)
            self.spawn(
                unit_id, [str(BIN / "cctv-agent"), "run", "--config", str(unit_dir / "agent.toml")]
            )
        say("4 camera agents started")

    # -- deployments through the API, as the operator and a manager would ----------------

    def api(self, login: str) -> Any:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        password = next(p for u, _, p, _ in USERS if u == login)
        base = f"http://127.0.0.1:{self.http_port}"
        req = urllib.request.Request(
            f"{base}/api/login",
            method="POST",
            data=json.dumps({"username": login, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with opener.open(req) as resp:
            csrf = json.loads(resp.read()).get("csrf_token", "")

        def call(method: str, path: str, body: Any = None) -> Any:
            data = None if body is None else json.dumps(body).encode()
            r = urllib.request.Request(
                f"{base}{path}",
                method=method,
                data=data,
                headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
            )
            with opener.open(r) as resp:
                return json.loads(resp.read() or b"null")

        return call

    def deployments(self) -> None:
        operator, manager = self.api("operator"), self.api("manager")
        if operator("GET", "/api/deployments"):
            return
        now = datetime.now(UTC)
        start, end = now - timedelta(minutes=5), now + timedelta(days=60)
        for unit_id in ("cam-01", "cam-02", "cam-03", "cam-04"):
            name, lat, lon = UNITS[unit_id]
            site = operator(
                "POST",
                "/api/locations",
                {
                    "name": name,
                    "address": f"{name}, Demo Borough",
                    "lat": lat,
                    "lon": lon,
                    "geofence_radius_m": 150,
                    "notes": "Demo location",
                },
            )
            request = operator(
                "POST",
                "/api/deployments",
                {
                    "unit_id": unit_id,
                    "location_id": site["id"],
                    "planned_start": start.isoformat(),
                    "planned_end": end.isoformat(),
                    "pia": demo_pia(name, start.date(), end.date()),
                },
            )
            operator("POST", f"/api/deployments/{request['id']}/submit")
            if unit_id != "cam-02":
                manager("POST", f"/api/deployments/{request['id']}/approve", {})
        say("deployments: cam-01, cam-03, cam-04 approved; cam-02's PIA waits for a manager")


def demo_pia(site: str, start: date, end: date) -> dict[str, Any]:
    """A filled-in privacy impact assessment for a demo location deployed from `start` to
    `end`: every date in it counted from those, so the demo works on any day."""

    def before(days: int) -> str:
        return (start - timedelta(days=days)).isoformat()

    year = (start - timedelta(days=61)).year  # of the incident log the evidence comes from
    return {
        "referral": {
            "source": "council_service",
            "referrer": "Community Safety Partnership",
            "received_on": before(60),
        },
        "evidence_of_need": {
            "period_start": before(244),
            "period_end": before(61),
            "items": [
                {"reference": f"CSP-{year}-041", "category": "criminal damage", "count": 11},
                {"reference": f"ASB-{year}-977", "category": "ASB: street drinking", "count": 23},
            ],
            "summary": f"Criminal damage and anti-social behaviour at {site} over six months.",
        },
        "purpose": f"Prevent and detect crime and anti-social behaviour at {site}.",
        "pressing_need": "34 recorded incidents in six months; traders' and residents' reports.",
        "alternatives_considered": "Extra lighting and wardens tried for three months.",
        "affected": f"People passing through {site}; flats above the shops.",
        "collateral_intrusion": [
            {
                "kind": "home",
                "masked": True,
                "description": "First-floor flat windows at the top left.",
            }
        ],
        "masks": [
            {"label": "flat windows", "polygon": [[0.0, 0.0], [0.25, 0.0], [0.25, 0.2], [0.0, 0.2]]}
        ],
        "signage": {
            "description": "Two A3 signs naming the council's CCTV contact point.",
            "erect_by": before(1),
            "remove_by": end.isoformat(),
        },
        "consultation": [
            {
                "party": "Ward councillors and the police neighbourhood team",
                "consulted_on": before(41),
                "outcome": "Supported.",
            }
        ],
        "equality": [
            {"characteristic": c, "impact": "none"}
            for c in (
                "age",
                "disability",
                "gender_reassignment",
                "marriage_civil_partnership",
                "pregnancy_maternity",
                "race",
                "religion_belief",
                "sex",
                "sexual_orientation",
            )
        ],
        "risks": [
            {
                "title": "Intrusion into homes above the shops",
                "description": "Flat windows are in the camera's view.",
                "likelihood": "probable",
                "severity": "significant",
                "measures": [
                    {
                        "description": "Privacy mask over the windows",
                        "effect": "eliminated",
                        "residual_risk": "low",
                    }
                ],
            }
        ],
        "dpo_advice": {
            "dpo_name": "Data Protection Officer",
            "advised_on": before(36),
            "advice": "Proceed with the mask and signage.",
            "outcome": "accepted",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a demo fleet on this machine.")
    parser.add_argument("--fresh", action="store_true", help="start again from nothing")
    parser.add_argument("--port", type=int, default=8080, help="web port (default 8080)")
    args = parser.parse_args()
    work = ROOT / ".demo"
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(exist_ok=True)
    if not CLIP.exists():
        raise SystemExit(f"demo: the sample footage is missing: {CLIP}")
    state = work / "ports.json"
    ports = (
        json.loads(state.read_text())
        if state.exists()
        else {"broker": free_port(8883), "http": free_port(args.port)}
    )
    state.write_text(json.dumps(ports))
    demo = Demo(work, ports["http"], ports["broker"])
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        fleet = demo.provision()
        demo.start_broker(fleet)
        power = demo.start_ups()
        demo.start_controller(fleet)
        demo.start_agents(fleet, power)
        time.sleep(3)
        demo.deployments()
        print(
            f"""
  CCTV fleet demo is running: http://127.0.0.1:{ports["http"]}/

  Sign in as (login / password):
"""
            + "\n".join(f"    {role:16} {login} / {password}" for login, role, password, _ in USERS)
            + f"""

  cam-03's picture is black (an injected fault): see its callout on the contractor's board.
  Logs: {demo.logs}    Evidence passphrase: {PASSPHRASE}
  Press Ctrl-C to stop everything.
""",
            flush=True,
        )
        while True:
            demo.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print()
        say("stopping")
    finally:
        demo.stop()


if __name__ == "__main__":
    main()
