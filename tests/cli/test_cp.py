"""`docker cp` both ways through /containers/{id}/archive: a directory round-trips with its
modes; what would leave the container's root stays inside it."""

from __future__ import annotations

import os
import stat


def test_cp_round_trips_a_directory_with_modes(cli, tmp_path):
    name = cli.name()
    cli("run", "-d", "--name", name, "busybox", "sleep", "120")
    src = tmp_path / "payload"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    os.chmod(src / "run.sh", 0o750)
    (src / "sub" / "secret").write_text("s\n")
    os.chmod(src / "sub" / "secret", 0o600)
    os.chmod(src / "sub", 0o711)
    cli("cp", str(src), f"{name}:/tmp")
    listing = cli("exec", name, "sh", "-c", "stat -c '%a %n' /tmp/payload/run.sh /tmp/payload/sub "
                  "/tmp/payload/sub/secret; /tmp/payload/run.sh").stdout.splitlines()
    assert listing == ["750 /tmp/payload/run.sh", "711 /tmp/payload/sub", "600 /tmp/payload/sub/secret", "ran"]
    back = tmp_path / "back"
    cli("cp", f"{name}:/tmp/payload", str(back))
    assert (back / "run.sh").read_text() == "#!/bin/sh\necho ran\n"
    assert stat.S_IMODE(os.stat(back / "run.sh").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(back / "sub").st_mode) == 0o711
    assert (back / "sub" / "secret").read_text() == "s\n"


def test_cp_of_a_stopped_container_and_a_single_file(cli, tmp_path):
    name = cli.name()
    cli("run", "--name", name, "busybox", "sh", "-c", "echo made > /made.txt")
    cli("cp", f"{name}:/made.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "made\n"
    done = cli("cp", f"{name}:/no/such/file", str(tmp_path / "x"), check=False)
    assert done.returncode != 0 and "/no/such/file" in done.stderr


def test_cp_out_through_a_symlink_stays_in_the_container(cli, tmp_path):
    """A symlink in the container pointing at a host path resolves inside the container's root."""
    name = cli.name()
    marker = tmp_path / "host-only.txt"
    marker.write_text("host secret\n")
    cli("run", "--name", name, "busybox", "sh", "-c", f"mkdir -p {tmp_path}; ln -s {tmp_path} /link")
    done = cli("cp", f"{name}:/link/host-only.txt", str(tmp_path / "out"), check=False)
    assert done.returncode != 0 and "host-only.txt" in done.stderr
    assert not (tmp_path / "out").exists()
    # and in: a file copied through the link lands in the container's directory, not the host's
    (tmp_path / "in.txt").write_text("into the container\n")
    cli("cp", str(tmp_path / "in.txt"), f"{name}:/link/")
    assert marker.read_text() == "host secret\n" and sorted(os.listdir(tmp_path)) == ["host-only.txt", "in.txt"]
    cli("cp", f"{name}:{tmp_path}/in.txt", str(tmp_path / "again.txt"))
    assert (tmp_path / "again.txt").read_text() == "into the container\n"


def test_cp_does_not_replace_a_directory_by_a_file(cli, tmp_path):
    name = cli.name()
    cli("run", "--name", name, "busybox", "sh", "-c", "mkdir -p /target/thing && echo keep > /target/thing/f")
    (tmp_path / "thing").write_text("a file now\n")
    done = cli("cp", str(tmp_path / "thing"), f"{name}:/target/", check=False)
    assert done.returncode != 0 and "cannot overwrite a directory" in done.stderr
    assert cli("cp", f"{name}:/target/thing/f", "-").returncode == 0  # still there
