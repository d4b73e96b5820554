"""What the daemon is made of (core/kernel/wiring.py): the kernel refuses misspelled hooks, builds
the feature plugins on its services and serves their routes; a blocked builder has no /build."""

from __future__ import annotations

import pytest
from conftest import make_distribution
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient

from moorage.api.http.app import create_app
from moorage.core.kernel.config import load
from moorage.core.kernel.features import Feature, FeatureRoute
from moorage.core.kernel.kernel import Kernel
from moorage.core.kernel.plugins import PluginManager
from moorage.core.kernel.wiring import Services
from moorage.core.sdk.errors import PluginError
from moorage.core.sdk.hookspecs import hookimpl


def kernel_with(tmp_path, *plugins: tuple[str, object]) -> Kernel:
    """A kernel on a scratch root with only ``plugins`` (no drivers: nothing needs root)."""
    pm = PluginManager()
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    config = load(None, {"daemon.root": str(tmp_path / "root"), "daemon.pidfile": None})
    return Kernel(config, pm)


class Misspelled:
    @hookimpl
    def moorage_container_stared(self, container_id):  # noqa: D102 (the misspelling is the test)
        pass


def test_a_misspelled_hookimpl_stops_the_kernel_naming_plugin_and_hook(tmp_path):
    kernel = kernel_with(tmp_path, ("typo-plugin", Misspelled()))
    with pytest.raises(PluginError) as caught:
        kernel.start(load_entry_points=False)
    assert "'typo-plugin'" in str(caught.value) and "moorage_container_stared" in str(caught.value)
    # the root lock was released: a kernel without the plugin starts on the same root
    again = kernel_with(tmp_path)
    again.start(load_entry_points=False)
    again.shutdown()


MISSPELLED = '''
from moorage.core.sdk.hookspecs import hookimpl


@hookimpl
def moorage_container_dide(container_id, exit_code):
    pass
'''


def test_the_daemon_refuses_to_start_with_a_misspelled_hookimpl(daemon_factory, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "moorage-typo", {"typo": MISSPELLED}, {"typo": "typo"})
    d = daemon_factory(env={"PYTHONPATH": str(site)}, start=False)
    d.start(wait=False)
    assert d.proc.wait(30) != 0
    log = d.log()
    assert "plugin 'typo' (typo of distribution moorage-typo 0.1) implements moorage_container_dide" in log


class Hello(Feature):
    name = "hello"

    def routes(self):
        return [FeatureRoute("GET", "/hello", self.hello)]

    async def hello(self) -> PlainTextResponse:
        return PlainTextResponse(f"hello from {self.home.name}, images: {self.services.images is not None}")


class HelloPlugin:
    @hookimpl
    def moorage_feature_register(self):
        return [Hello]


def test_hook_moorage_feature_register(tmp_path):
    kernel = kernel_with(tmp_path, ("hello-plugin", HelloPlugin()))
    kernel.start(load_entry_points=False)
    try:
        [feature] = kernel.features
        assert isinstance(feature, Hello) and isinstance(feature.services, Services)
        assert feature.home == kernel.root / "hello"
        client = TestClient(create_app(kernel), base_url="http://localhost")
        for prefix in ("", "/v1.6"):
            answer = client.get(f"{prefix}/hello")
            assert (answer.status_code, answer.text) == (200, "hello from hello, images: False")
    finally:
        kernel.shutdown()


def test_a_feature_route_the_table_has_is_refused(tmp_path):
    class Clash(Hello):
        name = "clash"

        def routes(self):
            return [FeatureRoute("GET", "/info", self.hello)]

    class ClashPlugin:
        @hookimpl
        def moorage_feature_register(self):
            return [Clash]

    kernel = kernel_with(tmp_path, ("clash-plugin", ClashPlugin()))
    kernel.start(load_entry_points=False)
    try:
        with pytest.raises(PluginError, match="'clash' contributes GET /info, which is already served"):
            create_app(kernel)
    finally:
        kernel.shutdown()


def test_two_features_of_one_name_are_refused_naming_both(tmp_path):
    class Other(Hello):
        pass

    class OtherPlugin:
        @hookimpl
        def moorage_feature_register(self):
            return [Other]

    kernel = kernel_with(tmp_path, ("hello-plugin", HelloPlugin()), ("other-plugin", OtherPlugin()))
    with pytest.raises(PluginError, match="feature name 'hello' is registered twice"):
        kernel.start(load_entry_points=False)


def test_the_builder_is_a_feature_plugin_and_blocking_it_removes_build(daemon_factory):
    with daemon_factory().client() as api:
        # served by the builder plugin: its own error for an empty context, not the router's 404
        answer = api.post("/build", content=b"")
        assert answer.status_code == 400 and "not a valid tar" in answer.text
    with daemon_factory('[plugins]\nblocked = ["builder"]\n').client() as api:
        for path in ("/build", "/v1.6/build"):
            answer = api.post(path, content=b"")
            assert answer.status_code == 404
            assert answer.text == "404 page not found: moorage does not serve POST /build\n"
            assert answer.headers["content-type"].startswith("text/plain")
        assert api.get("/info").status_code == 200
