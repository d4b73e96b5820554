"""The volume driver contract suite: one behaviour suite every volume driver must pass.

Run it against an installed driver by name (``pytest --pyargs moorage.core.testing
--moorage-driver volume=NAME [--moorage-driver-options FILE.toml]``), or from a driver package's
own tests by subclassing ``VolumeDriverContract`` and overriding ``moorage_driver``. Each test
gets a fresh daemon root and builds the driver with ``driver_factory``, as the daemon does; a
second ``driver_factory()`` on the same root stands for a restarted daemon. Volumes are made
without options (every driver has a default kind of volume); option checks of a driver's own
are its own tests' business.
"""

from __future__ import annotations

import os

import pytest

from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.sdk.hookspecs.volume import Volume, VolumeDriver

A = "a" * 64
B = "b" * 64


class VolumeDriverContract:
    """The volume contract, against ``moorage_driver``."""

    family = "volume"

    @pytest.fixture
    def driver(self, driver_factory) -> VolumeDriver:
        return driver_factory()

    def test_driver_names_itself(self, driver):
        assert isinstance(driver, VolumeDriver) and driver.name

    def test_create_returns_the_volume_not_in_use(self, driver):
        volume = driver.create("data1", {}, {"team": "db"})
        assert isinstance(volume, Volume)
        assert (volume.name, volume.driver, volume.labels, volume.mounts) == ("data1", driver.name, {"team": "db"}, {})
        assert volume.created_at.endswith("Z") and "T" in volume.created_at
        assert driver.get("data1") == volume
        assert driver.path("data1") == volume.mountpoint
        assert [v.name for v in driver.list()] == ["data1"]

    def test_list_is_in_name_order(self, driver):
        for name in ("zz", "aa", "mm"):
            driver.create(name, {}, {})
        assert [v.name for v in driver.list()] == ["aa", "mm", "zz"]

    def test_existing_name_is_a_conflict(self, driver):
        driver.create("twice", {}, {"first": "1"})
        with pytest.raises(Conflict):
            driver.create("twice", {}, {})
        assert driver.get("twice").labels == {"first": "1"}

    @pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden"])
    def test_names_that_are_not_names_are_refused(self, driver, name):
        with pytest.raises(InvalidParameter):
            driver.create(name, {}, {})
        assert driver.list() == []

    def test_unknown_option_is_refused_naming_it(self, driver):
        with pytest.raises(InvalidParameter, match="no-such-option"):
            driver.create("opts", {"no-such-option": "1"}, {})
        assert driver.list() == []
        with pytest.raises(NotFound):
            driver.get("opts")

    def test_unknown_volume_is_not_found_everywhere(self, driver):
        for call in (driver.get, driver.path, driver.remove, lambda n: driver.mount(n, A),
                     lambda n: driver.unmount(n, A)):
            with pytest.raises(NotFound):
                call("missing")

    def test_mount_shows_the_content_at_the_path(self, driver):
        driver.create("shared", {}, {})
        path = driver.mount("shared", A)
        assert path == driver.path("shared")
        (path / "file").write_text("kept")
        assert driver.mount("shared", B) == path
        assert (path / "file").read_text() == "kept"
        driver.unmount("shared", A)
        driver.unmount("shared", B)

    def test_mounts_are_counted_per_container(self, driver):
        driver.create("counted", {}, {})
        driver.mount("counted", A)
        driver.mount("counted", A)
        driver.mount("counted", B)
        assert driver.get("counted").mounts == {A: 2, B: 1}
        driver.unmount("counted", B)
        driver.unmount("counted", B)  # no matching mount: ignored, A's count stays
        assert driver.get("counted").mounts == {A: 2}
        driver.unmount("counted", A)
        assert driver.get("counted").mounts == {A: 1}
        driver.unmount("counted", A)
        assert driver.get("counted").mounts == {} and not driver.get("counted").in_use

    def test_data_survives_the_last_unmount(self, driver):
        driver.create("kept", {}, {})
        (driver.mount("kept", A) / "file").write_text("data")
        driver.unmount("kept", A)
        assert (driver.mount("kept", B) / "file").read_text() == "data"
        driver.unmount("kept", B)

    def test_remove_in_use_is_a_conflict_and_changes_nothing(self, driver):
        driver.create("busy", {}, {})
        (driver.mount("busy", A) / "file").write_text("data")
        with pytest.raises(Conflict):
            driver.remove("busy")
        assert driver.get("busy").mounts == {A: 1}
        assert (driver.path("busy") / "file").read_text() == "data"
        driver.unmount("busy", A)
        driver.remove("busy")
        with pytest.raises(NotFound):
            driver.get("busy")

    def test_remove_deletes_the_data_and_frees_the_name(self, driver):
        driver.create("gone", {}, {})
        path = driver.mount("gone", A)
        (path / "file").write_text("data")
        driver.unmount("gone", A)
        driver.remove("gone")
        assert driver.list() == []
        assert not (path / "file").exists()
        again = driver.create("gone", {}, {})
        assert os.listdir(driver.mount("gone", B)) == []
        driver.unmount("gone", B)
        assert again.name == "gone"

    def test_a_restarted_driver_sees_volumes_counts_and_data(self, driver_factory):
        first = driver_factory()
        first.create("lasting", {}, {"k": "v"})
        (first.mount("lasting", A) / "file").write_text("data")
        first.create("idle", {}, {})
        driver_factory.shutdown(first)  # cleanup: the containers keep running
        second = driver_factory()
        assert [v.name for v in second.list()] == ["idle", "lasting"]
        volume = second.get("lasting")
        assert (volume.labels, volume.mounts) == ({"k": "v"}, {A: 1})
        assert (second.path("lasting") / "file").read_text() == "data"
        with pytest.raises(Conflict):
            second.remove("lasting")
        second.unmount("lasting", A)
        second.remove("lasting")
        assert [v.name for v in second.list()] == ["idle"]

    def test_size_counts_the_content(self, driver):
        driver.create("sized", {}, {})
        path = driver.mount("sized", A)
        (path / "file").write_bytes(b"x" * 5000)
        size = driver.size("sized")
        assert size == -1 or size >= 5000
        driver.unmount("sized", A)
