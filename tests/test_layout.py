"""Conformance: the "Project layout" table of behavior.md.

URL paths come from file paths (functions without their extension, assets with it), visibility
comes from the `.protected.` / `.private.` infix, `assets/index.html` is also `/`, `.env` lands on
`context`. Two files on one URL path, or a path character outside `[A-Za-z0-9-_./]`, stop the
engine at start with an error naming the files. No request ever reads outside `assets/`.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

PROJECTS = Path(__file__).resolve().parent / "projects"
LAYOUT = PROJECTS / "layout"
AUTH_TOKEN = "layout-test-auth-token"  # from tests/projects/layout/.env
ENV_MARKER = "dotenv-must-never-be-served-9c1e"  # LAYOUT_ENV_MARKER in the same .env

HELLO = "def handler(context, event, callback):\n    return callback(None, 'hello')\n"


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(LAYOUT, backend=backend)


# --- helpers ---------------------------------------------------------------------------------


def raw_request(engine, method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes | None = None):
    """Send `target` byte for byte (httpx would normalise dot segments); return status, header pairs, body."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{engine.port}")
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def media_type(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def sign(url: str, params: dict[str, str] | None = None) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, params or {})


def make_project(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    (root / "functions").mkdir(exist_ok=True)
    return root


def wait_for_exit(running, timeout: float = 60) -> int:
    try:
        return running.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        running.stop()
        raise AssertionError(f"engine did not exit within {timeout}s:\n{running.logs()[-3000:]}") from None


def wait_ready_or_exit(running, timeout: float = 300) -> str:
    """'ready' once /readyz answers 200, 'exited' if the engine stopped first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            return "exited"
        try:
            if httpx.get(running.admin_url + "/readyz", timeout=2).status_code == 200:
                return "ready"
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"engine neither ready nor exited within {timeout}s:\n{running.logs()[-3000:]}")


def named_in(text: str, name: str) -> bool:
    """Whether the output names `name`, raw or as JSON/repr escaped it."""
    return any(form in text for form in (name, json.dumps(name)[1:-1], repr(name)[1:-1]))


# --- functions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_path, source",
    [
        ("/hello", "functions/hello.py"),
        ("/sms/reply", "functions/sms/reply.py"),
        ("/deep/a/b/c", "functions/deep/a/b/c.py"),
        ("/file.name", "functions/file.name.py"),
        ("/under_score-dash", "functions/under_score-dash.py"),
    ],
)
def test_function_url_is_its_relative_path_without_extension(engine, url_path, source):
    with engine.client() as client:
        response = client.get(url_path)
    assert response.status_code == 200
    assert response.text == f"hello from {source}"


@pytest.mark.parametrize("url_path", ["/hello.py", "/functions/hello", "/functions/hello.py", "/sms", "/deep/a/b", "/Hello"])
def test_function_is_only_at_its_exact_url_path(engine, url_path):
    """No extension, no `functions/` prefix, no parent directory, case-sensitive: all 404."""
    with engine.client() as client:
        assert client.get(url_path).status_code == 404


def test_private_function_is_not_reachable_by_url(engine):
    with engine.client() as client:
        assert client.get("/helper").status_code == 404
        assert client.get("/helper.private").status_code == 404
        assert client.post("/helper", data={"a": "1"}).status_code == 404


def test_protected_function_needs_a_signature_and_runs_with_one(engine):
    url = engine.url + "/secret"
    with engine.client() as client:
        assert client.get("/secret").status_code == 403
        signed = client.get("/secret", headers={"X-Twilio-Signature": sign(url)})
        assert signed.status_code == 200
        assert signed.text == "hello from functions/secret.protected.py"
        assert client.get("/secret.protected").status_code == 404


def test_runtime_lists_every_function_and_asset_including_private_ones(engine):
    with engine.client() as client:
        response = client.get("/runtime")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["functions"] == sorted(
        ["hello", "sms/reply", "deep/a/b/c", "file.name", "under_score-dash", "secret", "helper", "runtime", "env"]
    )
    # Asset keys carry the extension and lose the visibility infix (hosted service: `/secret.txt`).
    assert data["assets"] == sorted(
        ["/index.html", "/logo.png", "/css/site.css", "/data.json", "/secret.txt", "/doc.txt"]
    )
    assert data["helper_value"] == "value from the private helper"
    assert data["private_asset_text"] == "private asset text\n"
    assert data["camel_case_same"] is True


def test_env_file_is_exposed_on_context_with_dotenv_syntax(engine):
    with engine.client() as client:
        response = client.get("/env")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "FOO": "bar",
        "QUOTED": "hello world",
        "SINGLE_QUOTED": "single quoted",
        "WITH_EQUALS": "a=b=c",
        "EMPTY": "",
        "AUTH_TOKEN": AUTH_TOKEN,
        "LAYOUT_ENV_MARKER": ENV_MARKER,
    }


# --- assets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_path, file, expected_type",
    [
        # The contract fixes the paths; the types are what the hosted service sends for these extensions.
        ("/index.html", "assets/index.html", "text/html"),
        ("/logo.png", "assets/logo.png", "image/png"),
        ("/css/site.css", "assets/css/site.css", "text/css"),
        ("/data.json", "assets/data.json", "application/json"),
    ],
)
def test_asset_is_served_byte_exact_at_its_path_with_extension(engine, url_path, file, expected_type):
    with engine.client() as client:
        response = client.get(url_path)
    assert response.status_code == 200
    assert response.content == (LAYOUT / file).read_bytes()
    assert media_type(response) == expected_type


@pytest.mark.parametrize("url_path", ["/logo", "/css/site", "/assets/logo.png", "/index"])
def test_asset_is_not_served_without_its_extension_or_under_assets(engine, url_path):
    with engine.client() as client:
        assert client.get(url_path).status_code == 404


def test_index_html_is_also_served_at_root(engine):
    with engine.client() as client:
        root = client.get("/")
    assert root.status_code == 200
    assert root.content == (LAYOUT / "assets/index.html").read_bytes()
    assert media_type(root) == "text/html"


def test_private_asset_is_not_served(engine):
    with engine.client() as client:
        assert client.get("/secret.txt").status_code == 404
        assert client.get("/secret.private.txt").status_code == 404


def test_protected_asset_needs_a_signature(engine):
    url = engine.url + "/doc.txt"
    with engine.client() as client:
        assert client.get("/doc.txt").status_code == 403
        assert client.get("/doc.txt", headers={"X-Twilio-Signature": sign(engine.url + "/other")}).status_code == 403
        signed = client.get("/doc.txt", headers={"X-Twilio-Signature": sign(url)})
        assert signed.status_code == 200
        assert signed.content == b"protected asset text\n"
        assert client.get("/doc.protected.txt").status_code == 404


# --- path traversal ----------------------------------------------------------------------------

TRAVERSALS = [
    "/.env",
    "/../.env",
    "/../../.env",
    "/%2e%2e/.env",
    "/%2E%2E/.env",
    "/..%2f.env",
    "/..%2F.env",
    "/%2e%2e%2f.env",
    "/css/../../.env",
    "/css/..%2f..%2f.env",
    "/css/%2e%2e/%2e%2e/.env",
    "/..%252f.env",
    "/..\\.env",
    "/css\\..\\..\\.env",
    "/%5c..%5c.env",
    "/css%5c..%5c..%5c.env",
    "/..%5c.env",
    "/index.html%00",
    "/index.html%00.env",
    "/%00/../.env",
    "/.env%00.html",
    "/../functions/hello.py",
    "/%2e%2e/functions/hello.py",
    "/css/../../functions/hello.py",
    "//etc/passwd",
    "/../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/css/..%5c..%5c..%5c..%5c..%5cetc%5cpasswd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_path_traversal_never_reads_outside_assets(engine, target):
    status, _, body = raw_request(engine, "GET", target)
    assert status in (400, 404), f"{target} answered {status}: {body[:200]!r}"
    assert ENV_MARKER.encode() not in body
    assert b"def handler" not in body
    assert b"root:" not in body


def test_symlink_out_of_assets_is_never_followed(engine_factory, backend, tmp_path, request):
    """A link leaving `assets/` is refused at load (naming it) or never served; its target is never read."""
    if backend != "process":
        request.getfixturevalue("docker_available")
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = "outside-secret-5d2a"
    (outside / "secret.txt").write_text(marker + "\n")
    project = make_project(
        tmp_path / "symlinks",
        {"functions/hello.py": HELLO, "assets/ok.txt": "ok\n", ".env": f"SYMLINK_MARKER={marker}-env\n"},
    )
    (project / "assets/escape.txt").symlink_to(outside / "secret.txt")
    (project / "assets/env-link.txt").symlink_to("../.env")
    (project / "assets/dir-link").symlink_to(outside, target_is_directory=True)
    running = engine_factory(project, backend=backend, wait_ready=False)
    if wait_ready_or_exit(running) == "exited":
        logs = running.logs()
        assert running.proc.returncode != 0
        assert any(named_in(logs, name) for name in ("escape.txt", "env-link.txt", "dir-link")), logs[-3000:]
        return
    for target in ["/escape.txt", "/env-link.txt", "/dir-link/secret.txt", "/dir-link/../dir-link/secret.txt"]:
        status, _, body = raw_request(running, "GET", target)
        assert status in (403, 404), f"{target} answered {status}"
        assert marker.encode() not in body
    status, _, body = raw_request(running, "GET", "/ok.txt")
    assert (status, body) == (200, b"ok\n")


# --- load errors -------------------------------------------------------------------------------

DUPLICATES = {
    "visibility-twins": ["functions/dup.py", "functions/dup.protected.py"],
    "private-twin": ["functions/a/b.py", "functions/a/b.private.py"],
    "python-and-js": ["functions/dup.py", "functions/dup.js"],
    "function-and-asset": ["functions/report.py", "assets/report"],
    "asset-visibility-twins": ["assets/x/y.txt", "assets/x/y.private.txt"],
}


@pytest.mark.parametrize("files", list(DUPLICATES.values()), ids=list(DUPLICATES))
def test_two_files_on_one_url_path_stop_the_engine_naming_both(engine_factory, backend, tmp_path, files, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    contents: dict[str, str] = {"functions/ok.py": HELLO}
    for rel in files:
        if rel.endswith(".py"):
            contents[rel] = HELLO
        elif rel.endswith(".js"):
            contents[rel] = "exports.handler = (context, event, callback) => callback(null, 'js');\n"
        else:
            contents[rel] = "asset\n"
    project = make_project(tmp_path / "dup", contents)
    running = engine_factory(project, backend=backend, wait_ready=False)
    assert wait_for_exit(running) != 0
    logs = running.logs()
    for rel in files:
        assert named_in(logs, rel), f"error does not name {rel}:\n{logs[-3000:]}"


BAD_CHARACTERS = [" ", "#", ";", ",", "?", ":", "@", "+", "&", "$", "(", ")", "'", '"']


@pytest.mark.parametrize("char", BAD_CHARACTERS, ids=[f"0x{ord(c):02x}" for c in BAD_CHARACTERS])
def test_function_path_with_a_forbidden_character_stops_the_engine_naming_it(engine_factory, backend, tmp_path, char, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    bad = f"functions/bad{char}name.py"
    project = make_project(tmp_path / "bad", {"functions/ok.py": HELLO, bad: HELLO})
    running = engine_factory(project, backend=backend, wait_ready=False)
    assert wait_for_exit(running) != 0
    assert named_in(running.logs(), f"bad{char}name"), running.logs()[-3000:]


@pytest.mark.parametrize("bad", ["assets/bad name.txt", "assets/a+b.css", "functions/bad dir/x.py", "assets/we(ird)/a.txt"])
def test_asset_or_directory_with_a_forbidden_character_stops_the_engine_naming_it(engine_factory, backend, tmp_path, bad, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    project = make_project(tmp_path / "bad", {"functions/ok.py": HELLO, bad: HELLO if bad.endswith(".py") else "x\n"})
    running = engine_factory(project, backend=backend, wait_ready=False)
    assert wait_for_exit(running) != 0
    offending = bad.split("/")[1]  # the path component holding the character
    assert named_in(running.logs(), offending), running.logs()[-3000:]


# --- dependencies --------------------------------------------------------------------------------


def test_requirements_txt_dependencies_are_importable(engine_factory, backend, tmp_path, request):
    """`requirements.txt` lists PyPI packages available to `import` (needs the package index)."""
    if backend != "process":
        request.getfixturevalue("docker_available")
    project = make_project(
        tmp_path / "deps",
        {
            "requirements.txt": "text-unidecode==1.3\n",
            "functions/ascii.py": (
                "from text_unidecode import unidecode\n\n\n"
                "def handler(context, event, callback):\n"
                "    return callback(None, unidecode(event.get('name', '')))\n"
            ),
        },
    )
    running = engine_factory(project, backend=backend)
    with running.client() as client:
        response = client.get("/ascii", params={"name": "Jürgen Ærø"})
    assert response.status_code == 200, response.text
    assert response.text == "Jurgen AEro"
