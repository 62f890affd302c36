"""`make check`'s import rules (scripts/check_imports.py): no import cycle among the
project's packages, no SQLAlchemy under the JSON API or the pages, and the packages
sharing nothing but `protocol`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_imports.py"


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_cycle_and_sqlalchemy_in_the_api_are_both_reported(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "controller/__init__.py": "",
            "controller/ingest.py": "from controller.fleet import apply\n",
            "controller/fleet.py": "import controller.jobs\n\ndef apply() -> None: ...\n",
            "controller/jobs.py": "from controller import ingest\n",
            "controller/api/__init__.py": "",
            "controller/api/routes.py": "from sqlalchemy import select\n",
            "protocol/__init__.py": "",
        },
    )
    result = _run(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    cycles = [line for line in lines if line.startswith("import cycle:")]
    assert cycles == [
        "import cycle: controller.fleet (line 1) -> controller.jobs (line 1) -> "
        "controller.ingest (line 1) -> controller.fleet"
    ]
    assert [line for line in lines if "sqlalchemy" in line] == [
        "controller/api/routes.py:1: imports sqlalchemy.select; modules under "
        "controller/api/ may not import sqlalchemy (use the domain modules)"
    ]


def test_imports_that_do_not_run_at_load_make_no_cycle(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "edge_agent/__init__.py": "",
            "edge_agent/index.py": "from .verify import check\n",
            "edge_agent/verify.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from .index import Index\n"
                "def check() -> None:\n"
                "    from edge_agent import index\n"
            ),
        },
    )
    checker = _checker()
    assert checker.check(tmp_path) == []
    assert _run(tmp_path).returncode == 0


def test_sqlalchemy_is_refused_under_the_pages_even_when_imported_lazily(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "controller/__init__.py": "",
            "controller/pages/__init__.py": "",
            "controller/pages/board.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from sqlalchemy.ext.asyncio import AsyncSession\n"
                "def rows() -> None:\n"
                "    import sqlalchemy\n"
            ),
            "controller/store.py": "from sqlalchemy import select\n",  # allowed here
        },
    )
    problems = _checker().check(tmp_path)
    assert [p.split(":")[:2] for p in problems] == [
        ["controller/pages/board.py", "3"],
        ["controller/pages/board.py", "5"],
    ]


def test_relative_imports_and_package_self_imports_are_followed(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "provisioning/__init__.py": "from .bundle import write\n",
            "provisioning/bundle.py": "from . import ca\n\ndef write() -> None: ...\n",
            "provisioning/ca.py": "from provisioning import bundle\n",
        },
    )
    cycles = [p for p in _checker().check(tmp_path) if p.startswith("import cycle")]
    assert cycles == [
        "import cycle: provisioning.bundle (line 1) -> provisioning.ca (line 1) -> "
        "provisioning.bundle"
    ]


def test_the_packages_share_only_protocol(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "protocol/__init__.py": "",
            "protocol/topics.py": "from controller.config import Settings\n",
            "edge_agent/__init__.py": "",
            "edge_agent/link.py": "import protocol.topics\nfrom controller import errors\n",
            "controller/__init__.py": "",
            "controller/config.py": "import json\n",
        },
    )
    problems = _checker().check(tmp_path)
    assert [p.split(": ", 1)[0] for p in problems] == [
        "edge_agent/link.py:2",
        "protocol/topics.py:1",
    ]
    assert "the packages share only protocol" in problems[0]


def test_the_repository_keeps_the_rules() -> None:
    result = _run(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
