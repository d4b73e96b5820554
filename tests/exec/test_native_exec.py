"""The native exec helper runs as root with every capability inside the container's mount
namespace until it confines itself: from ``setns`` on, no module may be imported (it would be
the container's file)."""

from __future__ import annotations

import subprocess
import sys


def test_the_helper_cannot_import_once_it_enters_the_container(tmp_path):
    planted = tmp_path / "planted_by_container.py"
    planted.write_text("open(__file__ + '.ran', 'w').close()\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from moorage.drivers.exec.native import nsexec; "
            "nsexec._no_more_imports()\n"
            "try:\n    import planted_by_container\nexcept ImportError:\n    print('refused')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "refused", done.stderr
    assert not (tmp_path / "planted_by_container.py.ran").exists()
