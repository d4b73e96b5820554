"""The native driver's compiled seccomp program: laid out as a binary tree of syscall numbers (a
cheaper load at every start), it must decide every system call exactly as libseccomp's default
chain does. Both programs are run here by a small classic-BPF interpreter on every syscall
number of x86_64, i386 and x32, with arguments that the profile's conditions look at. No root
needed: nothing is loaded."""

from __future__ import annotations

import random
import struct

import pytest

from moorage.core.sdk.security import CAPABILITIES, DEFAULT_CAPABILITIES, Confinement

nsinit = pytest.importorskip("moorage.drivers.exec.native._nsinit")
from moorage.drivers.exec.native import container  # noqa: E402 - after the skip

AUDIT_ARCH_X86_64, AUDIT_ARCH_I386 = 0xC000003E, 0x40000003
X32 = 0x40000000
#: argument values the default profile's conditions test (clone flags, personality, socket families...)
VALUES = (0, 1, 2, 8, 0x10, 0x21, 0x80, 0x100, 0x131, 0xFFFF, 0x20000, 0x7E020000, 0x10000000, 0x20000000,
          0x40000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def decide(program: list[tuple[int, int, int, int]], data: bytes) -> int:
    """What a classic-BPF seccomp ``program`` returns for ``struct seccomp_data`` ``data``."""
    a = x = pc = 0
    scratch = [0] * 16
    for _ in range(len(program) + 1):  # classic BPF only jumps forward
        code, jt, jf, k = program[pc]
        pc += 1
        kind = code & 0x07
        if kind == 0x00:  # LD
            mode = code & 0xE0
            a = struct.unpack_from("<I", data, k)[0] if mode == 0x20 else scratch[k] if mode == 0x60 else k
        elif kind == 0x01:  # LDX
            x = scratch[k] if code & 0xE0 == 0x60 else k
        elif kind in (0x02, 0x03):  # ST, STX
            scratch[k] = a if kind == 0x02 else x
        elif kind == 0x04:  # ALU
            operand = x if code & 0x08 else k
            a = {0x00: a + operand, 0x10: a - operand, 0x40: a | operand, 0x50: a & operand,
                 0x60: a << operand, 0x70: a >> operand, 0x80: -a, 0xA0: a ^ operand}[code & 0xF0] & 0xFFFFFFFF
        elif kind == 0x05:  # JMP
            operand = x if code & 0x08 else k
            operation = code & 0xF0
            if operation == 0x00:
                pc += k
                continue
            taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand, 0x40: bool(a & operand)}[operation]
            pc += jt if taken else jf
        elif kind == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        else:  # MISC: TAX, TXA
            if code & 0xF8 == 0:
                x = a
            else:
                a = x
    raise AssertionError("the program ran past its end")


def instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]


@pytest.mark.parametrize("capabilities", [DEFAULT_CAPABILITIES, tuple(CAPABILITIES)], ids=["default", "all"])
def test_tree_decides_as_the_chain(capabilities):
    spec = container.seccomp_argument(Confinement(capabilities=frozenset(capabilities)).seccomp_filter().to_json())
    tree = instructions(nsinit.compile_filter(spec))
    chain = instructions(nsinit.compile_filter(spec, tree=False))
    assert tree != chain  # two layouts compared, not one program with itself
    rng = random.Random(12)
    cases = 0
    for arch, numbers in ((AUDIT_ARCH_X86_64, range(0, 470)), (AUDIT_ARCH_X86_64, range(X32, X32 + 560)),
                          (AUDIT_ARCH_I386, range(0, 470)), (0x1234, range(0, 3))):
        for nr in numbers:
            args = [rng.choice(VALUES) | (rng.choice((0, 0, 1, 0xFFFFFFFF)) << 32) for _ in range(6)]
            data = struct.pack("<IIQ6Q", nr, arch, 0, *args)
            assert decide(tree, data) == decide(chain, data), (hex(arch), nr, [hex(v) for v in args])
            cases += 1
    assert cases > 1500


def test_the_interpreter_sees_the_profile():
    """A check that the comparison can fail: the interpreter refuses what the profile refuses."""
    spec = container.seccomp_argument(Confinement().seccomp_filter().to_json())
    program = instructions(nsinit.compile_filter(spec))
    allow = 0x7FFF0000

    def action(nr: int, arch: int = AUDIT_ARCH_X86_64) -> int:
        return decide(program, struct.pack("<IIQ6Q", nr, arch, 0, 0, 0, 0, 0, 0, 0))

    assert action(0) == allow  # read
    assert action(298) != allow  # perf_event_open
    assert action(304) != allow  # open_by_handle_at
    assert action(165) != allow  # mount
    assert action(0, arch=0x1234) != allow  # an architecture the filter does not know
