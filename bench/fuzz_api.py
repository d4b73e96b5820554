"""Fuzz the v1.6 API with schemathesis, over a real daemon (as root).

The schema is ``moorage.api.models.openapi_schema()``: the route table with its query
parameters and request bodies. For every operation, schemathesis generates valid and invalid
requests (``--examples`` of each kind); any answer >= 500, any request the daemon does not
answer, and any traceback in the daemon's log is a failure, except a 500 that says a registry
host or URL the request named failed (``UPSTREAM``: the host exists as a name, the network
does not answer): those are counted apart. Prints the cases tried and the
failures, and with ``--json`` one JSON line for tests/api/test_fuzz.py.

schemathesis lives in .venv/fuzz (see bootstrap: it needs a newer ``requests`` than
docker-py 0.2.3 does), which this script puts first on its path.

    .venv/bin/python bench/fuzz_api.py --examples 300      # the long run in docs/reliability.md
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".venv" / "fuzz"))

import httpx  # noqa: E402
import requests  # noqa: E402
import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from moorage.api.models import openapi_schema  # noqa: E402

#: The answer of a request that named a registry host or URL which then failed (a valid name
#: of an unreachable host): a 500 by design, counted apart from the failures.
UPSTREAM = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE) \S+ failed at \S+: |^Error downloading ")

CONFIG = '[graph]\ndriver = "{graph}"\n[exec]\ndriver = "native"\n[network]\ndriver = "none"\n' \
         '[registry]\ndefault = "{registry}"\n'


class FuzzDaemon:
    """A daemon of its own: a temporary root, a unix socket and a loopback port."""

    def __init__(self, graph: str) -> None:
        import socket

        from moorage.core.contract.registry.servers import RegistryServer

        self.base = Path(tempfile.mkdtemp(prefix="moorage-fuzz-"))
        # a real registry on loopback: search, auth and pull answer as they would in use (an
        # unreachable registry is a 500 by design, not an answer to malformed input)
        self.registry = RegistryServer(self.base / "registry")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (self.base / "daemon.toml").write_text(CONFIG.format(graph=graph, registry=self.registry.url))
        self.log_path = self.base / "daemon.log"
        self.sock = self.base / "moorage.sock"
        argv = [sys.executable, "-m", "moorage.api.cli", "daemon", "--config", str(self.base / "daemon.toml"),
                "-g", str(self.base / "root"), "-H", f"unix://{self.sock}", "-H", f"tcp://127.0.0.1:{self.port}",
                "-p", str(self.base / "moorage.pid")]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/_ping", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the daemon did not answer:\n{self.log()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def import_busybox(self) -> None:
        from moorage.core.contract.rootfs import make_busybox_rootfs, tar_directory

        rootfs = make_busybox_rootfs(self.base / "busybox")
        tar = tar_directory(rootfs, self.base / "busybox.tar")
        httpx.post(f"{self.url}/images/create", params={"fromSrc": "-", "repo": "busybox"},
                   content=tar.read_bytes(), timeout=120).raise_for_status()

    def stop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            try:
                for row in client.get("/containers/json", params={"all": 1}).json():
                    client.post(f"/containers/{row['Id']}/kill")
                    client.delete(f"/containers/{row['Id']}")
            except (httpx.HTTPError, ValueError):
                pass
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f if str(self.base) in line.split()[1]]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        self.registry.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def fuzz(url: str, examples: int, seed: int | None, log=print) -> dict:
    """Run every operation's generated cases against ``url``; the tally and the failures."""
    schema = schemathesis.openapi.from_dict(openapi_schema())
    session = requests.Session()
    session.trust_env = False
    tally = {"cases": 0, "failures": [], "by_status": {}, "upstream": 0}

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                      print_blob=False)
            @given(case=strategy)
            def run(case):
                tally["cases"] += 1
                try:
                    response = case.call(base_url=url, session=session, timeout=60)
                except requests.RequestException as exc:
                    tally["failures"].append(f"{case.method} {case.formatted_path}: no answer: {exc}")
                    return
                status = str(response.status_code)
                tally["by_status"][status] = tally["by_status"].get(status, 0) + 1
                if response.status_code >= 500 and UPSTREAM.search(response.text):
                    tally["upstream"] += 1  # a registry or URL the request named failed: not a bug here
                elif response.status_code >= 500:
                    tally["failures"].append(f"{case.method} {case.formatted_path} query={case.query!r} "
                                             f"body={str(case.body)[:200]!r}: {response.status_code} "
                                             f"{response.text[:200]!r}")

            if seed is not None:
                from hypothesis import seed as hypothesis_seed

                run = hypothesis_seed(seed)(run)
            started = time.monotonic()
            try:
                run()
            except Unsatisfiable:
                continue  # no invalid request exists (an operation without parameters)
            log(f"{operation.method.upper():6} {operation.path:36} {mode.value:8} "
                f"{time.monotonic() - started:6.1f} s  cases so far {tally['cases']}")
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="cases per operation and mode (default 100)")
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: derandomized)")
    parser.add_argument("--graph", default="overlay", help="graph driver of the daemon (default overlay)")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args(argv)

    daemon = FuzzDaemon(args.graph)
    quiet = (lambda *_: None) if args.json else print
    try:
        daemon.import_busybox()
        started = time.monotonic()
        tally = fuzz(daemon.url, args.examples, args.seed, log=quiet)
        alive = daemon.proc.poll() is None
        log = daemon.log()
    finally:
        daemon.stop()
    tracebacks = log.count("Traceback (most recent call last)")
    result = {"cases": tally["cases"], "server_errors": len(tally["failures"]), "tracebacks": tracebacks,
              "upstream_errors": tally["upstream"],
              "daemon_alive": alive, "seconds": round(time.monotonic() - started, 1),
              "by_status": tally["by_status"], "failures": tally["failures"][:50],
              "traceback_excerpt": log[log.find("Traceback"):][:3000] if tracebacks else ""}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"cases tried: {result['cases']} in {result['seconds']} s; answers by status: {result['by_status']} "
              f"({result['upstream_errors']} of the 5xx: a registry or URL the request named failed)")
        print(f"failures: {result['server_errors']} answers >= 500 or unanswered, {tracebacks} tracebacks in the "
              f"daemon log, daemon {'alive' if alive else 'DEAD'}")
        for failure in result["failures"]:
            print("  " + failure)
        if tracebacks:
            print(result["traceback_excerpt"])
    return 0 if not tally["failures"] and not tracebacks and alive else 1


if __name__ == "__main__":
    sys.exit(main())
