"""Running a Dockerfile (reference §6.1): one image per instruction, with the cache.

``Builder.build(context)`` writes the 1.6 plain-text output through ``write`` as it goes and
returns the final image id; a failure raises (the API turns it into ``Error build: ...`` or a
500). RUN and ADD work in real containers made by core's container service and run by its
runner, so they use the daemon's configured graph, exec and network drivers. Metadata steps
(MAINTAINER, CMD, ENTRYPOINT, ENV, EXPOSE, USER, WORKDIR, VOLUME) run nothing: their image is
registered directly with an empty layer, its ``container_config`` being the config a container
for the step would have had (Cmd ``/bin/sh -c #(nop) ...``). ADD and COPY are in ``file_steps.py``.

Several ``FROM`` make several stages; the image of the last one built (or of ``target``'s) is
the result. ``ARG`` before the first ``FROM`` declares values ``FROM`` lines may use.
"""

from __future__ import annotations

import copy
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.sdk.ids import short_id
from moorage.core.sdk.logs import LogPosition, follow_log
from moorage.core.services.container_config import DEFAULT_PATH, merge_with_image, normalize_config
from moorage.core.services.container_files import safe_join
from moorage.core.services.container_filesystem import ContainerFilesystem
from moorage.core.services.container_model import ContainerConfig
from moorage.core.services.containers import ContainerService
from moorage.core.services.distribution import Distribution
from moorage.core.services.images import ImageService
from moorage.core.services.runner import Runner
from moorage.core.services.tags import DEFAULT_TAG, parse_repository_tag
from moorage.plugins.builder import cache, dockerignore
from moorage.plugins.builder.dockerfile import Instruction, env_map, json_or_shell, line_error, parse, quoted_words
from moorage.plugins.builder.file_steps import FileSteps
from moorage.plugins.builder.interrupted import IntermediateRecord
from moorage.plugins.builder.metadata import NOT_YET, MetadataSteps, go_list
from moorage.plugins.builder.shell_words import WordError, process_word

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
    #: the stage to stop after (``--target``); the last stage when empty
    target: str = ""


#: the args every build knows without an ``ARG`` (RUN sees them when given; never warned)
PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                   "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


def stage_names(instructions: list[Instruction]) -> list[str]:
    """The name of each stage (``FROM image AS name``; "" for an unnamed one), in order."""
    names = []
    for instruction in instructions:
        if instruction.name == "from" and not instruction.error:
            words = instruction.args.split()
            names.append(words[2].lower() if len(words) == 3 and words[1].lower() == "as" else "")
    return names


class Builder(MetadataSteps, FileSteps):
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
        #: the values of the ARGs before the first FROM, for FROM lines and for ARG in a stage
        self.meta_args: dict[str, str] = {}
        #: ``(name, image id)`` of each stage finished, for ``COPY --from`` and ``FROM <stage>``
        self.stages: list[tuple[str, str]] = []
        self.stage_name = ""

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
        instructions = parse(dockerfile.read_text(errors="replace"))
        dockerignore.apply(context)  # after the Dockerfile was read: it may be excluded too
        names = stage_names(instructions)
        target = self.options.target.lower()
        if target and target not in names:
            raise InvalidParameter(f"failed to reach build target {self.options.target} in Dockerfile")
        step = 0
        for instruction in instructions:
            if instruction.error:
                raise InvalidParameter(instruction.error)
            if instruction.name == "from" and target and self.stage_name == target:
                break  # the target stage is built: the stages after it are not
            if instruction.name in NOT_YET:
                method = self.not_yet
            else:
                method = getattr(self, f"step_{instruction.name}", None) if instruction.name.isalpha() else None
            if method is None:
                self.write(f"# Skipping unknown instruction {instruction.name.upper()}\n")
                continue
            step += 1
            self.write(f"Step {step} : {instruction.name.upper()} {instruction.original or instruction.args}\n")
            try:
                method(instruction)
            except WordError as exc:
                raise InvalidParameter(line_error(instruction.line, str(exc))) from None
            if self.image:  # not an ARG before the first FROM
                self.write(f" ---> {short_id(self.image)}\n")
        if not self.image:
            raise InvalidParameter("An error occurred during the build")
        unused = sorted(set(self.options.build_args) - self.declared_args - set(PREDEFINED_ARGS))
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
    def stage_image(self, name: str) -> str | None:
        """The image of the finished stage ``name`` (or index), None when there is none."""
        if name.isdigit():
            index = int(name)
            return self.stages[index][1] if index < len(self.stages) else None
        for stage, image_id in self.stages:
            if stage and stage == name.lower():
                return image_id
        return None

    def step_from(self, instruction: Instruction) -> None:
        words = instruction.args.split()
        if len(words) == 3 and words[1].lower() == "as":
            if not _STAGE_NAME.match(words[2].lower()):
                raise InvalidParameter(f"invalid name for build stage: {words[2]!r}, name can't start with a number "
                                       "or contain symbols")
        elif len(words) != 1:
            raise InvalidParameter("FROM requires either one or three arguments")
        if self.image:
            self.stages.append((self.stage_name, self.image))
        self.stage_name = words[2].lower() if len(words) == 3 else ""
        name = process_word(words[0], self.meta_args, instruction.escape)
        if not name:
            raise InvalidParameter(f"base name ({words[0]}) should not be blank")
        stage = self.stage_image(name) if not name.isdigit() else None
        if stage is not None:
            image = self.images.get(stage)
        else:
            image = self.images.lookup(name)
            if image is None or self.options.pull:
                self._pull(name)
                image = self.images.lookup(name)
                if image is None:
                    raise NotFound(f"No such image: {name}")
        self.image = image.id
        self.args = {}  # a stage sees only the ARGs it declares
        # Docker 0.7.0 inherits the base image's config (0.6.5 started from an empty one)
        self.config = normalize_config(copy.deepcopy(image.config)) if image.config else ContainerConfig()
        if not self.config.env:
            self.config.env = ["HOME=/", f"PATH={DEFAULT_PATH}"]

    def _env(self) -> list[str]:
        """The environment RUN and substitution see: ``ARG`` values under the config's ``Env``."""
        set_by_env = {e.split("=", 1)[0] for e in self.config.env or []}
        return [f"{k}={v}" for k, v in self.args.items() if k not in set_by_env] + list(self.config.env or [])

    def _env_map(self) -> dict[str, str]:
        return env_map(self._env())

    def step_arg(self, instruction: Instruction) -> None:
        """``ARG name[=default] ...`` (Docker 1.9): the ``--build-arg`` value, else the default,
        else (in a stage) the value of the ARG of that name before the first FROM."""
        in_stage = bool(self.image)
        known = self._env_map() if in_stage else self.meta_args
        for word in quoted_words(instruction.args, instruction.escape):
            name, has_default, default = word.partition("=")
            name = process_word(name, known, instruction.escape)
            if not name:
                raise InvalidParameter(f"ARG requires a name, with an optional =default: {instruction.args!r}")
            self.declared_args.add(name)
            values = self.args if in_stage else self.meta_args
            if name in self.options.build_args:
                values[name] = self.options.build_args[name]
            elif has_default:
                values[name] = process_word(default, known, instruction.escape)
            elif in_stage and name in self.meta_args:
                values[name] = self.meta_args[name]
            known = self._env_map() if in_stage else self.meta_args
        if in_stage:
            self._commit_metadata(f"ARG {instruction.args.strip()}")

    def step_run(self, instruction: Instruction) -> None:
        self._need_image("run")
        cmd = json_or_shell(instruction.args)
        if not cmd:
            raise InvalidParameter("RUN requires at least one argument")
        if instruction.flags:
            raise InvalidParameter(f"the --{instruction.flags[0][0]} option requires BuildKit, which moorage's "
                                   "classic builder is not")
        config = self._step_config(cmd)
        proxies = {k: v for k, v in self.options.build_args.items() if k in PREDEFINED_ARGS and k not in self.args}
        if self.args or proxies:
            config.env = [f"{k}={v}" for k, v in proxies.items()] + self._env()
        if self._cached(config):
            return
        container = self._container(config)
        # RUN ignores the image's entrypoint: the process is the command alone
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
