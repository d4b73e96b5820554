"""Device rules on cgroup v2: an eBPF program (``BPF_PROG_TYPE_CGROUP_DEVICE``) attached to the
container's cgroup, built from the same rule list the v1 ``devices`` controller is given
(``policy.DEVICE_WHITELIST``: ``"c 1:3 rwm"``, ``"c 136:* rwm"``...).

cgroup v2 has no devices controller: the kernel runs the programs attached to a cgroup (and
its ancestors) on every ``open`` and ``mknod`` of a device node by its processes, with the
device's type, major, minor and the access asked for; 1 allows, 0 refuses (``EPERM``). The
program generated here allows exactly what one of the rules matches and refuses everything
else, as the v1 controller's ``deny a`` plus ``allow`` lines do. It is attached with
``BPF_F_ALLOW_MULTI``: a program attached below (by a privileged nested runtime) can only
refuse more, never allow what this one refuses.

This module turns the rules into instructions (pure, testable without root); the small C
module ``_devfilter`` makes the ``bpf()`` calls (load, attach).
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from moorage.core.sdk.errors import DriverError, InvalidParameter
from moorage.drivers.exec.common.policy import DEVICE_WHITELIST

# struct bpf_cgroup_dev_ctx: u32 access_type ((access << 16) | type), u32 major, u32 minor
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACC_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE
_TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

# eBPF opcodes (linux/bpf_common.h, linux/bpf.h)
_LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
_ALU32_AND_K = 0x54  # dst32 &= imm
_ALU32_RSH_K = 0x74  # dst32 >>= imm
_ALU32_MOV_X = 0xBC  # dst32 = src32
_ALU64_MOV_K = 0xB7  # dst = imm
_JMP_JNE_K = 0x55  # if dst != imm: pc += off
_JMP_EXIT = 0x95
R0, R1, R2, R3, R4, R5 = range(6)  # R2: type, R3: access, R4: major, R5: minor; R1: scratch


@dataclass(frozen=True)
class DeviceRule:
    """One allow rule: ``type`` is None for any ("a"), ``major``/``minor`` None for ``*``."""

    type: int | None
    major: int | None
    minor: int | None
    access: int

    @classmethod
    def parse(cls, text: str) -> DeviceRule:
        """``"c 1:3 rwm"``, ``"b *:* m"``, or ``"a"`` (every device, every access)."""
        parts = text.split()
        if parts == ["a"]:
            return cls(None, None, None, ACC_ALL)
        if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1] or not parts[2]:
            raise InvalidParameter(f"invalid device rule {text!r}")
        major, minor = (None if n == "*" else _number(n, text) for n in parts[1].split(":", 1))
        access = 0
        for letter in parts[2]:
            if letter not in _ACCESS:
                raise InvalidParameter(f"invalid access {letter!r} in device rule {text!r}")
            access |= _ACCESS[letter]
        return cls(_TYPES.get(parts[0]), major, minor, access)


def _number(text: str, rule: str) -> int:
    if not text.isdigit() or int(text) >= 1 << 32:
        raise InvalidParameter(f"invalid device number {text!r} in device rule {rule!r}")
    return int(text)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _checks(rule: DeviceRule) -> list[tuple[int, int, int]]:
    """The rule's tests as (register, value, setup): each jumps to the next rule on mismatch."""
    checks = []
    if rule.type is not None:
        checks.append((R2, rule.type, 0))
    if rule.access != ACC_ALL:
        checks.append((R1, 0, ~rule.access & ACC_ALL))  # any access bit the rule does not grant
    if rule.major is not None:
        checks.append((R4, rule.major, 0))
    if rule.minor is not None:
        checks.append((R5, rule.minor, 0))
    return checks


def program(rules: list[DeviceRule]) -> bytes:
    """The instructions: load the request's fields, then one block per rule (allow and exit if
    every test of the rule passes, else fall to the next block), then refuse."""
    code = [
        _insn(_LDX_MEM_W, R2, R1, 0), _insn(_ALU32_AND_K, R2, imm=0xFFFF),  # device type
        _insn(_LDX_MEM_W, R3, R1, 0), _insn(_ALU32_RSH_K, R3, imm=16),  # access asked for
        _insn(_LDX_MEM_W, R4, R1, 4), _insn(_LDX_MEM_W, R5, R1, 8),  # major, minor
    ]
    for rule in rules:
        block: list[tuple[str, int, int, int]] = []
        for register, value, denied in _checks(rule):
            if register == R1:
                block.append(("mov", R1, R3, 0))
                block.append(("and", R1, denied, 0))
            block.append(("jne", register, value, 0))
        length = len(block) + 2  # the tests, then r0 = 1 and exit
        for index, (op, register, value, _) in enumerate(block):
            if op == "mov":
                code.append(_insn(_ALU32_MOV_X, register, value))
            elif op == "and":
                code.append(_insn(_ALU32_AND_K, register, imm=value))
            else:  # past this block's r0 = 1 and exit
                code.append(_insn(_JMP_JNE_K, register, off=length - index - 1, imm=value))
        code += [_insn(_ALU64_MOV_K, R0, imm=1), _insn(_JMP_EXIT)]
        if not block:  # matches everything: what follows is unreachable, which the verifier refuses
            return b"".join(code)
    code += [_insn(_ALU64_MOV_K, R0, imm=0), _insn(_JMP_EXIT)]
    return b"".join(code)


def parse_rules(texts: list[str] | tuple[str, ...]) -> list[DeviceRule]:
    return [DeviceRule.parse(text) for text in texts]


def available() -> bool:
    """Whether this kernel loads the device program of ``DEVICE_WHITELIST`` (dropped at once)."""
    from moorage.drivers.exec.native import _devfilter  # type: ignore[attr-defined]  # built from _devfilter.c at install

    return _devfilter.can_load(program(parse_rules(DEVICE_WHITELIST)))


class AllowList:
    """The program allowing exactly ``rules``, loaded once (the verifier runs once) and attached
    to each container's cgroup; an attachment keeps the program alive as long as its cgroup,
    so ``close`` (the driver's cleanup) never weakens a running container."""

    def __init__(self, rules: list[str] | tuple[str, ...] = DEVICE_WHITELIST) -> None:
        self.code = program(parse_rules(rules))
        self._fd: int | None = None
        self._lock = threading.Lock()

    def attach(self, cgroup: Path) -> None:
        """Attach the program to the cgroup directory; ``DriverError`` if the kernel refuses."""
        from moorage.drivers.exec.native import _devfilter  # type: ignore[attr-defined]

        try:
            with self._lock:
                if self._fd is None:
                    self._fd = _devfilter.load(self.code)
                fd = self._fd
                _devfilter.attach_program(str(cgroup), fd)
        except OSError as exc:
            raise DriverError(f"cannot attach the device filter to {cgroup}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def attach_allow_list(cgroup: Path, rules: list[str] | tuple[str, ...]) -> None:
    """Load the program allowing exactly ``rules`` and attach it to the cgroup directory
    ``cgroup`` (no fd kept). ``DriverError`` if the kernel refuses it."""
    allow_list = AllowList(rules)
    try:
        allow_list.attach(cgroup)
    finally:
        allow_list.close()
