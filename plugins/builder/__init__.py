"""The image builder behind ``POST /build`` (Docker 0.6.5's buildfile, reference §6.1).

``context`` turns the request (a tar body, a git URL, a Dockerfile URL) into a directory;
``dockerfile`` parses the Dockerfile; ``builder`` runs the instructions through core's image,
container and runner services, writing the 1.6 plain-text output lines; ``cache`` holds the
cache rule and ``add`` the ADD instruction's safe copying.
"""

from moorage.plugins.builder.builder import Builder, BuildOptions
from moorage.plugins.builder.context import build_context

__all__ = ["BuildOptions", "Builder", "build_context"]
