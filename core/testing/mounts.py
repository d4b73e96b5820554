"""The mount helpers the suites use; they live in the SDK (``moorage.core.sdk.mounts``).

Kept as a re-export for ``moorage.core.testing.plugin`` until it imports the SDK directly.
"""

from moorage.core.sdk.mounts import mounts_below, unmount_below

__all__ = ["mounts_below", "unmount_below"]
