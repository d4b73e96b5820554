from pathlib import Path

import pytest

from moorage.api.cli.main import build_parser, flag_overrides
from moorage.core.kernel.config import load
from moorage.core.sdk.errors import ConfigError


def overrides(*argv):
    return flag_overrides(build_parser().parse_args(["daemon", *argv]))


def test_embedded_defaults():
    config = load(None)
    assert config.daemon.hosts == ["unix:///var/run/moorage.sock"]
    assert config.daemon.root == Path("/var/lib/moorage")
    assert config.daemon.restart is True and config.daemon.debug is False
    assert config.family("graph").driver is None


def test_file_overrides_defaults_and_flags_override_file(tmp_path):
    path = tmp_path / "daemon.toml"
    path.write_text('[daemon]\nroot = "/srv/m"\ndebug = true\ndns = ["10.0.0.1"]\n'
                    '[graph]\ndriver = "vfs"\n[graph.vfs]\nx = 1\n[network.bridge]\nname = "br9"\n')
    config = load(path)
    assert config.daemon.root == Path("/srv/m") and config.daemon.debug is True
    assert config.daemon.hosts == ["unix:///var/run/moorage.sock"]  # default kept
    assert config.family("graph").driver == "vfs"
    assert config.family("graph").driver_sections() == {"vfs": {"x": 1}}
    flags = overrides("-g", "/flag/root", "-s", "overlay", "-D=false", "-b", "br0", "--dns", "1.1.1.1",
                      "--dns", "8.8.8.8", "-H", "tcp://127.0.0.1:1", "-H", "unix:///x.sock", "-r=false")
    config = load(path, flags)
    assert config.daemon.root == Path("/flag/root")
    assert config.daemon.debug is False and config.daemon.restart is False
    assert config.family("graph").driver == "overlay"
    assert config.daemon.dns == ["1.1.1.1", "8.8.8.8"]
    assert config.daemon.hosts == ["tcp://127.0.0.1:1", "unix:///x.sock"]  # any -H replaces the default
    assert config.family("network").driver_sections()["bridge"] == {"name": "br0"}


def test_bridge_none_selects_no_networking():
    assert overrides("-b", "none") == {"network.driver": "none"}
    assert overrides("--api-enable-cors") == {"daemon.api_enable_cors": True}
    assert overrides("-api-enable-cors=true") == {"daemon.api_enable_cors": True}


@pytest.mark.parametrize("text, where, what", [
    ('[daemon]\nroot = "/x"\nbogus = 1\n', "line 3", "key daemon.bogus: unknown key"),
    ('[daemon]\n\ndebug = "very"\n', "line 3", "key daemon.debug"),
    ('[plugins]\nblocked = "x"\n', "line 2", "key plugins.blocked"),
    ('[daemon]\nroot = \n', "line 2", ""),
    ('[nonsense]\na = 1\n', "line 1", "unknown section [nonsense]"),
])
def test_bad_file_names_file_line_and_key(tmp_path, text, where, what):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message and where in message and what in message


def test_missing_file_is_an_error_only_when_asked_for(tmp_path):
    assert load(tmp_path / "absent.toml").source == "embedded defaults"
    with pytest.raises(ConfigError, match="absent.toml does not exist"):
        load(tmp_path / "absent.toml", required=True)
