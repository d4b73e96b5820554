"""ADD and COPY (docs/build.md, "ADD and COPY"): several sources and wildcards, ``--chown``,
``--chmod`` and ``COPY --from``, cached by the hash of what they copy."""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path

from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.plugins.builder import add, cache
from moorage.plugins.builder.context import download
from moorage.plugins.builder.dockerfile import Instruction, json_or_words
from moorage.plugins.builder.shell_words import process_word
from moorage.plugins.builder.sources import find_sources, lookup_owner, parse_chmod


def _is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


class FileSteps:
    """ADD and COPY (a mixin of ``Builder``)."""

    def step_add(self, instruction: Instruction) -> None:
        self._copy_step(instruction, is_add=True)

    def step_copy(self, instruction: Instruction) -> None:
        self._copy_step(instruction, is_add=False)

    @contextlib.contextmanager
    def _source_root(self, source: str | None) -> Iterator[Path]:
        """The tree sources are read from: the context, or the filesystem of ``--from``'s
        stage (a name or an index) or image."""
        if source is None:
            yield self.context
            return
        image_id = self.stage_image(source)
        if image_id is None:
            image = self.images.lookup(source)
            if image is None:
                self._pull(source)
                image = self.images.lookup(source)
            if image is None:
                raise NotFound(f"No such image: {source}")
            image_id = image.id
        graph = self.containers.graph
        root = graph.get(image_id)
        try:
            yield root
        finally:
            graph.put(image_id)

    def _copy_step(self, instruction: Instruction, is_add: bool) -> None:
        name = "ADD" if is_add else "COPY"
        self._need_image(name.lower())
        env = self._env_map()
        words = [process_word(w, env, instruction.escape) for w in json_or_words(instruction.args)]
        if len(words) < 2 or not words[-1]:
            raise InvalidParameter(f"Invalid {name} format: {name} requires at least two arguments")
        srcs, dest = words[:-1], words[-1]
        if not dest.startswith("/"):  # relative to WORKDIR, a trailing / kept
            dest = posixpath.join(self.config.working_dir or "/", dest)
        for changes_the_result in ("exclude", "parents", "checksum"):  # ignoring one would copy the wrong files
            if instruction.flag(changes_the_result) is not None:
                raise InvalidParameter(f"the --{changes_the_result} option requires BuildKit, which moorage's "
                                       "classic builder is not")
        chown, chmod, origin = instruction.flag("chown"), instruction.flag("chmod"), instruction.flag("from")
        mode = parse_chmod(chmod)
        if origin is not None and is_add:
            raise InvalidParameter("ADD does not take --from: use COPY --from")
        text = f"{name} {' '.join(srcs)} in {dest}"
        config = self._step_config(["/bin/sh", "-c", f"#(nop) {text}"])
        # next to the context: inside the build's own (locked) directory
        with tempfile.TemporaryDirectory(prefix="add-", dir=self.context.parent) as scratch, \
                self._source_root(origin) as root:
            sources: list[tuple[str, Path, bool]] = []
            for i, src in enumerate(srcs):
                if _is_url(src):
                    if not is_add:
                        raise InvalidParameter(f"source can't be a URL for COPY: {src}")
                    target = Path(scratch) / f"download-{i}"
                    download(src, target)
                    sources.append((src, target, True))
                else:
                    sources.extend((rel, path, False) for rel, path in find_sources(root, src))
            if len(sources) > 1 and not dest.endswith("/"):
                raise InvalidParameter(f"When using {name} with more than one source file, the destination must be "
                                       "a directory and end with a /")
            digest = hashlib.sha256()
            for src, path, is_url in sources:
                digest.update(cache.content_hash(path, "url" if is_url else "context", src).encode())
            for extra in (chown or "", chmod or "", origin or ""):
                digest.update(b"\0" + extra.encode())
            comment = cache.ADD_COMMENT.format(digest=digest.hexdigest())
            if name == "COPY":
                comment = comment.replace(" ADD ", " COPY ")
            if self._cached(config, comment):
                return
            container = self._container(config)
            graph = self.containers.graph
            rootfs = graph.get(container.id)
            try:
                owner = lookup_owner(rootfs, chown)
                for src, path, is_url in sources:
                    if is_url:
                        add.add_download(path, rootfs, src, dest, mode, owner)
                    else:
                        add.add_local(path, rootfs, src, dest, mode, owner, extract=is_add)
            finally:
                graph.put(container.id)
        self._commit(container, comment)
