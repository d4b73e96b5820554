"""A bounded run of the API fuzzer (bench/fuzz_api.py) over a real daemon: no answer >= 500 to
the generated valid and invalid requests, every request answered, no traceback in the log.
The long run's figures are in docs/reliability.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import exec_driver_unsupported

ROOT = Path(__file__).resolve().parents[2]
FUZZ_SITE = ROOT / ".venv" / "fuzz"

pytestmark = [
    pytest.mark.skipif(not (FUZZ_SITE / "schemathesis").is_dir(),
                       reason="schemathesis is installed into .venv/fuzz by `bash bootstrap test`"),
    pytest.mark.skipif(exec_driver_unsupported("native") is not None, reason="the fuzz daemon uses the native driver"),
]


@pytest.mark.timeout(420)
def test_the_fuzzer_finds_no_server_error_and_no_traceback():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz_api.py"), "--examples", "4", "--seed", "1",
                           "--json"], capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["cases"] >= 150, result
    assert result["failures"] == [] and result["server_errors"] == 0, result["failures"]
    assert result["tracebacks"] == 0, result["traceback_excerpt"]
    assert result["daemon_alive"]


def test_the_schema_describes_the_route_table():
    """No drift between api/http/models.py's per-route fields and api/http/routes.py."""
    from moorage.api.http.models import FEATURE_ROUTES, ROUTE_SCHEMAS, STREAMING, openapi_schema
    from moorage.api.http.routes import ROUTES

    declared = {(r.method, r.path) for r in ROUTES} | FEATURE_ROUTES
    assert set(ROUTE_SCHEMAS) | STREAMING <= declared
    schema = openapi_schema()
    operations = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    expected = {(m, p.replace(":path", "")) for m, p in declared - STREAMING if m not in ("WEBSOCKET", "HEAD")}
    assert operations == expected
    create = schema["paths"]["/containers/create"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "Privileged" in create["properties"] and "Image" in create["properties"]
