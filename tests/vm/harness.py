"""A cgroup-v2-only Linux for the tests: Debian's own kernel under ``qemu-system-x86_64 -accel
tcg`` (KVM is not available on the development machines), booting in a few seconds.

- The kernel: the package ``linux-image-amd64`` depends on, fetched with ``apt-get download``
  and unpacked with ``dpkg-deb -x`` into a cache directory (``$MOORAGE_VM_CACHE``, default
  ``/var/cache/moorage-vm``): never installed on the host. ``bash bootstrap test`` does it
  (``python tests/vm/harness.py fetch``).
- The root: the host's ``/`` shared read-only over 9p (``-virtfs``), under an overlay whose
  upper layer is a tmpfs, so everything the tests write stays in the VM's memory. The same
  paths as on the host: the worktree, its ``.venv`` and the built C extensions are all there.
- A tiny initramfs built here (``cpio`` newc written in Python): Debian's static busybox, the
  9p, virtio and overlay modules of the same kernel package, and an ``init`` script that mounts
  the root, mounts **only cgroup2** at ``/sys/fs/cgroup`` (the kernel also gets
  ``cgroup_no_v1=all``), runs one command in the new root and powers off.

``run(command)`` boots, runs ``command`` (a shell command line) as root in the VM and returns
its exit status and console output. ``tests/vm/run.py`` runs pytest in the VM from the command
line; ``tests/vm/test_vm.py`` runs a bounded part of the suite in it as a test.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MOORAGE_VM_CACHE", "/var/cache/moorage-vm"))
QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
#: loaded by the init, in this order after their dependencies, before the root is mounted
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
#: loaded once the root is there, for the tests that need them (others load on demand)
LATE_MODULES = ("veth", "bridge", "br_netfilter", "nf_tables", "nft_chain_nat", "nft_masq", "nft_nat",
                "nft_ct", "nft_fib_inet", "nf_nat", "tun", "loop", "btrfs")
EXIT_MARK = "MOORAGE-VM-EXIT="
#: how the init mounts cgroups: only the unified hierarchy (the point of the VM), or, to compare
#: the two in the same kernel, a v1 layout like this development machine's
MOUNT_CGROUPS = {
    2: "mount -t cgroup2 -o nsdelegate cgroup2 /newroot/sys/fs/cgroup",
    1: "mount -t tmpfs -o mode=755 cgroup /newroot/sys/fs/cgroup\n"
       "for c in cpu cpuacct cpuset memory devices freezer blkio pids; do\n"
       "  mkdir /newroot/sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /newroot/sys/fs/cgroup/$c\n"
       "done",
}


@dataclass(frozen=True)
class Kernel:
    version: str  # e.g. 6.1.0-57-amd64
    root: Path  # the unpacked package: boot/vmlinuz-<version>, lib/modules/<version>

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version


def kernel_package() -> str:
    """The versioned package ``linux-image-amd64`` depends on (apt's cache, no download)."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and name.startswith("linux-image-"):
            return name
    raise RuntimeError("apt-cache finds no kernel package behind linux-image-amd64 (run apt-get update)")


def fetch(cache: Path = CACHE) -> Kernel:
    """Download and unpack the kernel package into ``cache`` (once) and index its modules."""
    found = find_kernel(cache)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    package = kernel_package()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(["apt-get", "download", "-q", package], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        (deb,) = glob.glob(f"{tmp}/{package}_*.deb")
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", deb, str(unpacked)], check=True)
        version = package.removeprefix("linux-image-")
        # modules.dep for the modprobe the kernel calls in the VM (busybox's, like the rest)
        subprocess.run([str(BUSYBOX), "depmod", "-b", str(unpacked), version], check=True)
        target = cache / version
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    kernel = find_kernel(cache)
    assert kernel is not None
    return kernel


def find_kernel(cache: Path = CACHE) -> Kernel | None:
    for vmlinuz in sorted(cache.glob("*/boot/vmlinuz-*")):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        root = vmlinuz.parent.parent
        if (root / "lib" / "modules" / version / "modules.dep").exists():
            return Kernel(version, root)
    return None


def unavailable() -> str | None:
    """Why the VM cannot boot here, or None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (bash bootstrap test installs qemu-system-x86)"
    if not BUSYBOX.exists():
        return "busybox-static is not installed"
    if find_kernel() is None:
        return f"no kernel in {CACHE} (bash bootstrap test, or python tests/vm/harness.py fetch)"
    return None


# -- the initramfs ---------------------------------------------------------------------------


def _module_index(kernel: Kernel) -> dict[str, Path]:
    return {p.name.removesuffix(".ko").replace("-", "_"): p for p in kernel.modules.rglob("*.ko")}


def _depends(module: Path) -> list[str]:
    data = module.read_bytes()
    start = data.find(b"\0depends=")
    if start < 0:
        return []
    end = data.index(b"\0", start + 1)
    text = data[start + len(b"\0depends="):end].decode()
    return [name.replace("-", "_") for name in text.split(",") if name]


def boot_modules(kernel: Kernel, names: tuple[str, ...] = BOOT_MODULES) -> list[Path]:
    """``names`` and what they depend on, dependencies first (``insmod`` order)."""
    index = _module_index(kernel)
    ordered: list[Path] = []

    def visit(name: str) -> None:
        path = index.get(name)
        if path is None:
            return  # built in
        if path in ordered:
            return
        for dependency in _depends(path):
            visit(dependency)
        ordered.append(path)

    for name in names:
        visit(name)
    return ordered


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
    pad = lambda n: b"\0" * (-n % 4)  # noqa: E731
    entry = header + name.encode() + b"\0"
    entry += pad(len(entry)) + data
    return entry + pad(len(data))


def initramfs(kernel: Kernel, init_script: str) -> bytes:
    """A newc cpio archive: busybox, the boot modules, ``/init``."""
    entries = []
    for directory in ("bin", "sbin", "dev", "proc", "sys", "host", "rw", "newroot", "modules", "lib"):
        entries.append((directory, 0o040755, b""))
    entries.append(("bin/busybox", 0o100755, BUSYBOX.read_bytes()))
    entries.append(("sbin/modprobe", 0o100755, b"#!/bin/busybox sh\nexec /bin/busybox modprobe \"$@\"\n"))
    order = []
    for module in boot_modules(kernel):
        entries.append((f"modules/{module.name}", 0o100644, module.read_bytes()))
        order.append(module.name)
    entries.append(("modules/order", 0o100644, ("\n".join(order) + "\n").encode()))
    entries.append(("init", 0o100755, init_script.encode()))
    archive = b"".join(_cpio_entry(name, mode, data, ino) for ino, (name, mode, data) in enumerate(entries, 1))
    return archive + _cpio_entry("TRAILER!!!", 0)


INIT = """#!/bin/busybox sh
# moorage's test VM: mount the host's / (9p, read-only) under a tmpfs overlay, cgroup2 only,
# run one command there, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host || poweroff -f
mount -t tmpfs -o size={tmpfs_size} tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || poweroff -f
# the kernel's modprobe (/sbin/modprobe here) finds the package's modules under /lib/modules
mkdir -p /lib/modules && ln -s /host{modules} /lib/modules/{version}
for dir in proc sys dev tmp run var/tmp; do mkdir -p /newroot/$dir; done
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
{mount_cgroups}
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs tmpfs /newroot/tmp
mount -t tmpfs tmpfs /newroot/run
mkdir -p /newroot/lib/modules/{version} && mount --bind /host{modules} /newroot/lib/modules/{version}
for m in {late_modules}; do modprobe $m 2>/dev/null; done
ip link set lo up
hostname moorage-vm
v2=$(cat /newroot/sys/fs/cgroup/cgroup.controllers 2>/dev/null)
echo "moorage-vm: up $(cut -d' ' -f1 /proc/uptime) s, cgroup2: $v2"
{run}
"""

#: the end of the init: run the command in the new root, report its status, power off
RUN_IN_CHROOT = """chroot /newroot /bin/sh -c {command} < /dev/console > /dev/console 2>&1
echo "{exit_mark}$?"
sync
poweroff -f"""

#: or: hand the new root to systemd as pid 1 (the host's own /lib/systemd/systemd), which starts
#: ``moorage-vm.target`` (``systemd.unit=`` on the kernel's command line): the default
#: dependencies (sysinit, sockets, basic) and one service that runs the command, prints its
#: status on the console and powers off
RUN_UNDER_SYSTEMD = """# the host may be a container (its /.dockerenv): systemd would then ignore the kernel's
# command line (systemd.unit=) and boot the host's default target
rm -f /newroot/.dockerenv /newroot/run/.containerenv
printf 'export MOORAGE_VM=1\\n%s\\n' {command} > /newroot/moorage-vm-command.sh
mkdir -p /newroot/etc/systemd/system
cat > /newroot/etc/systemd/system/moorage-vm.target <<'UNIT'
[Unit]
Description=moorage test VM
Requires=moorage-vm.service
After=moorage-vm.service
AllowIsolate=yes
UNIT
cat > /newroot/etc/systemd/system/moorage-vm.service <<'UNIT'
[Unit]
Description=moorage test VM: the command
After=basic.target
[Service]
Type=oneshot
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c '/bin/sh /moorage-vm-command.sh; echo "{exit_mark}$$?"; sync; systemctl poweroff -ff'
UNIT
exec switch_root /newroot /lib/systemd/systemd"""



@dataclass
class Result:
    status: int | None  # the command's exit status; None if the VM died or timed out first
    output: str
    seconds: float


def run(command: str, timeout: float = 1800, memory_mb: int = 3072, cpus: int = 2,
        tmpfs_size: str = "2g", echo: bool = False, cgroup: int = 2, systemd: bool = False) -> Result:
    """Boot the VM, run ``command`` (a shell command line, as root, in ``/`` of the host's tree
    seen read-write through the overlay) and return its exit status and console output.
    ``cgroup=1`` mounts v1 hierarchies instead of the unified one (for comparisons);
    ``systemd=True`` boots the host's systemd as pid 1 and runs ``command`` as a service."""
    if systemd and cgroup != 2:
        raise ValueError("systemd boots with the unified hierarchy only here")
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    kernel = find_kernel()
    assert kernel is not None
    end = (RUN_UNDER_SYSTEMD if systemd else RUN_IN_CHROOT).format(command=shlex.quote(command), exit_mark=EXIT_MARK)
    script = INIT.format(tmpfs_size=tmpfs_size, modules=kernel.modules, version=kernel.version,
                         late_modules=" ".join(LATE_MODULES), mount_cgroups=MOUNT_CGROUPS[cgroup], run=end)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="moorage-vm-") as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        initrd.write_bytes(initramfs(kernel, script))
        argv = [QEMU, "-accel", "tcg", "-cpu", "max", "-smp", str(cpus), "-m", str(memory_mb),
                "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
                "-append", "console=ttyS0 quiet loglevel=3 panic=-1 rw apparmor=0"
                + (" cgroup_no_v1=all" if cgroup == 2 else "")
                + (" systemd.unit=moorage-vm.target systemd.unified_cgroup_hierarchy=1" if systemd else ""),
                "-nographic", "-no-reboot", "-nic", "none", "-monitor", "none", "-serial", "stdio",
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines: list[str] = []
        status = None
        watchdog = threading.Timer(timeout, process.kill)  # a VM that hangs silently ends too
        watchdog.start()
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode(errors="replace").replace("\r", "")
                lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if line.startswith(EXIT_MARK):
                    status = int(line[len(EXIT_MARK):].strip() or 1)
            if not watchdog.is_alive():
                lines.append(f"moorage-vm: killed after {timeout:.0f} s\n")
        finally:
            watchdog.cancel()
            if process.poll() is None:
                try:
                    process.wait(timeout=30 if status is not None else 0.1)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return Result(status, "".join(lines), time.monotonic() - started)


REPO = Path(__file__).resolve().parents[2]
#: the issue's cgroup v2 tests, run in the VM for each exec driver (the contract's test names):
#: memory.max, memory.swap.max, cpu.weight and pids.max from the limits; a pids limit holds; pause
#: freezes (cgroup.freeze) and unpause thaws; kill reaches every process; a device outside the
#: allow-list is refused (EPERM) and a privileged container uses it; no cgroup is left after release
ISSUE_TESTS = ("test_v2_limits_in_the_containers_cgroup", "test_pids_limit_enforced",
               "test_pause_freezes_and_unpause_thaws", "test_kill_reaches_every_process",
               "test_device_outside_the_allow_list_cannot_be_opened", "test_release_leaves_nothing_and_forgets")
#: the issue tests that are the exec contract's (the others are the cgroups contract's)
EXEC_CONTRACT_TESTS = ("test_pids_limit_enforced", "test_release_leaves_nothing_and_forgets")
#: the contract classes each driver's tests define: (exec contract, cgroups contract, module stem)
DRIVER_CLASSES = {"native": ("TestNativeContract", "TestNativeCgroupsContract", "native"),
                  "lxc": ("TestLxcContract", "TestLxcCgroupsContract", "lxc")}


def must_pass() -> list[tuple[str, str]]:
    """(class, test) pairs of the bounded run: each must have run and passed (a skip fails)."""
    return [(contract if name in EXEC_CONTRACT_TESTS else cgroups, name)
            for contract, cgroups, _ in DRIVER_CLASSES.values() for name in ISSUE_TESTS]


def bounded() -> list[str]:
    """In the VM, by default and in CI (tests/vm/test_vm.py, about 10 minutes under TCG): the
    issue's tests for both drivers and the native driver's own leaf test; the rest of the
    cgroups contract (stats, pause edge cases) runs with ``--all``."""
    paths = [f"tests/exec/test_{stem}{'' if name in EXEC_CONTRACT_TESTS else '_cgroups'}.py::"
             f"{contract if name in EXEC_CONTRACT_TESTS else cgroups}::{name}"
             for contract, cgroups, stem in DRIVER_CLASSES.values() for name in ISSUE_TESTS]
    paths.append("tests/exec/test_native_cgroups.py::"
                 "test_daemon_moves_itself_into_a_leaf_when_its_cgroup_must_hold_children")
    return paths


BOUNDED = bounded()


def passed(output: str) -> set[tuple[str, str]]:
    """(class, test) of each ``PASSED`` line of pytest's ``-rA`` summary in ``output``."""
    return {(cls, name) for cls, name in re.findall(r"^PASSED \S+?::(\w+)::(\w+)", output, re.M)}


#: in the VM, ``--all``: the exec contract suite for both drivers and the API lifecycle tests
#: (tests/exec but test_log_bounds.py, not a cgroup matter, whose 1 GiB of log through each
#: driver takes long under TCG). The least tried in the VM come first: lxc's, then the API's.
ALL = [*(f"tests/exec/{name}.py" for name in ("test_lxc", "test_lxc_cgroups", "test_lxc_api")),
       "tests/api/test_containers.py", "tests/api/test_restore.py", "tests/api/test_lifecycle_hooks.py",
       *(f"tests/exec/{name}.py" for name in ("test_native", "test_native_cgroups", "test_native_exec",
                                              "test_confinement", "test_confinement_api", "test_users", "test_logs",
                                              "test_seccomp_program", "test_terminal",
                                              "test_inherited_signals"))]
#: in the VM booted with systemd as pid 1, by ``--all``: the shipped units (socket activation,
#: delegation, a restart with a container running)
SYSTEMD = ["tests/vm/systemd_case.py"]


def pytest_command(paths: list[str], extra: str = "") -> str:
    """The command line that runs pytest on ``paths`` from the worktree, in the VM."""
    python = REPO / ".venv" / "bin" / "python"
    # a test daemon's start takes minutes under TCG (tests/conftest.py's Daemon.wait_ready)
    return (f"cd {shlex.quote(str(REPO))} && MOORAGE_TEST_DAEMON_READY=600 "
            f"{shlex.quote(str(python))} -m pytest -p no:cacheprovider --color=no -v "
            f"-o addopts=-rA --timeout=900 {extra} " + " ".join(shlex.quote(p) for p in paths))


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        print(fetch().root)
    else:
        sys.exit("usage: python tests/vm/harness.py fetch")
