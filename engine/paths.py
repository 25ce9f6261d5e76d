"""Where the runner sources live, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def runner_image_dir() -> Path:
    """The `runner-image/` tree: shipped inside the wheel, or at the top of a source checkout."""
    for candidate in (_PACKAGE_DIR / "_runner_image", _PACKAGE_DIR.parent / "runner-image"):
        if (candidate / "python").is_dir():
            return candidate
    raise FileNotFoundError(
        f"runner sources not found next to {_PACKAGE_DIR}; reinstall the engine package "
        "(`pip install .` ships them as engine/_runner_image)"
    )


def python_runner_dir() -> Path:
    return runner_image_dir() / "python"


def node_runner_dir() -> Path:
    return runner_image_dir() / "node"
