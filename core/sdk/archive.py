"""Safe tar handling shared by every part of moorage that reads or writes tars: this module
names the whole; the code is in ``tarformat`` (names, compression), ``extract`` (confined
extraction) and ``tarstream`` (writing), and every name is importable from here.

Reading: ``open_decompressed`` detects gzip, bzip2 and xz by their magic bytes (anything else
is read as a plain tar); ``extract_layer`` applies a tar to a directory confined to it,
translating the whiteout entries (``.wh.<name>``, ``.wh..wh..opq``) through a ``Whiteouts``
strategy: ``DeleteWhiteouts`` deletes what they hide (a directory holding the whole
filesystem), ``OverlayWhiteouts`` writes overlayfs whiteouts (an upper dir).
``extract_in_root`` extracts into a container directory (``ADD x.tar``, ``PUT .../archive``).

Writing: ``TarWriter`` produces a tar as a stream of byte chunks (nothing is buffered beyond one
read block, so a 200 MB file does not sit in memory); ``layer_tar`` writes the layer tar of a
change list, ``tree_tar`` a whole directory (export) and ``tree_tar_in_root`` one container
path (copy). Every tree is walked by directory descriptors that never follow a symlink.

Safety rules of extraction (hostile archives raise ``InvalidParameter``), all enforced by the
kernel through ``moorage.core.sdk.untrusted_tree`` (no path is checked as a string and then used):

- a leading ``/`` is dropped; ``..`` may not climb above the target; no NUL in a name;
- every entry is created relative to its parent directory's descriptor, reached by an
  ``O_NOFOLLOW`` walk from the target: a symlink on the way is refused, the last component is
  never followed (an existing symlink is replaced, not written through), and no path cache
  can go stale (whiteouts and opaque markers remove by descriptor too);
- a hardlink is a ``linkat`` between two descriptors of the target: only to what is in it;
- device nodes only where the caller allows them (``allow_devices``); ``trusted.overlay.*``
  xattrs never.
"""

from moorage.core.sdk.extract import (  # noqa: F401
    DeleteWhiteouts,
    OverlayWhiteouts,
    Whiteouts,
    extract_in_root,
    extract_layer,
    mtime_ns,
    write_file_in_root,
)
from moorage.core.sdk.tarformat import (  # noqa: F401
    OVERLAY_OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    IterStream,
    clean_name,
    detect_compression,
    open_decompressed,
    remove_path,
    whiteout_name,
)
from moorage.core.sdk.tarstream import Chunks, TarWriter, layer_tar, tree_tar, tree_tar_at, tree_tar_in_root  # noqa: F401
from moorage.core.sdk.untrusted_tree import open_in_root, resolve_in_root  # noqa: F401  (drivers import them from here)
