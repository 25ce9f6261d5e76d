"""Project loading rules (behavior.md: project layout) on temporary trees."""

import os
from pathlib import Path

import pytest

from engine.errors import ProjectError
from engine.project import load_project


def make(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_paths_visibility_and_index(tmp_path):
    p = load_project(make(tmp_path, {
        "functions/sms/reply.py": "", "functions/a.protected.py": "", "functions/b.private.js": "",
        "assets/logo.png": "", "assets/index.html": "", "assets/s.private.txt": "", ".env": "A=1\nB=\n",
    }), "svc")
    assert {k: (f.runtime, f.visibility) for k, f in p.functions.items()} == {
        "/sms/reply": ("python", "public"), "/a": ("python", "protected"), "/b": ("node", "private"),
    }
    assert p.assets["/"].file == "assets/index.html"
    assert p.assets["/s.txt"].visibility == "private"
    assert p.assets["/logo.png"].content_type == "image/png"
    assert p.env == {"A": "1", "B": ""}


def test_duplicate_url_path_names_both_files(tmp_path):
    make(tmp_path, {"functions/x.py": "", "functions/x.js": ""})
    with pytest.raises(ProjectError) as info:
        load_project(tmp_path, "svc")
    assert "functions/x.js" in str(info.value) and "functions/x.py" in str(info.value)


@pytest.mark.parametrize("name", ["a b.py", "a#b.py", "a;b.py", "a,b.py", "a?b.py", "a:b.py", "a@b.py",
                                  "a+b.py", "a&b.py", "a$b.py", "a(b).py", "a'b.py", 'a"b.py'])
def test_invalid_characters_rejected(tmp_path, name):
    make(tmp_path, {f"functions/{name}": ""})
    with pytest.raises(ProjectError, match="invalid character"):
        load_project(tmp_path, "svc")


def test_symlink_out_of_assets_is_not_served(tmp_path):
    make(tmp_path, {"secret.txt": "s", "assets/ok.txt": "ok"})
    os.symlink(tmp_path / "secret.txt", tmp_path / "assets" / "leak.txt")
    project = load_project(tmp_path, "svc")
    assert "/leak.txt" not in project.assets and "/ok.txt" in project.assets
    assert any("leak.txt" in w for w in project.warnings)
