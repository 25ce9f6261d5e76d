"""The process backend's dependency cache under concurrent builds (max_parallel_image_builds):
two services with the same requirements.txt installed at once both get the one cached copy."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from engine import pydeps


def test_the_same_requirements_installed_three_times_at_once_all_succeed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    roots = []
    for i in range(3):
        root = tmp_path / f"svc{i}"
        root.mkdir()
        (root / "requirements.txt").write_text("six==1.16.0\n")
        roots.append(root)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        targets = list(pool.map(lambda r: pydeps.host_site_packages(r, lambda line: None), roots))
    assert len(set(targets)) == 1 and (targets[0] / "six.py").is_file() and (targets[0] / ".complete").is_file()
    assert [p.name for p in targets[0].parent.iterdir()] == [targets[0].name]  # no staging directory left
