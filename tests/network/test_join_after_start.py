"""A network driver that only looks at the namespace (``configures = False``) joins right after
the start; when that join fails, the container's already running process is killed and the
start fails whole."""

from __future__ import annotations

import os

import pytest
from conftest import Daemon, import_image, make_distribution, network_module

#: records the pid it was given, then refuses
REFUSING = network_module("RefusingDriver", "refusing", configures=False, join=(
    'import os; open(os.path.join(self.home, "joined"), "w").write(f"{container_id} {pid}"); '
    'raise DriverError("refused after the start")'))


@pytest.fixture
def refusing_daemon(tmp_path, busybox_tar):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "moorage-refusing", {"refusing": REFUSING}, {"refusing": "refusing"})
    (tmp_path / "daemon").mkdir()
    with Daemon(tmp_path / "daemon", '[network]\ndriver = "refusing"\n', env={"PYTHONPATH": str(site)}).start() as d:
        import_image(d, busybox_tar)
        yield d


def test_a_failed_join_after_the_start_kills_the_process(refusing_daemon):
    with refusing_daemon.client() as api:
        cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["/bin/sleep", "300"]}).json()["Id"]
        answer = api.post(f"/containers/{cid}/start")
        assert answer.status_code == 500 and "refused after the start" in answer.text
        joined = next(refusing_daemon.root.rglob("joined")).read_text().split()
        full_id, pid = joined[0], int(joined[1])
        assert full_id.startswith(cid)
        assert not os.path.exists(f"/proc/{pid}")  # the sleep that had started is gone
        state = api.get(f"/containers/{cid}/json").json()["State"]
        assert state["Running"] is False and state["Pid"] == 0
        assert not any(os.path.exists(f"/sys/fs/cgroup/{c}/moorage/{full_id}") for c in ("pids", "devices", "freezer"))
        assert api.delete(f"/containers/{cid}").status_code == 204
