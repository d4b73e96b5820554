"""``/version`` and ``/info`` in today's shapes (API 1.24 and above): the same facts as the 1.6
answers (``api/http/system.py``), with the keys today's clients read (``Components``,
``CgroupVersion``, ``CgroupDriver``, ``SecurityOptions``, ``Runtimes``, ``Swarm``...)."""

from __future__ import annotations

import hashlib
import os
import platform
import time
from pathlib import Path

from moorage.api import MODERN_MAX
from moorage.core import __version__
from moorage.core.kernel.kernel import Kernel
from moorage.core.sdk.security import UNCONFINED

NEWEST_STR = "{}.{}".format(*MODERN_MAX)


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def go_time(seconds: float) -> str:
    """RFC 3339 with nanoseconds, as Go prints a ``time.Time``."""
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1e9):09d}Z"


def cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def modern_version(commit: str) -> dict:
    """``GET /v1.NN/version``: the engine as the one component."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    details = {"ApiVersion": NEWEST_STR, "Arch": arch(), "BuildTime": "", "Experimental": "false",
               "GitCommit": commit, "GoVersion": python, "KernelVersion": platform.release(),
               "MinAPIVersion": "1.0", "Os": "linux"}
    return {"Platform": {"Name": "moorage"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__, "ApiVersion": NEWEST_STR, "MinAPIVersion": "1.0", "GitCommit": commit,
            "GoVersion": python, "Os": "linux", "Arch": arch(), "KernelVersion": platform.release(),
            "BuildTime": ""}


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def security_options(kernel: Kernel) -> list[str]:
    options = []
    if Path("/sys/kernel/security/apparmor").exists():
        options.append("name=apparmor")
    profile = kernel.config.security.seccomp_profile
    if profile != UNCONFINED:
        options.append("name=seccomp,profile=" + ("builtin" if profile in ("", "default") else profile))
    return options


def modern_info(kernel: Kernel, legacy: dict) -> dict:
    """``GET /v1.NN/info``; ``legacy`` is the 1.6 object (``system.collect_info``)."""
    services = kernel.services
    containers = services.containers.all() if services.containers is not None else []
    running = sum(1 for c in containers if c.state.running and not c.state.paused)
    paused = sum(1 for c in containers if c.state.paused)
    exec_driver = kernel.drivers.exec
    graph = kernel.drivers.graph
    runtime = exec_driver.name if exec_driver else ""
    memory_limit, swap_limit = legacy.get("MemoryLimit", False), legacy.get("SwapLimit", False)
    return {
        "ID": hashlib.sha256(str(kernel.config.daemon.root).encode()).hexdigest()[:32],
        "Containers": len(containers), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": legacy.get("Images", 0),
        "Driver": graph.name if graph else "",
        "DriverStatus": legacy.get("DriverStatus", []),
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": memory_limit, "SwapLimit": swap_limit,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "OomKillDisable": cgroup_version() == "1",
        "IPv4Forwarding": legacy.get("IPv4Forwarding", False),
        "Debug": legacy.get("Debug", False), "NFd": legacy.get("NFd", 0),
        "NGoroutines": legacy.get("NGoroutines", 0), "SystemTime": go_time(time.time()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup_version(),
        "NEventsListener": kernel.events.subscribers, "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "GenericResources": None, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": platform.node(), "Labels": [], "ExperimentalBuild": False, "ServerVersion": __version__,
        "Runtimes": {runtime: {"path": f"moorage-{runtime}"}} if runtime else {},
        "DefaultRuntime": runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": security_options(kernel),
        "Warnings": [] if swap_limit else ["WARNING: No swap limit support"],
        "Drivers": legacy.get("Drivers", {}),
    }
