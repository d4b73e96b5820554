"""A restart policy is carried out by the daemon, also across a daemon that was killed: a
container that ended while no daemon ran is started again by the next one (without ``-r``)."""

from __future__ import annotations

import time

from conftest import CONTAINER_CONFIG, eventually, import_image

from .conftest import Cli


def test_policy_restarts_a_container_that_ended_while_the_daemon_was_down(daemon_factory, busybox_tar,
                                                                          exec_driver):
    config = CONTAINER_CONFIG.format(graph="overlay", exec=exec_driver)
    first = daemon_factory(config)
    import_image(first, busybox_tar)
    cli = Cli(first)
    cli("run", "-d", "--name", "cli-policy", "--restart", "on-failure", "busybox", "sh", "-c",
        "if [ -e /ran ]; then sleep 120; else touch /ran; sleep 1; exit 4; fi")
    cli("run", "-d", "--name", "cli-nopolicy", "busybox", "sh", "-c", "sleep 1; exit 4")
    first.kill()  # SIGKILL: both exit with 4 while no daemon runs
    time.sleep(2)
    second = daemon_factory(config, flags=["-g", str(first.root), "-r=false"])
    cli = Cli(second)
    eventually(lambda: cli("inspect", "-f", "{{.State.Running}}", "cli-policy").stdout.strip() == "true",
               "the restart policy to start the container again", 20)
    assert cli("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", "cli-nopolicy").stdout.split() == [
        "false", "4"]
