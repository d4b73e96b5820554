"""Running a Dockerfile (reference §6.1): one image per instruction, with the cache.

``Builder.build(context)`` writes the 1.6 plain-text output through ``write`` as it goes and
returns the final image id; a failure raises (the API turns it into ``Error build: ...`` or a
500). RUN and ADD work in real containers made by core's container service and run by its
runner, so they use the daemon's configured graph, exec and network drivers. Metadata steps
(MAINTAINER, CMD, ENTRYPOINT, ENV, EXPOSE, USER, WORKDIR, VOLUME) run nothing: their image is
registered directly with an empty layer, its ``container_config`` being the config a container
for the step would have had (Cmd ``/bin/sh -c #(nop) ...``).
"""

from __future__ import annotations

import copy
import io
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.sdk.ids import short_id
from moorage.core.sdk.logs import LogPosition, follow_log
from moorage.core.services.container_config import DEFAULT_PATH, merge_with_image, normalize_config, parse_port_spec
from moorage.core.services.container_files import safe_join
from moorage.core.services.container_filesystem import ContainerFilesystem
from moorage.core.services.container_model import ContainerConfig
from moorage.core.services.containers import ContainerService
from moorage.core.services.distribution import Distribution
from moorage.core.services.images import ImageService
from moorage.core.services.runner import Runner
from moorage.core.services.tags import DEFAULT_TAG, parse_repository_tag
from moorage.plugins.builder import add, cache
from moorage.plugins.builder.context import download
from moorage.plugins.builder.dockerfile import json_or_shell, json_or_single, parse, substitute
from moorage.plugins.builder.interrupted import IntermediateRecord

log = logging.getLogger(__name__)

#: an empty tar (two zero blocks): the layer of a metadata step
EMPTY_LAYER = bytes(1024)
LOG_POLL_SECONDS = 0.05


@dataclass
class BuildOptions:
    """The query parameters of ``POST /build``."""

    tag: str = ""
    quiet: bool = False
    nocache: bool = False
    rm: bool = False
    auth: dict | None = None
    #: beyond 1.6 (today's CLI): the Dockerfile's path in the context, and pull the FROM image
    #: even when it is here
    dockerfile: str = "Dockerfile"
    pull: bool = False
    #: ``--build-arg`` values, for the Dockerfile's ``ARG`` instructions
    build_args: dict[str, str] = field(default_factory=dict)


def go_list(values: list[str]) -> str:
    """A string list as Go's ``%v`` printed it: ``[a b c]``."""
    return "[" + " ".join(values) + "]"


class Builder:
    """One build. ``write(text)`` receives output as it is produced (whole lines)."""

    def __init__(self, images: ImageService, containers: ContainerService, runner: Runner,
                 distribution: Distribution | None, write: Callable[[str], None],
                 options: BuildOptions | None = None) -> None:
        self.write = write
        self.options = options or BuildOptions()
        self.images = images
        self.containers = containers
        self.runner = runner
        #: FROM pulls an image it does not have through it; None: no registry driver
        self.distribution = distribution
        self.image = ""
        self.config = ContainerConfig()
        self.maintainer = ""
        self.context = Path()
        #: set by ``build``: each intermediate container is noted there before it exists
        self.record: IntermediateRecord | None = None
        #: containers made for RUN and ADD steps, removed after success with ``rm``
        self.intermediate: list[str] = []
        #: the ``ARG`` values in force: seen by RUN and by substitution, not kept in the image
        self.args: dict[str, str] = {}
        self.declared_args: set[str] = set()

    # -- the build ---------------------------------------------------------------------------
    def build(self, context: Path) -> str:
        """Run the Dockerfile of ``context``, a directory inside the build's own directory
        (``context.build_context``), which also holds ADD's scratch files and the record of
        intermediate containers."""
        self.context = context
        self.record = IntermediateRecord(context.parent)
        dockerfile = safe_join(context, self.options.dockerfile or "Dockerfile", follow_last=True)
        if not dockerfile.is_file():
            if (self.options.dockerfile or "Dockerfile") != "Dockerfile":
                raise InvalidParameter(f"Cannot locate specified Dockerfile: {self.options.dockerfile}")
            raise InvalidParameter("Can't build a directory with no Dockerfile")
        step = 0
        for instruction in parse(dockerfile.read_text(errors="replace")):
            if instruction.error:
                raise InvalidParameter(instruction.error)
            method = getattr(self, f"step_{instruction.name}", None) if instruction.name.isalpha() else None
            if method is None:
                self.write(f"# Skipping unknown instruction {instruction.name.upper()}\n")
                continue
            step += 1
            self.write(f"Step {step} : {instruction.name.upper()} {instruction.args}\n")
            method(instruction.args)
            self.write(f" ---> {short_id(self.image)}\n")
        if not self.image:
            raise InvalidParameter("An error occurred during the build")
        unused = sorted(set(self.options.build_args) - self.declared_args)
        if unused:
            self.write(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        self.write(f"Successfully built {short_id(self.image)}\n")
        if self.options.rm:
            for cid in self.intermediate:
                self.containers.remove(cid, volumes=True)  # their volumes are nobody's
                self.write(f"Removing intermediate container {short_id(cid)}\n")
        # done with them: removed, or kept on purpose (no ``rm``); a kill now leaves them be
        self.record.clear()
        if self.options.tag:
            repo, tag = parse_repository_tag(self.options.tag)
            self.images.tag(repo, tag or DEFAULT_TAG, self.image)
        return self.image

    # -- helpers -----------------------------------------------------------------------------
    def _need_image(self, what: str) -> None:
        if not self.image:
            raise InvalidParameter(f"Please provide a source image with `from` prior to {what}")

    def _step_config(self, cmd: list[str]) -> ContainerConfig:
        self.config.image = self.image  # as Docker's: each image's config names its parent
        config = self.config.copy_deep()
        config.cmd = cmd
        return config

    def _as_created(self, config: ContainerConfig) -> dict:
        """The config a container made from ``config`` gets (merged with the image's), which is
        what its image records as ``container_config`` and what the cache compares."""
        created = config.copy_deep()
        merge_with_image(created, self.images.get(self.image).config)
        return created.to_api()

    def _cached(self, config: ContainerConfig, comment: str = "") -> bool:
        if self.options.nocache:
            return False
        hit = cache.find_cached(self.images, self.image, self._as_created(config), comment)
        if hit is None:
            return False
        self.write(" ---> Using cache\n")
        self.image = hit
        return True

    def _commit_metadata(self, text: str) -> None:
        """A step that changes only the config: an image with an empty layer."""
        self._need_image("commit")
        config = self._step_config(["/bin/sh", "-c", f"#(nop) {text}"])
        if self._cached(config):
            return
        image = self.images.new_image(parent=self.image, container_config=self._as_created(config),
                                      config=self.config.to_api(), author=self.maintainer)
        self.images.register(image, io.BytesIO(EMPTY_LAYER))
        self.image = image.id

    def _container(self, config: ContainerConfig):
        container = self.record.create(self.containers, config.to_api())
        self.intermediate.append(container.id)
        return container

    def _commit(self, container, comment: str = "") -> None:
        self.image = ContainerFilesystem(self.containers).commit(container.id, comment=comment,
                                                                 config=self.config.to_api(), author=self.maintainer)

    def _follow_output(self, container) -> None:
        """Copy the container's output lines (from its log, rotated files included) into the
        build output until it exits."""
        position = LogPosition()
        while True:
            done = container.exited.wait(LOG_POLL_SECONDS)
            for entry, after in follow_log(container.log_path, position):
                self.write(entry.log)
                position = after  # the next poll resumes there
            if done:
                return

    def _pull(self, name: str) -> None:
        if self.distribution is None:
            raise NotFound(f"No such image: {name}")
        repo, tag = parse_repository_tag(name)

        def progress(update) -> None:
            if isinstance(update, dict):
                text = " ".join(str(update[k]) for k in ("status", "progress") if update.get(k))
                if update.get("id"):
                    text = f"{update['id']}: {text}"
                if update.get("error"):
                    text = f"Error: {update['error']}"
            else:
                text = str(update)
            if text:
                self.write(text.rstrip("\r\n") + "\n")

        self.distribution.pull(repo, tag or DEFAULT_TAG, self.options.auth, progress)

    # -- instructions ------------------------------------------------------------------------
    def step_from(self, args: str) -> None:
        image = self.images.lookup(args)
        if image is None or self.options.pull:
            self._pull(args)
            image = self.images.lookup(args)
            if image is None:
                raise NotFound(f"No such image: {args}")
        self.image = image.id
        # Docker 0.7.0 inherits the base image's config (0.6.5 started from an empty one)
        self.config = normalize_config(copy.deepcopy(image.config)) if image.config else ContainerConfig()
        if not self.config.env:
            self.config.env = ["HOME=/", f"PATH={DEFAULT_PATH}"]

    def step_maintainer(self, args: str) -> None:
        self.maintainer = args
        self._commit_metadata(f"MAINTAINER {args}")

    def _env(self) -> list[str]:
        """The environment RUN and substitution see: ``ARG`` values under the config's ``Env``."""
        set_by_env = {e.split("=", 1)[0] for e in self.config.env or []}
        return [f"{k}={v}" for k, v in self.args.items() if k not in set_by_env] + list(self.config.env or [])

    def step_arg(self, args: str) -> None:
        """``ARG name[=default]`` (Docker 1.9): the ``--build-arg`` value, else the default."""
        self._need_image("arg")
        name, has_default, default = args.strip().partition("=")
        if not name or any(c.isspace() for c in name):
            raise InvalidParameter(f"ARG requires a name, with an optional =default: {args!r}")
        self.declared_args.add(name)
        if name in self.options.build_args:
            self.args[name] = self.options.build_args[name]
        elif has_default:
            self.args[name] = substitute(default, self._env())
        self._commit_metadata(f"ARG {args.strip()}")

    def step_run(self, args: str) -> None:
        self._need_image("run")
        cmd = ["/bin/sh", "-c", args]
        config = self._step_config(cmd)
        if self.args:
            config.env = self._env()
        if self._cached(config):
            return
        container = self._container(config)
        # RUN ignores the image's entrypoint: the process is the shell command alone
        container.path, container.args = cmd[0], cmd[1:]
        self.containers.save(container)
        self.write(f" ---> Running in {short_id(container.id)}\n")
        self.runner.start(container.id)
        if self.options.quiet:
            container.exited.wait()
        else:
            self._follow_output(container)
        code = self.runner.wait(container.id)
        if code != 0:
            raise InvalidParameter(f"The command {go_list(cmd)} returned a non-zero code: {code}")
        self._commit(container)

    def step_cmd(self, args: str) -> None:
        self.config.cmd = json_or_shell(args)
        self._commit_metadata(f"CMD {go_list(self.config.cmd)}")

    def step_entrypoint(self, args: str) -> None:
        entrypoint = json_or_shell(args)
        if not entrypoint:
            raise InvalidParameter("Entrypoint cannot be empty")
        self.config.entrypoint = entrypoint
        self._commit_metadata(f"ENTRYPOINT {go_list(entrypoint)}")

    def step_expose(self, args: str) -> None:
        ports = args.split()
        for spec in ports:
            parse_port_spec(spec)  # refuse a bad port now rather than at the next container
        self.config.port_specs = ports + (self.config.port_specs or [])
        self._commit_metadata(f"EXPOSE {go_list(ports)}")

    def step_env(self, args: str) -> None:
        key, sep, value = args.partition(" ")
        key, value = key.strip(" \t"), value.strip(" \t")
        if not sep or not key:
            raise InvalidParameter("Invalid ENV format")
        value = substitute(value, self._env())
        env = list(self.config.env or [])
        for i, entry in enumerate(env):
            if entry.split("=", 1)[0] == key:
                env[i] = f"{key}={value}"
                break
        else:
            env.append(f"{key}={value}")
        self.config.env = env
        self._commit_metadata(f"ENV {key}={value}")

    def step_user(self, args: str) -> None:
        self.config.user = args
        self._commit_metadata(f"USER {args}")

    def step_workdir(self, args: str) -> None:
        self.config.working_dir = args
        self._commit_metadata(f"WORKDIR {args}")

    def step_volume(self, args: str) -> None:
        volumes = json_or_single(args)
        if not volumes or not all(volumes):
            raise InvalidParameter("Volume cannot be empty")
        merged = dict(self.config.volumes or {})
        merged.update({v: {} for v in volumes})
        self.config.volumes = merged
        self._commit_metadata(f"VOLUME {args}")

    def step_insert(self, args: str) -> None:
        raise InvalidParameter("INSERT has been deprecated. Please use ADD instead")

    def step_copy(self, args: str) -> None:
        raise InvalidParameter("COPY has been deprecated. Please use ADD instead")

    def step_add(self, args: str) -> None:
        self._need_image("add")
        src, sep, dest = args.partition(" ")
        src, dest = substitute(src.strip(" \t"), self._env()), substitute(dest.strip(" \t"), self._env())
        if not sep or not src or not dest:
            raise InvalidParameter("Invalid ADD format")
        config = self._step_config(["/bin/sh", "-c", f"#(nop) ADD {src} in {dest}"])
        # next to the context: inside the build's own (locked) directory
        with tempfile.TemporaryDirectory(prefix="add-", dir=self.context.parent) as scratch:
            is_url = src.startswith(("http://", "https://"))
            if is_url:
                source = Path(scratch) / "download"
                download(src, source)
                digest = cache.content_hash(source, "url", src)
            else:
                source = add.context_source(self.context, src)
                digest = cache.content_hash(source, "context", src)
            comment = cache.ADD_COMMENT.format(digest=digest)
            if self._cached(config, comment):
                return
            container = self._container(config)
            graph = self.containers.graph
            rootfs = graph.get(container.id)
            try:
                if is_url:
                    add.add_download(source, rootfs, src, dest)
                else:
                    add.add_local(source, rootfs, src, dest)
            finally:
                graph.put(container.id)
        self._commit(container, comment)
