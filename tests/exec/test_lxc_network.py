"""The bridge network tests of ``tests/network/test_daemon.py``, run unchanged against a daemon
whose exec driver is ``lxc``: the network driver configures the container's namespace through
``on_namespace`` exactly as for ``native`` (ports, links, addresses, restore after SIGKILL)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from moorage.core.driver import NoOptions
from moorage.core.errors import NotSupported

SOURCE = Path(__file__).resolve().parent.parent / "network" / "test_daemon.py"


def _skip_reason() -> str | None:
    from moorage.drivers.exec.lxc.driver import LxcDriver

    try:
        LxcDriver(Path("/nonexistent"), NoOptions(), {})
    except NotSupported as exc:
        return str(exc)
    return None


REASON = _skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def _load():
    spec = importlib.util.spec_from_file_location("network.lxc_copy_of_test_daemon", SOURCE)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "network"  # its `from .conftest import ...`
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    original = module.config
    module.config = lambda *args: original(*args).replace('driver = "native"', 'driver = "lxc"')
    return module


#: Tests of the daemon's bridge flags alone: they start no container, so the exec driver is not involved.
NOT_EXEC = {"test_bridge_flags_name_the_bridge_and_its_address"}

_copy = _load()
for _attr, _value in vars(_copy).items():
    if _attr.startswith("test_") and callable(_value) and _attr not in NOT_EXEC:
        globals()[_attr] = _value
    elif hasattr(_value, "_pytestfixturefunction") or type(_value).__name__ == "FixtureFunctionDefinition":
        globals()[_attr] = _value


def test_the_copy_runs_lxc(tmp_path):
    assert 'driver = "lxc"' in _copy.config("b", "t", "10.0.0.1/24")
