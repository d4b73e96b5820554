"""kill -9 soak: a mixed workload against a daemon that is SIGKILLed at random moments (as root).

One worker runs a random mix of create, start, stop, commit, rm, import, tag, rmi, build and
pull (from a registry on loopback) through the API, and keeps a ledger of every request the
daemon answered. The daemon's network driver is ``bridge``, on a bridge and nft table of the
soak's own: containers run without a network (``NetworkDisabled``), on the bridge, or on the
bridge with a published port (an httpd on 127.0.0.1). A killer SIGKILLs the daemon after a
random 0.2 to 2.5 s; the daemon is restarted on the same root (``-r=false``) and, after every
restart, the checks run:

- every container and image whose request was answered is there and consistent: inspect
  works, a running one still runs (live restore) with its address and published port, an
  image's history resolves, and a published port still answers through the daemon;
- the request in flight at the kill either happened fully (then it is whole, and joins the
  ledger) or left no trace (a name it held is free again; a build's intermediate containers
  are gone);
- an image of the ledger still mounts and starts: a container made on it runs ``true``;
- nothing is orphaned (for every container id the soak has seen that is not running): no
  mount below the soak's directory, cgroup, host veth, bridge port, nft map element or rule
  beyond the table's own, monitor process (a process holding a file of the container), process
  left in a killed daemon's session, or loop device on a file below the soak's directory. A
  container's network namespace lives as long as a process in it or a mount of it, and takes
  its veth pair with it: it is covered by those.

Prints the kills, the checks and every violation; exit status 1 on any violation.
``--json`` prints one JSON line (tests/api/test_soak.py runs 20 kills).

    .venv/bin/python bench/soak.py --kills 200        # the figure in docs/reliability.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx
from pyroute2 import IPRoute

from moorage.api.cli.harness import DaemonProcess, drivers_config
from moorage.core.testing.network import quiet_host_port
from moorage.core.testing.registry.servers import RegistryServer
from moorage.drivers.network.bridge import host_veth_name, links

LONG = ["sleep", "100000"]
#: a container with a published port: answers its own name on 80/tcp
SERVE = ["sh", "-c", "mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"]
#: how a container is networked: no network, the bridge, the bridge and a published port
NETWORKS = {"none": {"NetworkDisabled": True}, "bridge": {}, "published": {"ExposedPorts": {"80/tcp": {}}}}
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
#: the kernel and the daemon's background threads take a moment to unmount and delete links
SETTLE_SECONDS = 10
#: the ledger's caps (past them the worker removes its oldest containers / tags): each check
#: walks the ledger, and an unbounded one made the checks, and so the kills, slow down without end
MAX_CONTAINERS, MAX_IMAGES = 40, 60


def small_tar(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"{name}\n".encode()
        info = tarfile.TarInfo(f"soak/{name}")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_context(tag: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"FROM busybox\nRUN echo {tag} > /built\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def stream_ok(response: httpx.Response) -> bool:
    """A JSON progress stream (pull, import) or build output that did not end in an error."""
    text = response.text
    return response.status_code == 200 and '"error"' not in text and "Error build" not in text


class Violation(Exception):
    pass


def summary(seconds: list[float]) -> dict:
    """Mean, median and largest of some durations (seconds), or {} for none."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {"mean": round(sum(ordered) / len(ordered), 1), "median": round(ordered[len(ordered) // 2], 1),
            "max": round(ordered[-1], 1)}


def nft_table(table: str) -> list[dict] | None:
    """The nftables JSON of ``ip <table>``, or None if there is no such table."""
    done = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True)
    return json.loads(done.stdout)["nftables"] if done.returncode == 0 else None


def nft_mappings(items: list[dict]) -> set[tuple[str, int]]:
    """The published ports in the table's DNAT maps: ``(host ip or "", host port)``."""
    found = set()
    for item in items:
        for element in item.get("map", {}).get("elem", []):
            key = element[0]
            if isinstance(key, dict) and "concat" in key:
                found.add((str(key["concat"][0]), int(key["concat"][1])))
            else:
                found.add(("", int(key)))
    return found


def nft_rules(items: list[dict]) -> int:
    return sum(1 for item in items if "rule" in item)


def processes_holding(prefix: str) -> dict[int, set[str]]:
    """pid -> the paths below ``prefix`` the process has open."""
    held: dict[int, set[str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith(prefix):
                    held.setdefault(int(proc.name), set()).add(target)
        except OSError:
            continue  # gone, or a kernel thread
    return held


def session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[3])  # after the command: state, ppid, pgrp, session


def loop_devices_below(prefix: str) -> list[str]:
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip().startswith(prefix):
                found.append(f"/dev/{backing.parent.parent.name}")
        except OSError:
            continue
    return found


class Soak:
    def __init__(self, base: Path, seed: int, max_containers: int = MAX_CONTAINERS,
                 max_images: int = MAX_IMAGES) -> None:
        self.base = base
        self.rng = random.Random(seed)
        #: past these, the worker's next requests remove the oldest containers / images of the ledger
        self.max_containers, self.max_images = max_containers, max_images
        self.registry = RegistryServer(base / "registry")
        suffix = os.urandom(4).hex()  # names of the host's: unique to this run, whatever the seed
        self.bridge, self.table = f"msoak{suffix}", f"moorage-soak-{suffix}"
        network = (f'[network]\ndriver = "bridge"\n[network.bridge]\nname = "{self.bridge}"\n'
                   f'table = "{self.table}"\nip_forward = false\n')
        self.daemon = DaemonProcess(base, drivers_config(registry=self.registry.url) + network, ["-r=false"], tcp=False)
        self.root = self.daemon.root
        #: the rules of the table a fresh daemon makes: more after a restart is a leak
        self.table_rules = 0
        #: pids of the daemons killed: nothing may stay in their sessions
        self.killed_daemons: set[int] = set()
        self.port_checks = 0
        #: after the last check: (veths on the bridge, nft elements of published ports), and the most seen
        self.network_seen = (0, 0)
        self.network_most = (0, 0)
        # the ledger: what the daemon answered
        self.containers: dict[str, dict] = {}  # name -> {"id", "running", "cmd"}
        self.images: dict[str, str] = {"busybox:latest": ""}  # repo:tag -> image id
        self.seen_ids: set[str] = set()
        #: the host veth name each seen id would have on the bridge -> the id
        self.veth_owners: dict[str, str] = {}
        self.imported: set[str] = set()  # ids of imported images: a file, no shell to run
        self.inflight: tuple | None = None
        self.counter = 0
        self.answered = 0
        self.violations: list[str] = []
        self.checks = 0
        self.kills = 0
        #: removals the caps made (answered), the largest ledger after a check, and the time of each check
        self.trimmed = {"containers": 0, "images": 0}
        self.ledger_most = (0, 0)
        self.check_seconds: list[float] = []
        self.restart_seconds: list[float] = []

    # -- the daemon -------------------------------------------------------------------------
    def start_daemon(self) -> None:
        try:
            self.daemon.start()
        except RuntimeError as exc:
            raise Violation(f"the daemon did not restart: {exc}") from None

    def kill_daemon(self) -> None:
        self.daemon.proc.send_signal(signal.SIGKILL)
        self.daemon.proc.wait(30)
        self.killed_daemons.add(self.daemon.proc.pid)

    def client(self, timeout: float = 60) -> httpx.Client:
        return self.daemon.client(timeout=timeout)

    def setup(self) -> None:
        self.start_daemon()
        items = nft_table(self.table)
        if items is None:
            raise Violation(f"the bridge driver made no nft table {self.table}")
        self.table_rules = nft_rules(items)
        self.daemon.import_busybox()
        with self.client(120) as api:
            self.images["busybox:latest"] = api.get("/images/busybox/json").json()["id"]
            api.post(f"/images/{self.images['busybox:latest']}/tag", params={"repo": "soakbase"}).raise_for_status()
            pushed = api.post("/images/soakbase/push", headers={"X-Registry-Auth": "e30="})
            assert stream_ok(pushed), pushed.text
            api.delete("/images/soakbase")

    # -- the workload -----------------------------------------------------------------------
    def name(self, kind: str) -> str:
        self.counter += 1
        return f"soak-{kind}{self.counter}"

    def pick(self, predicate) -> str | None:
        names = sorted(n for n, c in self.containers.items() if predicate(c))
        return self.rng.choice(names) if names else None

    def image_tags(self) -> list[str]:
        """The ledger's tags a removal may take, oldest first (busybox stays: containers use it)."""
        return [t for t in self.images if not t.startswith("busybox:")]

    def one_operation(self, api: httpx.Client) -> None:
        ops = ["create"] * 4 + ["start"] * 3 + ["stop", "rm", "rm", "commit", "import", "tag", "rmi", "pull"]
        ops += ["build"] if self.rng.random() < 0.3 else []
        op = self.rng.choice(ops)
        # the ledger stays bounded (and so does each check) by the workload's own removals: ordinary
        # answered requests, checked like the others
        if len(self.containers) > self.max_containers:
            op = "trim-container"
        elif len(self.image_tags()) > self.max_images:
            op = "trim-image"
        if op == "trim-container":
            name = next(iter(self.containers))  # the ledger keeps the order containers were made in
            self.inflight = ("rm", name)
            if api.delete(f"/containers/{name}", params={"force": 1}).status_code == 204:
                del self.containers[name]
                self.trimmed["containers"] += 1
        elif op == "trim-image":
            tag = self.image_tags()[0]
            self.inflight = ("rmi", tag)
            if api.delete(f"/images/{tag}").status_code in (200, 404):
                del self.images[tag]
                self.trimmed["images"] += 1
        elif op == "create":
            name, net = self.name("c"), self.rng.choice(sorted(NETWORKS))
            cmd = SERVE if net == "published" else self.rng.choice([LONG, ["true"]])
            self.inflight = ("create", name, cmd, net)
            answer = api.post("/containers/create", params={"name": name},
                              json={"Image": "busybox", "Cmd": cmd, **NETWORKS[net]})
            if answer.status_code == 201:
                self.containers[name] = {"id": answer.json()["Id"], "running": False, "cmd": cmd, "net": net}
                # its full id, for the orphan checks: it may be removed before the next check sees it
                self.see(api.get(f"/containers/{name}/json").json()["ID"])
        elif op == "start":
            name = self.pick(lambda c: not c["running"] and c["cmd"] != ["true"])
            if name:
                self.inflight = ("start", name)
                body = None
                if self.containers[name]["net"] == "published":
                    port = quiet_host_port(self.rng)
                    body = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}
                if api.post(f"/containers/{name}/start", json=body).status_code == 204:
                    self.containers[name]["running"] = True
        elif op == "stop":
            name = self.pick(lambda c: c["running"])
            if name:
                self.inflight = ("stop", name)
                if api.post(f"/containers/{name}/stop", params={"t": 1}).status_code == 204:
                    self.containers[name]["running"] = False
        elif op == "rm":
            name = self.pick(lambda c: not c["running"])
            if name:
                self.inflight = ("rm", name)
                if api.delete(f"/containers/{name}").status_code == 204:
                    del self.containers[name]
        elif op in ("commit", "import", "build", "pull", "tag"):
            repo = self.name(op)
            self.inflight = ("image", repo)
            if op == "commit":
                name = self.pick(lambda c: True)
                if not name:
                    return
                answer = api.post("/commit", params={"container": name, "repo": repo})
                ok = answer.status_code == 201
            elif op == "import":
                ok = stream_ok(api.post("/images/create", params={"fromSrc": "-", "repo": repo},
                                        content=small_tar(repo)))
            elif op == "build":
                ok = stream_ok(api.post("/build", params={"t": repo, "rm": 1}, content=build_context(repo),
                                        headers={"Content-Type": "application/x-tar"}))
            elif op == "pull":
                answer = api.post("/images/create", params={"fromImage": "soakbase", "tag": "latest"})
                ok = stream_ok(answer) and api.post("/images/soakbase/tag", params={"repo": repo}).status_code == 201
            else:
                source = self.rng.choice(sorted(self.images))
                ok = api.post(f"/images/{source}/tag", params={"repo": repo}).status_code == 201
            if ok:
                self.images[f"{repo}:latest"] = api.get(f"/images/{repo}/json").json()["id"]
                if op == "import":
                    self.imported.add(self.images[f"{repo}:latest"])
        elif op == "rmi":
            tags = sorted(t for t in self.images if not t.startswith("busybox:"))
            if tags:
                tag = self.rng.choice(tags)
                self.inflight = ("rmi", tag)
                answer = api.delete(f"/images/{tag}")
                if answer.status_code == 200 or answer.status_code == 404:
                    del self.images[tag]
        self.inflight = None
        self.answered += 1

    def work(self, stop: threading.Event) -> None:
        try:
            with self.client(120) as api:
                while not stop.is_set():
                    self.one_operation(api)
        except (httpx.TransportError, ValueError):
            pass  # killed under the request: self.inflight says which

    # -- the checks ---------------------------------------------------------------------------
    def violation(self, message: str) -> None:
        self.violations.append(message)
        print(f"  VIOLATION: {message}", flush=True)

    def see(self, cid: str) -> None:
        self.seen_ids.add(cid)
        self.veth_owners[host_veth_name(self.bridge, cid)] = cid

    def check(self, api: httpx.Client) -> None:
        self.checks += 1
        self.settle_inflight(api)
        rows = api.get("/containers/json", params={"all": 1}).json()
        listed = {row["Names"][0].lstrip("/"): row for row in rows if row.get("Names")}
        for name, expected in sorted(self.containers.items()):
            answer = api.get(f"/containers/{name}/json")
            if answer.status_code != 200:
                self.violation(f"container {name} (answered) is gone: {answer.status_code} {answer.text.strip()}")
                continue
            data = answer.json()
            self.see(data["ID"])
            if data["State"]["Running"] != expected["running"]:
                self.violation(f"container {name}: Running is {data['State']['Running']}, the answered request "
                               f"left it {expected['running']}")
            elif expected["running"]:
                self.check_network_settings(name, expected["net"], data["NetworkSettings"] or {})
        for name in sorted(set(listed) - set(self.containers)):
            self.violation(f"container {name} is listed but no answered request made it "
                           f"({listed[name].get('Command', '')!r})")
        for tag, image_id in sorted(self.images.items()):
            answer = api.get(f"/images/{tag}/json")
            if answer.status_code != 200 or (image_id and answer.json()["id"] != image_id):
                self.violation(f"image {tag} (answered, {image_id[:12]}) is gone or changed: {answer.text[:200]}")
            elif api.get(f"/images/{tag}/history").status_code != 200:
                self.violation(f"image {tag}: its history does not resolve")
        self.check_orphans(api)  # first: a container the next check removes unmounts in the background
        self.check_published_port(api)
        self.check_image_starts(api)

    def check_network_settings(self, name: str, net: str, settings: dict) -> None:
        """A running container keeps its address (and published port) across the kill."""
        address = settings.get("IPAddress") or ""
        if (net == "none") != (not address):
            self.violation(f"container {name} ({net}): IPAddress is {address!r} after the restart")
        if net == "published" and not ((settings.get("Ports") or {}).get("80/tcp") or [{}])[0].get("HostPort"):
            self.violation(f"container {name}: its published port is gone: {settings.get('Ports')}")

    def check_published_port(self, api: httpx.Client) -> None:
        """A running container's published port answers through the restarted daemon."""
        name = self.pick(lambda c: c["running"] and c["net"] == "published")
        if not name:
            return
        data = api.get(f"/containers/{name}/json").json()
        port = data["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        self.port_checks += 1
        # httpd may have been starting at the kill, and a loaded machine (2 shared cores) may take
        # seconds to answer: slow is not wrong, no answer in 30 s is
        deadline = time.monotonic() + 3 * SETTLE_SECONDS
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=SETTLE_SECONDS).text.strip()
                if text == data["Config"]["Hostname"]:
                    return
                error = f"it answered {text[:100]!r}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                self.violation(f"container {name}: its published port 127.0.0.1:{port} does not answer: {error}; "
                               f"{self.port_diagnosis(data)}")
                return
            time.sleep(0.2)

    @staticmethod
    def port_diagnosis(data: dict) -> str:
        """Where a published port that does not answer fails: the container's own address
        (the proxy's target), and its process."""
        address, pid = data["NetworkSettings"].get("IPAddress"), data["State"]["Pid"]
        try:
            text = httpx.get(f"http://{address}/index.html", timeout=SETTLE_SECONDS).text.strip()
            mine = "its own host name" if text == data["Config"]["Hostname"] else "NOT its host name"
            direct = f"{text[:100]!r} ({mine})"
        except httpx.HTTPError as exc:
            direct = f"{type(exc).__name__}: {exc}"
        return (f"its address {address}:80 answers {direct}; pid {pid} "
                f"({Soak.command_of(pid) if pid else 'none'}), started {data['State']['StartedAt']}")

    def settle_inflight(self, api: httpx.Client) -> None:
        """The request in flight at the kill happened fully or left no trace."""
        if self.inflight is None:
            return
        kind, subject = self.inflight[0], self.inflight[1]
        if kind == "create":
            answer = api.get(f"/containers/{subject}/json")
            if answer.status_code == 200:
                self.containers[subject] = {"id": answer.json()["ID"], "running": False, "cmd": self.inflight[2],
                                            "net": self.inflight[3]}
            else:
                probe = api.post("/containers/create", params={"name": subject},
                                 json={"Image": "busybox", "Cmd": ["true"]})
                if probe.status_code != 201:
                    self.violation(f"create of {subject} in flight left a trace: the name is held ({probe.text})")
                else:
                    api.delete(f"/containers/{subject}")
        elif kind in ("start", "stop"):
            answer = api.get(f"/containers/{subject}/json")
            if answer.status_code != 200:
                self.violation(f"{kind} of {subject} in flight lost the container")
            else:
                self.containers[subject]["running"] = answer.json()["State"]["Running"]
        elif kind == "rm":
            answer = api.get(f"/containers/{subject}/json")
            if answer.status_code == 404:
                del self.containers[subject]
            elif answer.status_code != 200:
                self.violation(f"rm of {subject} in flight left it half there: {answer.status_code}")
            else:  # still there: a forced removal may have killed it before the kill -9
                self.containers[subject]["running"] = answer.json()["State"]["Running"]
        elif kind == "image":
            answer = api.get(f"/images/{subject}/json")
            if answer.status_code == 200:
                self.images[f"{subject}:latest"] = answer.json()["id"]
                if subject.startswith("soak-import"):
                    self.imported.add(answer.json()["id"])
        elif kind == "rmi":
            answer = api.get(f"/images/{subject}/json")
            if answer.status_code == 404:
                self.images.pop(subject, None)
            elif answer.status_code == 200:
                self.images[subject] = answer.json()["id"]
        self.inflight = None

    def check_image_starts(self, api: httpx.Client) -> None:
        """A container made on a random image of the ledger runs ``true``; on an imported one
        (a single file, no shell) its rootfs exports with that file."""
        tag = self.rng.choice(sorted(self.images))
        created = api.post("/containers/create", json={"Image": tag, "Cmd": ["true"]})
        if created.status_code != 201:
            self.violation(f"image {tag}: a container cannot be made on it: {created.text.strip()}")
            return
        cid = created.json()["Id"]
        if self.images[tag] in self.imported:
            try:
                exported = api.get(f"/containers/{cid}/export")
                names = tarfile.open(fileobj=io.BytesIO(exported.content)).getnames()
                if exported.status_code != 200 or not any(n.lstrip("./").startswith("soak/") for n in names):
                    self.violation(f"image {tag}: its rootfs does not export its file ({exported.status_code})")
            except tarfile.TarError as exc:
                self.violation(f"image {tag}: its rootfs exports no valid tar: {exc}")
            finally:
                api.delete(f"/containers/{cid}")
            return
        try:
            started = api.post(f"/containers/{cid}/start")
            code = api.post(f"/containers/{cid}/wait").json().get("StatusCode") if started.status_code == 204 else None
            if code != 0:
                self.violation(f"image {tag}: `true` in a container on it gave {started.status_code} / exit {code}")
        finally:
            api.delete(f"/containers/{cid}")

    def check_orphans(self, api: httpx.Client) -> None:
        running: dict[str, dict] = {}  # full id -> inspect
        for row in api.get("/containers/json").json():
            data = api.get(f"/containers/{row['Id']}/json").json()
            running[data["ID"]] = data
            self.see(data["ID"])
        deadline = time.monotonic() + SETTLE_SECONDS  # mounts and links go in the background
        while True:
            orphans = self.orphans(running)
            if not orphans or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for orphan in orphans:
            self.violation(orphan)

    def orphans(self, running: dict[str, dict]) -> list[str]:
        """What is left of containers that are not running (empty: nothing)."""
        # each listing (mounts, cgroups, links, processes) is read once and compared with the seen
        # ids: the cost follows what exists on the host, not how many ids the soak has ever seen
        found = []
        base = str(self.base) + "/"
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(base)]
        found += [f"orphaned mount {point}" for point in mounts if not any(cid in point for cid in running)]
        for group in sorted(CGROUP_ROOT.glob("*/moorage/*")):
            if group.name in self.seen_ids and group.name not in running:
                procs = (group / "cgroup.procs").read_text().split() if (group / "cgroup.procs").exists() else []
                found.append(f"orphaned cgroup {group} of a container that is not running ({len(procs)} procs)")
        # processes: monitors hold their container's log, and nothing stays in a dead daemon's session
        for pid, paths in sorted(processes_holding(str(self.root) + "/").items()):
            if pid == self.daemon.proc.pid:
                continue
            owners = {m for path in paths for m in CONTAINER_ID.findall(path)}
            if not owners or owners - set(running):
                found.append(f"orphaned process {pid} ({self.command_of(pid)}) holding {sorted(paths)[:2]}")
        for proc in Path("/proc").iterdir():
            session = session_of(int(proc.name)) if proc.name.isdigit() else None
            # a session whose leader lives again is a reused pid's, not a killed daemon's
            if session in self.killed_daemons and not Path(f"/proc/{session}").exists():
                found.append(f"process {proc.name} ({self.command_of(int(proc.name))}) outlived its daemon's session")
        found += [f"orphaned loop device {device}" for device in loop_devices_below(base)]
        found += self.network_orphans(running)
        return found

    @staticmethod
    def command_of(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:
            return "?"

    def network_orphans(self, running: dict[str, dict]) -> list[str]:
        """The bridge's ports are the veths of the running containers on it; no veth of another
        container exists; the nft maps hold exactly the running containers' published ports,
        and the table no rule beyond those a fresh daemon makes."""
        found = []
        on_bridge = {host_veth_name(self.bridge, cid) for cid, data in running.items()
                     if (data["NetworkSettings"] or {}).get("IPAddress")}
        with IPRoute() as ipr:
            index = links.link_index(ipr, self.bridge)
            names = {link.get("ifname"): link.get("IFLA_MASTER") for link in ipr.get_links()}
        if index is None:
            return [f"the bridge {self.bridge} is gone"]
        ports = {name for name, master in names.items() if master == index}
        found += [f"orphaned bridge port {name}" for name in sorted(ports - on_bridge)]
        found += [f"running container's veth {name} is not on the bridge" for name in sorted(on_bridge - ports)]
        for name in sorted(names):
            cid = self.veth_owners.get(name)
            if cid is not None and cid not in running:
                found.append(f"orphaned veth {name} of container {cid[:12]}")
        items = nft_table(self.table)
        if items is None:
            return [*found, f"the nft table {self.table} is gone"]
        published = set()
        for data in running.values():
            for bindings in ((data["NetworkSettings"] or {}).get("Ports") or {}).values():
                published |= {(b["HostIp"] if b["HostIp"] not in ("", "0.0.0.0") else "", int(b["HostPort"]))
                              for b in bindings or []}
        mapped = nft_mappings(items)
        self.network_seen = (len(ports), len(mapped))
        self.network_most = (max(self.network_most[0], len(ports)), max(self.network_most[1], len(mapped)))
        found += [f"orphaned nft element {ip or '*'}:{port}" for ip, port in sorted(mapped - published)]
        found += [f"published port {ip or '*'}:{port} has no nft element" for ip, port in sorted(published - mapped)]
        if nft_rules(items) != self.table_rules:
            found.append(f"the nft table has {nft_rules(items)} rules, a fresh one {self.table_rules}")
        return found

    # -- the run ----------------------------------------------------------------------------
    def run(self, kills: int, report) -> None:
        for number in range(1, kills + 1):
            stop = threading.Event()
            worker = threading.Thread(target=self.work, args=(stop,))
            worker.start()
            time.sleep(self.rng.uniform(0.2, 2.5))
            self.kill_daemon()
            self.kills = number
            stop.set()
            worker.join(120)
            inflight = self.inflight
            started = time.monotonic()
            self.start_daemon()
            self.restart_seconds.append(time.monotonic() - started)
            with self.client(120) as api:
                before = len(self.violations)
                started = time.monotonic()
                self.check(api)
                self.check_seconds.append(time.monotonic() - started)
            self.ledger_most = (max(self.ledger_most[0], len(self.containers)),
                                max(self.ledger_most[1], len(self.images)))
            report(f"kill {number:3}: in flight {inflight[:2] if inflight else None}; ledger "
                   f"{len(self.containers)} containers, {len(self.images)} images ({len(self.seen_ids)} ids seen); "
                   f"{self.network_seen[0]} veths on the bridge, {self.network_seen[1]} published ports; "
                   f"restart {self.restart_seconds[-1]:.1f} s, check {self.check_seconds[-1]:.1f} s, load "
                   f"{os.getloadavg()[0]:.1f}; {len(self.violations) - before} violations")

    def cleanup(self) -> None:
        try:
            self.daemon.dispose(remove=False, restart_dead=True)
        finally:
            self.registry.stop()
            self.remove_network()

    def remove_network(self) -> None:
        """The bridge and the table, if the daemon's clean stop did not remove them (this run's
        own names: nothing of anyone else's)."""
        with IPRoute() as ipr:
            index = links.link_index(ipr, self.bridge)
            if index is not None:
                for link in ipr.get_links():
                    if link.get("IFLA_MASTER") == index:
                        links.delete_link(ipr, link.get("ifname"))
                links.delete_link(ipr, self.bridge)
        subprocess.run(["nft", "delete", "table", "ip", self.table], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-containers", type=int, default=MAX_CONTAINERS,
                        help="past this many containers in the ledger, remove the oldest (rm -f)")
    parser.add_argument("--max-images", type=int, default=MAX_IMAGES,
                        help="past this many tags in the ledger, remove the oldest (rmi)")
    parser.add_argument("--json", action="store_true", help="one JSON line at the end")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("soak.py needs root (mounts, namespaces, cgroups)", file=sys.stderr)
        return 2
    # SIGTERM, and SIGINT even in a background job (which starts with it ignored), end the run
    # through the cleanup below: containers, daemon, mounts, bridge, table
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    base = Path(tempfile.mkdtemp(prefix="moorage-soak-"))
    soak = Soak(base, args.seed, args.max_containers, args.max_images)
    report = (lambda *_: None) if args.json else (lambda line: print(line, flush=True))
    started = time.monotonic()
    interrupted = False
    try:
        soak.setup()
        soak.run(args.kills, report)
    except Violation as exc:
        soak.violations.append(str(exc))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # a second ^C or SIGTERM must not cut the cleanup short (it would leave containers running)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        tracebacks = soak.daemon.tracebacks()
        soak.cleanup()
        log_tail = soak.daemon.log()[-4000:] if soak.violations else ""
        kept_log = ""
        if soak.violations:  # the evidence outlives the run's directory
            kept_log = f"{base}.daemon.log"
            shutil.copyfile(soak.daemon.log_path, kept_log)
        shutil.rmtree(base, ignore_errors=True)
    result = {"kills": soak.kills, "interrupted": interrupted, "checks": soak.checks, "answered": soak.answered,
              "violations": soak.violations, "port_checks": soak.port_checks,
              "most_veths_on_bridge": soak.network_most[0], "most_published_ports": soak.network_most[1],
              "most_ledger_containers": soak.ledger_most[0], "most_ledger_images": soak.ledger_most[1],
              "seen_ids": len(soak.seen_ids), "trimmed_containers": soak.trimmed["containers"],
              "trimmed_images": soak.trimmed["images"],
              "check_seconds": summary(soak.check_seconds), "restart_seconds": summary(soak.restart_seconds),
              "daemon_tracebacks": tracebacks,
              "seconds": round(time.monotonic() - started, 1), "log_tail": log_tail, "kept_log": kept_log}
    if args.json:
        print(json.dumps(result))
    else:
        stopped = " (interrupted)" if interrupted else ""
        print(f"{soak.kills} kills{stopped}, {soak.checks} checks after restarts, {soak.answered} requests answered, "
              f"{len(soak.violations)} violations, {soak.port_checks} published ports checked (up to "
              f"{soak.network_most[0]} veths on the bridge and {soak.network_most[1]} published ports at a check), "
              f"{tracebacks} tracebacks in the daemon log, "
              f"{result['seconds']} s")
        print(f"ledger: up to {soak.ledger_most[0]} containers and {soak.ledger_most[1]} images, "
              f"{len(soak.seen_ids)} container ids seen; the caps removed {soak.trimmed['containers']} containers "
              f"and {soak.trimmed['images']} tags; a check took {result['check_seconds']} s, a restart "
              f"{result['restart_seconds']} s; load average at the end {os.getloadavg()}")
        for violation in soak.violations:
            print("  " + violation)
        if kept_log:
            print(f"the daemon's log: {kept_log}")
    return 1 if soak.violations else 0


if __name__ == "__main__":
    sys.exit(main())
