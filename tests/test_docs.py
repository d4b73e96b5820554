"""Meta-tests: the docs stay true to the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from moorage.api.cli.main import build_parser
from moorage.api.http.routes import ROUTES
from moorage.core.kernel.hookdoc import hookspecs, render
from moorage.core.sdk.hookspecs import FAMILY_MODULES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def all_hookspecs():
    for module_name in FAMILY_MODULES:
        yield from hookspecs(importlib.import_module(module_name))


def test_hook_reference_is_generated_from_the_hookspecs():
    assert (DOCS / "hooks.md").read_text() == render(), \
        "docs/hooks.md is stale: run `python -m moorage.core.kernel.hookdoc > docs/hooks.md`"


def test_every_hookspec_is_documented_with_its_exact_signature():
    text = (DOCS / "hooks.md").read_text()
    import inspect
    for spec in all_hookspecs():
        signature = str(inspect.signature(spec, eval_str=True)).replace("'", "")
        assert f"`{spec.__name__}{signature}`" in text


def test_every_hookspec_has_a_test():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [s.__name__ for s in all_hookspecs() if not re.search(rf"def test_hook_{s.__name__}\b", sources)]
    assert not missing, f"hookspecs without a test_hook_<name> test: {missing}"


def test_every_daemon_flag_is_in_the_config_reference():
    text = (DOCS / "config.md").read_text()
    daemon = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "daemon")[1]
    for action in daemon._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}" in text, f"daemon flag {option} is not in docs/config.md"


def test_every_route_is_in_the_api_reference():
    text = (DOCS / "api.md").read_text()
    for route in ROUTES:
        path = route.path.replace(":path}", "}")
        method = "GET" if route.method == "WEBSOCKET" else route.method  # an upgraded GET
        assert f"`{method} {path}`" in text, f"{method} {path} is not in docs/api.md"
