"""The busybox root filesystem the suites use; it lives in the SDK (``moorage.core.sdk.rootfs``).

Kept as a re-export for ``moorage.core.testing.plugin`` and the tests until they import the
SDK directly.
"""

from moorage.core.sdk.rootfs import busybox_available, find_busybox, make_busybox_rootfs, tar_directory

__all__ = ["busybox_available", "find_busybox", "make_busybox_rootfs", "tar_directory"]
