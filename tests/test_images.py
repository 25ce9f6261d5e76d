"""engine/images/: the base, runner and service build images, built on the real Docker daemon."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Iterator

import docker
import docker.errors
import pytest

from engine import images, pydeps
from engine.errors import ImageBuildError


def test_mirror_from_one_line_sources() -> None:
    """The bookworm entry of a classic sources.list names the mirror; -security and cdrom lines do not."""
    text = (
        "# comment\n"
        "deb cdrom:[Debian]/ bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.org/debian/ bookworm main contrib\n"
    )
    assert images.mirror_from_sources(text) == "http://mirror.example.org/debian"


def test_mirror_from_deb822_sources() -> None:
    """A deb822 stanza counts only when enabled, of type deb, and serving the suite."""
    text = (
        "Types: deb\nURIs: http://disabled.example.org/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example.org/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert images.mirror_from_sources(text, deb822=True) == "http://deb.example.org/debian"
    assert images.mirror_from_sources("Types: deb\nURIs: http://x/debian\nSuites: trixie\n", deb822=True) is None


def test_project_files_skip_secrets_caches_and_outside_links(tmp_path: Path) -> None:
    """.env files, VCS data, caches and symlinks leading out of the project never reach an image."""
    project = tmp_path / "project"
    (project / "functions" / "__pycache__").mkdir(parents=True)
    (project / "functions" / "hello.py").write_text("x = 1\n")
    (project / "functions" / "__pycache__" / "hello.cpython-311.pyc").write_bytes(b"\0")
    (project / ".env").write_text("AUTH_TOKEN=secret\n")
    (project / ".env.prod").write_text("AUTH_TOKEN=secret\n")
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text("[core]\n")
    (tmp_path / "host-secret").write_text("not yours\n")
    (project / "leak").symlink_to(tmp_path / "host-secret")
    (project / "alias.py").symlink_to(project / "functions" / "hello.py")
    assert [rel for rel, _ in images.project_files(project)] == ["alias.py", "functions/hello.py"]


def test_requirements_options_and_urls_are_refused(tmp_path: Path) -> None:
    """requirements.txt may not point the host's pip at other indexes, URLs or paths."""
    for bad in ("--index-url http://10.0.0.1/simple", "pkg @ http://10.0.0.1/pkg.whl", "https://x/y.whl", "-e ."):
        req = tmp_path / "requirements.txt"
        req.write_text(f"six\n{bad}\n")
        with pytest.raises(ImageBuildError, match=r"requirements\.txt:2: .*not allowed"):
            pydeps.requirement_lines(req)
    req.write_text("# pinned\nsix==1.16.0  # why\n\nrequests>=2; python_version >= '3'\n")
    assert pydeps.requirement_lines(req) == ["six==1.16.0", "requests>=2; python_version >= '3'"]


# --- on the Docker daemon ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(docker_available: None) -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def runner_image(client: docker.DockerClient) -> str:
    return images.ensure_runner_image(client, "python", print)


@pytest.fixture
def built(client: docker.DockerClient) -> Iterator[list[str]]:
    """Service image tags a test made; removed at the end (the shared base/runner images stay)."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


def run_in(client: docker.DockerClient, image: str, *cmd: str) -> str:
    """Run a command in `image` with no network; its output."""
    output = client.containers.run(image, list(cmd[1:]), entrypoint=cmd[0], network_mode="none", remove=True)
    return output.decode()


def tiny_project(root: Path, greeting: str = "hi") -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "functions" / "hello.py").write_text(
        f"def handler(context, event, callback):\n    callback(None, {greeting!r})\n"
    )
    (root / "assets").mkdir()
    (root / "assets" / "logo.txt").write_text("logo\n")
    (root / ".env").write_text("AUTH_TOKEN=secret\n")
    return root


@pytest.mark.docker
def test_base_image_present_after_ensure(client: docker.DockerClient) -> None:
    """ensure_base_image leaves engine-base:bookworm in place, a Debian bookworm userland."""
    tag = images.ensure_base_image(client)
    assert tag == images.BASE_TAG
    assert "bookworm" in run_in(client, tag, "cat", "/etc/os-release")


@pytest.mark.docker
def test_build_base_image_script_is_cached(client: docker.DockerClient) -> None:
    """scripts/build-base-image prints the tag and, once built, returns at once."""
    images.ensure_base_image(client)
    script = Path(__file__).resolve().parent.parent / "scripts" / "build-base-image"
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == images.BASE_TAG
    assert "present" in result.stderr


@pytest.mark.docker
def test_runner_image_has_twilio_and_runs_as_10001(client: docker.DockerClient, runner_image: str) -> None:
    """The runner image imports twilio with no network, as uid 10001, and is tagged by content."""
    # Tagged by content (not compared with a fresh runner_image_tag(): the runner sources may be edited mid-run).
    assert re.fullmatch(r"engine-runner-python:[0-9a-f]{12}", runner_image)
    out = run_in(client, runner_image, "python3", "-c", "import os, twilio, twilio.rest; print(twilio.__version__, os.getuid())")
    assert out.split() == [images.twilio_version(), "10001"]
    config = client.api.inspect_image(runner_image)["Config"]
    assert config["Entrypoint"] == ["python3", "/opt/runner/runner.py"]
    assert config["Labels"][images.MANAGED_LABEL] == "true"


@pytest.mark.docker
def test_service_image_reused_when_unchanged_rebuilt_when_changed(
    client: docker.DockerClient, runner_image: str, tmp_path: Path, built: list[str]
) -> None:
    """Same files → same tag, no build; one changed file → a new tag with the new code in /srv/project."""
    project = tiny_project(tmp_path / "p")
    first = images.ensure_service_image(client, "svc-test", project, runner_image)
    built.append(first)
    assert first.startswith("engine-service-svc-test:")
    lines: list[str] = []
    assert images.ensure_service_image(client, "svc-test", project, runner_image, lines.append) == first
    assert lines == [f"service image {first} present"]

    (project / "functions" / "hello.py").write_text("def handler(context, event, callback):\n    callback(None, 'changed')\n")
    second = images.ensure_service_image(client, "svc-test", project, runner_image)
    built.append(second)
    assert second != first
    listing = run_in(
        client, second, "sh", "-c",
        "cat /srv/project/functions/hello.py; ls -la /srv/project /srv/project/functions; "
        "ls -A /srv/project; touch /srv/project/x 2>&1 || true",
    )
    assert "'changed'" in listing
    assert ".env" not in listing  # secrets never go into an image
    assert "-rw-r--r-- 1 root root" in listing  # world-readable, owned by root
    assert "Permission denied" in listing  # not writable by the worker user


@pytest.mark.docker
def test_the_same_content_under_another_service_name_is_tagged_not_built(
    client: docker.DockerClient, runner_image: str, tmp_path: Path, built: list[str]
) -> None:
    """A build's image serves each environment it is deployed to, and another replica on the daemon:
    one image per content, whatever the service name; other content is still built."""
    project = tiny_project(tmp_path / "p")
    (project / "functions" / "hello.py").write_text(f"# {tmp_path.name}\n" + (project / "functions" / "hello.py").read_text())
    first = images.ensure_service_image(client, "svc-one", project, runner_image)
    built.append(first)
    lines: list[str] = []
    second = images.ensure_service_image(client, "svc-two", project, runner_image, lines.append)
    built.append(second)
    assert second.startswith("engine-service-svc-two:") and second.split(":")[1] == first.split(":")[1]
    assert client.images.get(second).id == client.images.get(first).id
    assert len(lines) == 1 and "present (the same content" in lines[0], lines

    (project / "functions" / "hello.py").write_text("def handler(context, event, callback):\n    callback(None, 'other')\n")
    lines.clear()
    third = images.ensure_service_image(client, "svc-two", project, runner_image, lines.append)
    built.append(third)
    assert client.images.get(third).id != client.images.get(first).id
    assert any(line.startswith("building ") for line in lines)


@pytest.mark.docker
def test_service_requirements_are_installed(
    client: docker.DockerClient, runner_image: str, tmp_path: Path, built: list[str]
) -> None:
    """A project's requirements.txt is installed into /opt/service/site-packages, importable by the worker."""
    project = tiny_project(tmp_path / "p")
    (project / "requirements.txt").write_text("six==1.16.0\n")
    tag = images.ensure_service_image(client, "svc-req", project, runner_image)
    built.append(tag)
    out = run_in(client, tag, "python3", "-c", "import six; print(six.__version__, six.__file__)")
    assert out.split() == ["1.16.0", "/opt/service/site-packages/six.py"]


@pytest.mark.docker
def test_bad_requirement_names_requirements_txt(client: docker.DockerClient, runner_image: str, tmp_path: Path) -> None:
    """A requirement pip cannot satisfy fails the build with an ImageBuildError naming the file and pip's error."""
    project = tiny_project(tmp_path / "p")
    (project / "requirements.txt").write_text("six==999.0.0\n")
    with pytest.raises(ImageBuildError) as info:
        images.ensure_service_image(client, "svc-bad", project, runner_image)
    message = str(info.value)
    assert "requirements.txt" in message
    assert "six==999.0.0" in message
    assert not client.images.list(name="engine-service-svc-bad")
