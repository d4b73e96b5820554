"""`docker run -p`/`-P` through create's HostConfig on a daemon with a bridge: the port
answers, `docker port` prints it; `--link` gives the child's address."""

from __future__ import annotations

import pytest
from network.test_daemon import SERVE, fetch, net  # noqa: F401, F811 (net: the bridge daemon fixture)

from .conftest import Cli


@pytest.fixture
def bcli(net):  # noqa: F811
    client = Cli(net)
    yield client
    client.cleanup()


def test_publish_port_answers_and_docker_port_prints_it(bcli):
    name = bcli.name("web")
    bcli("run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", *SERVE)
    mapping = bcli("port", name, "80").stdout.strip()
    host_ip, _, port = mapping.splitlines()[0].rpartition(":")
    assert host_ip == "127.0.0.1" and port.isdigit()
    assert fetch(int(port)).startswith("hello-from-")


def test_publish_all_and_link(bcli):
    web = bcli.name("web")
    bcli("run", "-d", "--name", web, "-P", "--expose", "80", "busybox", *SERVE)
    port = bcli("port", web, "80/tcp").stdout.splitlines()[0].rpartition(":")[2]
    assert fetch(int(port)).startswith("hello-from-")
    out = bcli("run", "--rm", "--link", f"{web}:web", "busybox", "sh", "-c",
               "echo $WEB_PORT_80_TCP_ADDR; wget -q -O - http://web/index.html").stdout.splitlines()
    assert out[0].count(".") == 3 and out[1].startswith("hello-from-")
