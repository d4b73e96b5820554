"""`docker run -p`/`-P` through create's HostConfig on a daemon with a bridge: the port
answers, `docker port` prints it; `--link` gives the child's address."""

from __future__ import annotations

import shutil
import time
import uuid

import httpx
import pytest

from conftest import Daemon, import_image, unmount_below
from network.conftest import free_test_subnet, remove_bridge_and_table
from network.test_daemon import config

from .conftest import Cli

SERVE = ["sh", "-c", "mkdir -p /www && echo served-by-cli > /www/index.html && httpd -f -p 80 -h /www"]


@pytest.fixture(scope="module")
def bridge_daemon(tmp_path_factory, busybox_tar, exec_driver):
    suffix = uuid.uuid4().hex[:8]
    name, table, bip = f"mcli{suffix}", f"moorage-cli-{suffix}", free_test_subnet()
    base = tmp_path_factory.mktemp(f"clinet-{suffix}")
    daemon = Daemon(base, config(name, table, bip, exec_driver))
    try:
        daemon.start()
        daemon.image_id = import_image(daemon, busybox_tar)
        yield daemon
    finally:
        daemon.remove_all_containers()
        daemon.stop()
        unmount_below(daemon.base)
        shutil.rmtree(daemon.base, ignore_errors=True)
        remove_bridge_and_table(name, table)


@pytest.fixture
def bcli(bridge_daemon):
    client = Cli(bridge_daemon)
    yield client
    client.cleanup()


def fetch(port: int, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=5).text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_publish_port_answers_and_docker_port_prints_it(bcli):
    name = bcli.name("web")
    bcli("run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", *SERVE)
    mapping = bcli("port", name, "80").stdout.strip()
    host_ip, _, port = mapping.splitlines()[0].rpartition(":")
    assert host_ip == "127.0.0.1" and port.isdigit()
    assert fetch(int(port)) == "served-by-cli\n"


def test_publish_all_and_link(bcli):
    web = bcli.name("web")
    bcli("run", "-d", "--name", web, "-P", "--expose", "80", "busybox", *SERVE)
    port = bcli("port", web, "80/tcp").stdout.splitlines()[0].rpartition(":")[2]
    assert fetch(int(port)) == "served-by-cli\n"
    out = bcli("run", "--rm", "--link", f"{web}:web", "busybox", "sh", "-c",
               "echo $WEB_PORT_80_TCP_ADDR; wget -q -O - http://web/index.html").stdout.splitlines()
    assert out[0].count(".") == 3 and out[1] == "served-by-cli"
