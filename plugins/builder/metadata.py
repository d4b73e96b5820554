"""The instructions that only change the image config (docs/build.md, "Instructions"): each
makes an image with an empty layer through ``Builder._commit_metadata``."""

from __future__ import annotations

import posixpath

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.services.container_config import parse_port_spec
from moorage.plugins.builder.dockerfile import Instruction, json_or_shell, json_or_words, name_values, substitute
from moorage.plugins.builder.shell_words import process_word, process_words

#: today's instructions whose config field moorage's image model lacks, and that field
NOT_YET = {"label": "Labels", "healthcheck": "Healthcheck", "stopsignal": "StopSignal", "shell": "Shell",
           "onbuild": "OnBuild"}


def go_list(values: list[str]) -> str:
    """A string list as Go's ``%v`` printed it: ``[a b c]``."""
    return "[" + " ".join(values) + "]"


class MetadataSteps:
    """MAINTAINER, CMD, ENTRYPOINT, EXPOSE, ENV, USER, WORKDIR, VOLUME (a mixin of ``Builder``)."""

    def _word(self, instruction: Instruction, text: str) -> str:
        return process_word(text, self._env_map(), instruction.escape)

    def step_maintainer(self, instruction: Instruction) -> None:
        self.maintainer = instruction.args
        self._commit_metadata(f"MAINTAINER {instruction.args}")

    def step_cmd(self, instruction: Instruction) -> None:
        self.config.cmd = json_or_shell(instruction.args)
        self._commit_metadata(f"CMD {go_list(self.config.cmd)}")

    def step_entrypoint(self, instruction: Instruction) -> None:
        entrypoint = json_or_shell(instruction.args)
        if not entrypoint:
            raise InvalidParameter("Entrypoint cannot be empty")
        self.config.entrypoint = entrypoint
        self._commit_metadata(f"ENTRYPOINT {go_list(entrypoint)}")

    def step_expose(self, instruction: Instruction) -> None:
        ports = process_words(instruction.args, self._env_map(), instruction.escape)
        for spec in ports:
            parse_port_spec(spec)  # refuse a bad port now rather than at the next container
        self.config.port_specs = ports + (self.config.port_specs or [])
        self._commit_metadata(f"EXPOSE {go_list(ports)}")

    def step_env(self, instruction: Instruction) -> None:
        words = name_values(instruction.args, "ENV", instruction.escape)
        if words is None:  # the legacy ``ENV key value``: 0.6.5's substitution, quotes kept
            key, sep, value = instruction.args.partition(" ")
            key, value = key.strip(" \t"), value.strip(" \t")
            if not sep or not key:
                raise InvalidParameter("Invalid ENV format")
            pairs = [(key, substitute(value, self._env()))]
        else:  # ``k=v k2="v 2"``: every word expanded with the env from before the instruction
            pairs = []
            for word in words:
                key, _, value = word.partition("=")
                pairs.append((self._word(instruction, key), self._word(instruction, value)))
        env = list(self.config.env or [])
        for key, value in pairs:
            for i, entry in enumerate(env):
                if entry.split("=", 1)[0] == key:
                    env[i] = f"{key}={value}"
                    break
            else:
                env.append(f"{key}={value}")
        self.config.env = env
        self._commit_metadata("ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def step_user(self, instruction: Instruction) -> None:
        self.config.user = self._word(instruction, instruction.args)
        self._commit_metadata(f"USER {self.config.user}")

    def step_workdir(self, instruction: Instruction) -> None:
        path = self._word(instruction, instruction.args)
        if not path:
            raise InvalidParameter("WORKDIR cannot be empty")
        # relative to the previous WORKDIR (today's rule; 0.6.5 only took absolute paths)
        self.config.working_dir = posixpath.normpath(posixpath.join("/", self.config.working_dir or "/", path))
        self._commit_metadata(f"WORKDIR {self.config.working_dir}")

    def step_volume(self, instruction: Instruction) -> None:
        volumes = [self._word(instruction, v) for v in json_or_words(instruction.args)]
        if not volumes or not all(volumes):
            raise InvalidParameter("Volume cannot be empty")
        merged = dict(self.config.volumes or {})
        merged.update({v: {} for v in volumes})
        self.config.volumes = merged
        self._commit_metadata(f"VOLUME {go_list(volumes)}")

    def step_insert(self, instruction: Instruction) -> None:
        raise InvalidParameter("INSERT has been deprecated. Please use ADD instead")

    def not_yet(self, instruction: Instruction) -> None:
        raise InvalidParameter(f"{instruction.name.upper()} is not yet supported by moorage: image configs have "
                               f"no {NOT_YET[instruction.name]} yet")
