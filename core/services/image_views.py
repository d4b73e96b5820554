"""The image service's read-only views: ``GET /images/json`` rows, history, the graphviz tree;
and Go's ``path.Match`` for the list's filter."""

from __future__ import annotations

import re
from typing import Any

from moorage.core.sdk.ids import short_id
from moorage.core.services.image_model import Image
from moorage.core.services.tags import (
    TagStore,
)


class ImageViews:
    """What ``ImageService`` shows of its images (mixed into it: it reads the service's
    ``tags``, ``_images`` and lookups)."""

    tags: TagStore
    _images: dict[str, Image]

    def heads(self) -> list[Image]:
        """Images that are nobody's parent."""
        parents = {i.parent for i in self.all() if i.parent}
        return [i for i in self.all() if i.id not in parents]

    def list_rows(self, all: bool = False, filter: str = "") -> list[dict]:
        """``GET /images/json`` rows (1.6): one per repo:tag, then untagged images. Each row also
        carries ``RepoTags`` (its own ``repo:tag``, or ``<none>:<none>``), which 1.7+ clients such
        as today's docker CLI read and a 1.6 client ignores."""
        untagged = {i.id: i for i in (self.all() if all else self.heads())}
        rows = []
        for repo, tags in self.tags.repositories().items():
            if filter and not glob_match(filter, repo):
                continue
            for tag, image_id in tags.items():
                image = self._images.get(image_id)
                if image is None:
                    continue
                untagged.pop(image_id, None)
                rows.append({"Repository": repo, "Tag": tag, **self._row(image), "RepoTags": [f"{repo}:{tag}"]})
        if not filter:
            tagged = set(self.tags.by_id())
            rows.extend({**self._row(i), "RepoTags": ["<none>:<none>"]} for i in untagged.values()
                        if i.id not in tagged)
        rows.sort(key=lambda r: (-r["Created"], r.get("Tag", ""), r.get("Repository", ""), r["Id"]))
        return rows

    def _row(self, image: Image) -> dict:
        return {"Id": image.id, "Created": image.created_unix, "Size": image.size,
                "VirtualSize": self.virtual_size(image)}

    def history(self, name: str) -> list[dict]:
        image = self.resolve(name, "Image does not exist: {name}")
        by_id = self.tags.by_id()
        rows = []
        for item in self.ancestry(image.id):
            row: dict[str, Any] = {"Id": item.short_id}
            if by_id.get(item.id):
                row["Tags"] = by_id[item.id]
            row["Created"] = item.created_unix
            cmd = (item.container_config or {}).get("Cmd") or []
            if cmd:
                row["CreatedBy"] = " ".join(cmd)
            rows.append(row)
        return rows

    def viz(self) -> str:
        """Graphviz dot of the image tree (reference §5.3)."""
        images = sorted(self.all(), key=lambda i: (i.created_unix, i.id))
        lines = ["digraph docker {"]
        for image in images:
            if image.parent:
                lines.append(f' "{short_id(image.parent)}" -> "{image.short_id}"')
            else:
                lines.append(f' base -> "{image.short_id}" [style=invis]')
        for image_id, names in sorted(self.tags.by_id().items()):
            label = "\\n".join([short_id(image_id), *names])
            lines.append(f' "{short_id(image_id)}" [label="{label}",shape=box,fillcolor="paleturquoise",'
                         f'style="filled,rounded"];')
        lines.append(" base [style=invisible]")
        lines.append("}")
        return "\n".join(lines) + "\n"


def glob_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` never match ``/``; a bad pattern matches nothing."""
    regex = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            regex.append("[^/]*")
        elif c == "?":
            regex.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            regex.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] == "^" else i + 1)
            if end < 0:
                return False
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            if not body:
                return False
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            regex.append(f"[{'^/' if negate else ''}{body}]")
            i = end
        else:
            regex.append(re.escape(c))
        i += 1
    try:
        return re.fullmatch("".join(regex), name) is not None
    except re.error:
        return False
