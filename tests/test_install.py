"""`pip install .` ships the runner sources inside the package, and the engine runs from anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port

PROJECT = Path(__file__).resolve().parent / "projects" / "installed"


def test_installed_wheel_serves_from_another_directory(tmp_path: Path) -> None:
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheel_dir), str(REPO)], check=True)
    wheel = next(wheel_dir.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    assert (site / "engine" / "_runner_image" / "python" / "runner.py").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["PYTHONPATH"] = str(site)
    probe = subprocess.run([sys.executable, "-c", "import engine, engine.paths; print(engine.__file__); "
                            "print(engine.paths.python_runner_dir())"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True)
    assert all(line.startswith(str(site)) for line in probe.stdout.split()), probe.stdout
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", str(PROJECT), "--port", str(port), "--admin-port", str(admin),
         "--backend", "process"], cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{admin}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        reply = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=10)
        assert (reply.status_code, reply.text) == (200, "installed ok")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
