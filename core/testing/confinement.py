"""The confinement suite of the exec contract: what a container can and cannot do to the host,
tried from inside a real container, for every exec driver.

A driver runs it as it runs ``moorage.core.testing.exec``: by name (``pytest --pyargs
moorage.core.testing --moorage-driver exec=NAME`` runs both), or by subclassing
``ConfinementContract`` and overriding ``moorage_driver``. The escape probes are busybox commands and a tiny
static C program (``probe``, built with ``gcc -static`` once per session and copied into each
container's rootfs as ``/probe``) that makes one system call and prints ``ok`` or the errno's
number. Every probe that writes writes back what is already there, or somewhere harmless, so
that a driver that fails the suite still does the host no harm.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from moorage.core.sdk.hookspecs.exec import Mount
from moorage.core.sdk.security import Confinement
from moorage.core.testing.exec import ExecFixtures, cap_bits, log_text

#: Docker's default capability bounding set
DOCKER_CAPBND = 0x00000000A80425FB

PROBE_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(long rc) {
    if (rc < 0) printf("%d\n", errno); else printf("ok\n");
    return 0;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "open_by_handle_at")) {  /* the "shocker" escape's system call */
        struct { struct file_handle h; unsigned char bytes[128]; } fh = {.h.handle_bytes = 128};
        int mount_id, dir = open(argv[2], O_RDONLY);
        if (dir < 0 || syscall(SYS_name_to_handle_at, AT_FDCWD, argv[2], &fh.h, &mount_id, 0) < 0)
            return printf("setup %d\n", errno), 0;
        return report(syscall(SYS_open_by_handle_at, dir, &fh.h, O_RDONLY));
    }
    if (!strcmp(what, "finit_module")) return report(syscall(SYS_finit_module, -1, "", 0));
    if (!strcmp(what, "delete_module"))
        return report(syscall(SYS_delete_module, "moorage_no_such_module", O_NONBLOCK));
    if (!strcmp(what, "keyctl"))
        return report(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    if (!strcmp(what, "add_key"))
        return report(syscall(SYS_add_key, "user", "moorage", "x", 1, KEY_SPEC_PROCESS_KEYRING));
    if (!strcmp(what, "kexec_load")) return report(syscall(SYS_kexec_load, 0, 0, NULL, 0xdeadUL));
    if (!strcmp(what, "bpf")) return report(syscall(SYS_bpf, 0xdead, NULL, 0));
    if (!strcmp(what, "perf_event_open")) return report(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    if (!strcmp(what, "userfaultfd")) return report(syscall(SYS_userfaultfd, 0));
    if (!strcmp(what, "reboot")) return report(syscall(SYS_reboot, 0, 0, 0, NULL));  /* bad magic: EINVAL */
    if (!strcmp(what, "swapon")) return report(syscall(SYS_swapon, "/moorage-no-such-file", 0));
    if (!strcmp(what, "umount2")) return report(syscall(SYS_umount2, "/moorage-no-such-dir", 0));
    if (!strcmp(what, "pivot_root"))
        return report(syscall(SYS_pivot_root, "/moorage-no-such-dir", "/moorage-no-such-dir"));
    if (!strcmp(what, "unshare_user")) return report(unshare(CLONE_NEWUSER));
    if (!strcmp(what, "clone_user")) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return report(pid);
    }
    if (!strcmp(what, "raw_socket")) return report(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    if (!strcmp(what, "bind80")) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
        int s = socket(AF_INET, SOCK_STREAM, 0);
        return report(s < 0 ? s : bind(s, (struct sockaddr *)&a, sizeof a));
    }
    printf("unknown probe %s\n", what);
    return 2;
}
"""

#: system calls Docker's default refuses, each with an argument that would do no harm if it got through
BLOCKED = ("finit_module", "delete_module", "keyctl", "add_key", "kexec_load", "bpf", "perf_event_open",
           "userfaultfd", "unshare_user", "clone_user", "reboot", "swapon", "umount2", "pivot_root")


@pytest.fixture(scope="session")
def probe_binary(tmp_path_factory) -> Path:
    """The static probe program, built once."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the confinement probe")
    out = tmp_path_factory.mktemp("probe")
    (out / "probe.c").write_text(PROBE_SOURCE)
    built = subprocess.run(["gcc", "-static", "-O1", "-o", str(out / "probe"), str(out / "probe.c")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"cannot build a static program here: {built.stderr[-500:]}")
    return out / "probe"


def status_field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)$", text, re.M)
    assert match, f"no {name} in {text!r}"
    return match.group(1)


class ConfinementContract(ExecFixtures):
    """Escapes that fail and what still works, in default and privileged containers."""

    @pytest.fixture
    def probe_spec(self, make_spec, probe_binary):
        """``make_spec`` with the probe at ``/probe`` in the rootfs."""
        def make(args: list[str], **fields):
            spec = make_spec(args, **fields)
            shutil.copy2(probe_binary, Path(spec.rootfs) / "probe")
            return spec

        return make

    def run_script(self, runner, probe_spec, script: str, **fields) -> str:
        spec = probe_spec(["sh", "-c", script], **fields)
        assert self.run_to_exit(runner, spec) == 0, log_text(spec, "stderr")
        return log_text(spec)

    # -- capabilities and the filter ---------------------------------------------------------------

    def test_docker_default_capabilities_and_seccomp(self, runner, probe_spec):
        status = self.run_script(runner, probe_spec, "cat /proc/self/status")
        assert cap_bits(status, "CapBnd") == DOCKER_CAPBND
        assert cap_bits(status, "CapPrm") == DOCKER_CAPBND
        assert cap_bits(status, "CapEff") == DOCKER_CAPBND
        assert cap_bits(status, "CapInh") == 0
        assert cap_bits(status, "CapAmb") == 0
        assert status_field(status, "Seccomp") == "2"

    def test_non_root_user_has_no_capabilities_left(self, runner, probe_spec):
        status = self.run_script(runner, probe_spec, "cat /proc/self/status", user="daemon")
        assert cap_bits(status, "CapBnd") == DOCKER_CAPBND
        for field in ("CapPrm", "CapEff", "CapInh", "CapAmb"):
            assert cap_bits(status, field) == 0, field

    def test_cap_add_and_cap_drop(self, runner, probe_spec):
        confinement = Confinement().with_capabilities(add=["CAP_NET_ADMIN", "sys_admin"], drop=["CHOWN"])
        script = "cat /proc/self/status; mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted"
        out = self.run_script(runner, probe_spec, script, confinement=confinement)
        bnd = cap_bits(out, "CapBnd")
        assert bnd == (DOCKER_CAPBND | 1 << 12 | 1 << 21) & ~1
        assert "mounted" in out  # the filter follows the capabilities, as Docker's does
        dropped_all = Confinement().with_capabilities(drop=["ALL"], add=["KILL"])
        out = self.run_script(runner, probe_spec, "cat /proc/self/status", confinement=dropped_all)
        assert cap_bits(out, "CapBnd") == 1 << 5

    # -- escape probes: every one must fail --------------------------------------------------------

    def test_host_global_proc_files_are_read_only(self, runner, probe_spec):
        script = ("cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern && echo core-written; "
                  "cat /proc/sys/net/ipv4/ip_forward > /proc/sys/net/ipv4/ip_forward && echo net-written; "
                  "test -e /proc/sysrq-trigger && { echo h > /proc/sysrq-trigger && echo sysrq-written; }; "
                  "touch /sys/kernel/x 2>/dev/null && echo sys-written; "
                  "grep -E ' /proc/(sys|sysrq-trigger|irq|bus|fs) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1; true")
        out = self.run_script(runner, probe_spec, script, isolate_network=False)  # the host's /proc/sys/net
        assert "written" not in out
        readonly = {line.split()[0] for line in out.splitlines() if line.endswith(" ro")}
        assert "/proc/sys" in readonly
        present = {p for p in ("/proc/irq", "/proc/bus", "/proc/fs", "/proc/sysrq-trigger") if Path(p).exists()}
        assert present <= readonly

    def test_masked_paths_read_empty(self, runner, probe_spec):
        files = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/interrupts",
                             "/proc/sched_debug", "/proc/latency_stats") if Path(p).is_file()]
        dirs = [p for p in ("/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware") if Path(p).is_dir()]
        assert files and dirs, "nothing of Docker's masked paths exists on this host"
        script = "; ".join([f"echo {p} $(head -c 64 {p} | wc -c)" for p in files]
                           + [f"echo {p} $(ls -A {p} | wc -l)" for p in dirs])
        out = self.run_script(runner, probe_spec, script)
        assert out.splitlines() == [f"{p} 0" for p in files + dirs]

    def test_mount_is_refused(self, runner, probe_spec):
        out = self.run_script(runner, probe_spec, "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted; "
                                                  "mount -o remount,rw /sys && echo remounted; true")
        assert "mounted" not in out

    def test_open_by_handle_at_on_a_bind_mounted_file(self, runner, probe_spec, tmp_path):
        hosts = tmp_path / f"hosts-{uuid.uuid4().hex[:8]}"
        hosts.write_text("127.0.0.1 localhost\n")
        out = self.run_script(runner, probe_spec, "/probe open_by_handle_at /etc/hosts",
                              mounts=[Mount(hosts, "/etc/hosts")])
        assert out == f"{errno.EPERM}\n"

    @pytest.mark.parametrize("call", BLOCKED)
    def test_blocked_system_call(self, runner, probe_spec, call):
        assert self.run_script(runner, probe_spec, f"/probe {call}") == f"{errno.EPERM}\n"

    def test_unshare_user_namespace(self, runner, probe_spec):
        out = self.run_script(runner, probe_spec, "unshare -U true && echo unshared; true")
        assert "unshared" not in out

    def test_write_through_a_submount_of_a_read_only_bind(self, runner, probe_spec, tmp_path):
        source = tmp_path / f"ro-{uuid.uuid4().hex[:8]}"
        (source / "sub").mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "moorage-confine", str(source / "sub")], check=True)
        try:
            out = self.run_script(runner, probe_spec, "touch /ro/top && echo top; touch /ro/sub/x && echo sub; true",
                                  mounts=[Mount(source, "/ro", readonly=True)])
            assert out == ""
            assert not (source / "sub" / "x").exists()
        finally:
            subprocess.run(["umount", "-l", str(source / "sub")], check=False)

    # -- paths from the image stay in the rootfs --------------------------------------------------

    @pytest.mark.parametrize("link", ["/{outside}", "../../../../../../..{outside}"])
    def test_dangling_symlink_bind_target_stays_in_the_rootfs(self, runner, probe_spec, tmp_path, link):
        outside = f"/tmp/moorage-confine-{uuid.uuid4().hex[:12]}"
        source = tmp_path / "hosts"
        source.write_text("bound\n")
        spec = probe_spec(["cat", "/etc/hosts"], mounts=[Mount(source, "/etc/hosts")])
        hosts = Path(spec.rootfs) / "etc" / "hosts"
        hosts.unlink(missing_ok=True)
        hosts.symlink_to(link.format(outside=outside))
        try:
            assert self.run_to_exit(runner, spec) == 0
            assert log_text(spec) == "bound\n"
            assert not os.path.lexists(outside)
        finally:
            if os.path.lexists(outside):
                subprocess.run(["umount", "-l", outside], check=False)
                os.unlink(outside)

    @pytest.mark.parametrize("source", ["//", "/./", "/../"])
    def test_bind_source_root_in_any_spelling_is_refused(self, runner, probe_spec, source):
        from moorage.core.sdk.errors import InvalidParameter

        spec = probe_spec(["true"], mounts=[Mount(Path(source), "/host")])
        with pytest.raises(InvalidParameter, match="'/'"):
            runner.driver.start(spec)

    def test_fifo_passwd_gives_a_clear_error(self, runner, probe_spec):
        from moorage.core.sdk.errors import InvalidParameter

        spec = probe_spec(["true"], user="daemon")
        passwd = Path(spec.rootfs) / "etc" / "passwd"
        passwd.unlink()
        os.mkfifo(passwd)
        with pytest.raises(InvalidParameter, match="regular file"):
            runner.driver.start(spec)

    # -- what must still work ------------------------------------------------------------------

    def test_what_containers_may_still_do(self, runner, probe_spec):
        script = ("/probe raw_socket; /probe bind80; touch /tmp/f && chown 1:1 /tmp/f && stat -c %u:%g /tmp/f; "
                  "mknod /tmp/null c 1 3 && echo mknod; su -s /bin/sh daemon -c 'id -u'; "
                  "mkdir /tmp/c && chroot / true && echo chroot")
        out = self.run_script(runner, probe_spec, script)
        assert out.splitlines() == ["ok", "ok", "1:1", "mknod", "1", "chroot"]

    # -- privileged: what Docker gives ---------------------------------------------------------

    def test_privileged_gets_the_host_devices(self, runner, probe_spec):
        devices = sorted(p for p in ("/dev/kmsg", "/dev/loop-control", "/dev/mem", "/dev/fuse", "/dev/loop0")
                         if os.path.exists(p))
        if not devices:
            pytest.skip("none of the devices looked for is on this host")
        script = "; ".join(f"test -c {p} -o -b {p} && echo {p}" for p in devices) + "; true"
        assert self.run_script(runner, probe_spec, script, privileged=True).split() == devices
        assert self.run_script(runner, probe_spec, script).split() == []

    def test_privileged_gets_everything(self, runner, probe_spec):
        with open("/proc/self/status") as f:
            ours = cap_bits(f.read(), "CapBnd")
        script = ("cat /proc/self/status; mount -t tmpfs none /tmp && echo tmpfs; "
                  "grep -E ' /(sys|proc) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1; "
                  "echo privileged > /proc/sys/kernel/hostname && hostname; "  # /proc/sys, UTS-namespaced
                  "/probe keyctl; wc -c < /proc/keys | tr -d ' '")
        out = self.run_script(runner, probe_spec, script, privileged=True)
        assert cap_bits(out, "CapBnd") == ours and cap_bits(out, "CapEff") == ours
        assert status_field(out, "Seccomp") == "0"
        lines = out.splitlines()
        assert "tmpfs" in lines and "/sys rw" in lines and "/proc rw" in lines and "privileged" in lines
        assert "ok" in lines  # keyctl: no filter
        assert lines[-1] != "0"  # /proc/keys is not masked
