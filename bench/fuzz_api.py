"""Fuzz the v1.6 API with schemathesis, over a real daemon (as root).

The schema is ``moorage.api.http.models.openapi_schema()``: the route table with its query
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
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".venv" / "fuzz"))

import requests  # noqa: E402
import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from moorage.api.cli.harness import DaemonProcess, drivers_config  # noqa: E402
from moorage.api.http.models import openapi_schema  # noqa: E402
from moorage.core.testing.registry.servers import RegistryServer  # noqa: E402

#: The answer of a request that named a registry host or URL which then failed (a valid name
#: of an unreachable host): a 500 by design, counted apart from the failures.
UPSTREAM = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE) \S+ failed at \S+: |^Error downloading ")


def fuzz_daemon(base: Path, graph: str) -> tuple[DaemonProcess, RegistryServer, str]:
    """A daemon with busybox, also on a loopback port (its URL is returned), whose registry is
    a real one on loopback: search, auth and pull answer as they would in use (an unreachable
    registry is a 500 by design, not an answer to malformed input)."""
    registry = RegistryServer(base / "registry")
    daemon = DaemonProcess(base, drivers_config(graph, registry=registry.url))
    try:
        daemon.start()
        daemon.import_busybox()
    except BaseException:
        daemon.dispose(remove=False)
        registry.stop()
        raise
    return daemon, registry, daemon.url


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

    base = Path(tempfile.mkdtemp(prefix="moorage-fuzz-"))
    daemon, registry, url = fuzz_daemon(base, args.graph)
    quiet = (lambda *_: None) if args.json else print
    try:
        started = time.monotonic()
        tally = fuzz(url, args.examples, args.seed, log=quiet)
        alive = daemon.proc.poll() is None
        log = daemon.log()
    finally:
        daemon.dispose(remove=False, restart_dead=True)
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)
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
