"""kill -9 soak: a mixed workload against a daemon that is SIGKILLed at random moments (as root).

One worker runs a random mix of create, start, stop, commit, rm, import, tag, rmi, build and
pull (from a registry on loopback) through the API, and keeps a ledger of every request the
daemon answered. A killer SIGKILLs the daemon after a random 0.2 to 2.5 s; the daemon is
restarted on the same root (``-r=false``) and, after every restart, the checks run:

- every container and image whose request was answered is there and consistent: inspect
  works, a running one still runs (live restore), an image's history resolves;
- the request in flight at the kill either happened fully (then it is whole, and joins the
  ledger) or left no trace (a name it held is free again);
- an image of the ledger still mounts and starts: a container made on it runs ``true``;
- nothing is orphaned: no mount under the root and no cgroup of a container that is not
  running (for every container id the soak has seen).

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
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx
from bench_daemon import BenchDaemon

from moorage.core.contract.registry.servers import RegistryServer

LONG = ["sleep", "100000"]
CGROUP_ROOT = Path("/sys/fs/cgroup")


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


class Soak:
    def __init__(self, base: Path, seed: int) -> None:
        self.base = base
        self.rng = random.Random(seed)
        self.registry = RegistryServer(base / "registry")
        self.daemon = BenchDaemon(base, self.registry.url, ["-r=false"])
        self.root = self.daemon.root
        # the ledger: what the daemon answered
        self.containers: dict[str, dict] = {}  # name -> {"id", "running", "cmd"}
        self.images: dict[str, str] = {"busybox:latest": ""}  # repo:tag -> image id
        self.seen_ids: set[str] = set()
        self.imported: set[str] = set()  # ids of imported images: a file, no shell to run
        self.inflight: tuple | None = None
        self.counter = 0
        self.answered = 0
        self.violations: list[str] = []
        #: intermediate containers of a build killed in flight: a known open bug (the build
        #: leaves them, as Docker 0.6.5 left a failed build's), counted apart and removed
        self.build_leftovers = 0
        self.checks = 0

    # -- the daemon -------------------------------------------------------------------------
    def start_daemon(self) -> None:
        try:
            self.daemon.start()
        except RuntimeError as exc:
            raise Violation(f"the daemon did not restart: {exc}") from None

    def kill_daemon(self) -> None:
        self.daemon.proc.send_signal(signal.SIGKILL)
        self.daemon.proc.wait(30)

    def client(self, timeout: float = 60) -> httpx.Client:
        return self.daemon.client(timeout)

    def setup(self) -> None:
        self.start_daemon()
        self.images["busybox:latest"] = self.daemon.import_busybox()
        with self.client(120) as api:
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

    def one_operation(self, api: httpx.Client) -> None:
        ops = ["create"] * 4 + ["start"] * 3 + ["stop", "rm", "rm", "commit", "import", "tag", "rmi", "pull"]
        ops += ["build"] if self.rng.random() < 0.3 else []
        op = self.rng.choice(ops)
        if op == "create":
            name, cmd = self.name("c"), self.rng.choice([LONG, ["true"]])
            self.inflight = ("create", name, cmd)
            answer = api.post("/containers/create", params={"name": name}, json={"Image": "busybox", "Cmd": cmd})
            if answer.status_code == 201:
                self.containers[name] = {"id": answer.json()["Id"], "running": False, "cmd": cmd}
        elif op == "start":
            name = self.pick(lambda c: not c["running"] and c["cmd"] == LONG)
            if name:
                self.inflight = ("start", name)
                if api.post(f"/containers/{name}/start").status_code == 204:
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
            self.seen_ids.add(data["ID"])
            if data["State"]["Running"] != expected["running"]:
                self.violation(f"container {name}: Running is {data['State']['Running']}, the answered request "
                               f"left it {expected['running']}")
        for name in sorted(set(listed) - set(self.containers)):
            if "> /built" in " ".join(listed[name].get("Command", "").split()):
                self.build_leftovers += 1
                api.delete(f"/containers/{name}", params={"force": 1})
                continue
            self.violation(f"container {name} is listed but no answered request made it")
        for tag, image_id in sorted(self.images.items()):
            answer = api.get(f"/images/{tag}/json")
            if answer.status_code != 200 or (image_id and answer.json()["id"] != image_id):
                self.violation(f"image {tag} (answered, {image_id[:12]}) is gone or changed: {answer.text[:200]}")
            elif api.get(f"/images/{tag}/history").status_code != 200:
                self.violation(f"image {tag}: its history does not resolve")
        self.check_orphans(api)  # first: a container the next check removes unmounts in the background
        self.check_image_starts(api)

    def settle_inflight(self, api: httpx.Client) -> None:
        """The request in flight at the kill happened fully or left no trace."""
        if self.inflight is None:
            return
        kind, subject = self.inflight[0], self.inflight[1]
        if kind == "create":
            answer = api.get(f"/containers/{subject}/json")
            if answer.status_code == 200:
                self.containers[subject] = {"id": answer.json()["ID"], "running": False, "cmd": self.inflight[2]}
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
        running = set()
        for row in api.get("/containers/json").json():
            full = api.get(f"/containers/{row['Id']}/json").json()["ID"]
            running.add(full)
            self.seen_ids.add(full)
        deadline = time.monotonic() + 10  # graph drivers unmount in the background
        while True:
            with open("/proc/self/mounts") as f:
                mounts = [line.split()[1] for line in f if line.split()[1].startswith(str(self.root) + "/")]
            orphans = [point for point in mounts if not any(cid in point for cid in running)]
            if not orphans or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for point in orphans:
            self.violation(f"orphaned mount {point}")
        for cid in sorted(self.seen_ids - running):
            for group in CGROUP_ROOT.glob(f"*/moorage/{cid}"):
                procs = (group / "cgroup.procs").read_text().split() if (group / "cgroup.procs").exists() else []
                self.violation(f"orphaned cgroup {group} of a container that is not running ({len(procs)} procs)")

    # -- the run ----------------------------------------------------------------------------
    def run(self, kills: int, report) -> None:
        for number in range(1, kills + 1):
            stop = threading.Event()
            worker = threading.Thread(target=self.work, args=(stop,))
            worker.start()
            time.sleep(self.rng.uniform(0.2, 2.5))
            self.kill_daemon()
            stop.set()
            worker.join(120)
            inflight = self.inflight
            self.start_daemon()
            with self.client(120) as api:
                before = len(self.violations)
                self.check(api)
            report(f"kill {number:3}: in flight {inflight[:2] if inflight else None}; ledger "
                   f"{len(self.containers)} containers, {len(self.images)} images; "
                   f"{len(self.violations) - before} violations")

    def cleanup(self) -> None:
        try:
            self.daemon.stop()
        finally:
            self.registry.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON line at the end")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("soak.py needs root (mounts, namespaces, cgroups)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="moorage-soak-"))
    soak = Soak(base, args.seed)
    report = (lambda *_: None) if args.json else (lambda line: print(line, flush=True))
    started = time.monotonic()
    error = ""
    try:
        soak.setup()
        soak.run(args.kills, report)
    except Violation as exc:
        error = str(exc)
        soak.violations.append(error)
    finally:
        tracebacks = soak.daemon.tracebacks()
        soak.cleanup()
        log_tail = soak.daemon.log()[-4000:] if soak.violations else ""
        shutil.rmtree(base, ignore_errors=True)
    result = {"kills": args.kills, "checks": soak.checks, "answered": soak.answered,
              "violations": soak.violations, "build_leftovers": soak.build_leftovers,
              "daemon_tracebacks": tracebacks,
              "seconds": round(time.monotonic() - started, 1), "log_tail": log_tail}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.kills} kills, {soak.checks} checks after restarts, {soak.answered} requests answered, "
              f"{len(soak.violations)} violations, {soak.build_leftovers} containers left by a killed build "
              f"(known open bug), {tracebacks} tracebacks in the daemon log, "
              f"{result['seconds']} s")
        for violation in soak.violations:
            print("  " + violation)
    return 1 if soak.violations else 0


if __name__ == "__main__":
    sys.exit(main())
