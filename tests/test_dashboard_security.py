"""The dashboard's doors: who gets in (the access gate), what user text can do in Markdown, and
which server paths reach the browser. Through AppTest; ``tests/test_browser.py`` checks the gate
over a real network connection."""

from __future__ import annotations

import doctest
import time

import pytest
from streamlit.testing.v1 import AppTest

from test_dashboard import APP, _app, _raw, _texts, common, guard, home, local_visitor  # noqa: F401  (fixtures)
from workbench.presets import get_preset
from workbench.runstore import RunStore

TOKEN = "s3cret-Token_for-tests"


def test_the_dashboard_helpers_doctests():
    assert doctest.testmod(common).failed == doctest.testmod(guard).failed == 0


def _everything(at: AppTest) -> str:
    """Every element's protobuf as text: all that the browser would receive."""
    out = []

    def walk(node) -> None:
        children = getattr(node, "children", None)
        if children:
            for child in children.values():
                walk(child)
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))

    walk(at._tree)
    return "\n".join(out)


@pytest.fixture
def remote(monkeypatch):
    """Play a visitor from another machine."""
    monkeypatch.setattr(guard, "client_ip", lambda: "192.0.2.7")


def _remote_app(token_in_url: str | None = None, run: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    if token_in_url is not None:
        at.query_params["token"] = token_in_url
    if run is not None:
        at.query_params["run"] = run
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _refused(at: AppTest) -> bool:
    return [t.value for t in at.title] == ["LLM Objectives Workbench"] and not at.sidebar.selectbox


# --- the access gate ------------------------------------------------------------------------------

def test_a_remote_visitor_is_refused_when_no_token_is_set_and_nothing_else_runs(home, remote):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict(), name="secret-run")
    at = _remote_app(run=run_id)
    assert _refused(at)
    assert "none is set" in _texts(at.error)
    assert "python -m workbench dashboard --host 0.0.0.0" in _texts(at.markdown)
    assert "make run HOST=0.0.0.0" in _texts(at.markdown)
    assert run_id not in _everything(at) and "secret-run" not in _everything(at)  # no run picker, no page
    assert not at.text_input  # nothing to type a token into: none would be accepted


def test_a_remote_visitor_with_a_token_in_the_link_gets_in_and_the_link_loses_it(home, remote, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TOKEN", TOKEN)
    at = _remote_app(token_in_url=TOKEN)
    assert at.title[0].value == "Train a model"
    assert "token" not in at.query_params  # removed from the address bar: a copied link does not carry it
    assert TOKEN not in _everything(at)
    at.run()  # the session remembers: no token needed for the next script runs
    assert at.title[0].value == "Train a model"
    at.switch_page("app_pages/runs.py").run()
    assert at.title[0].value == "Runs"


def test_a_wrong_token_in_the_link_is_refused_and_removed(home, remote, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TOKEN", TOKEN)
    at = _remote_app(token_in_url=TOKEN[:-1])
    assert _refused(at)
    assert "not valid" in _texts(at.error)
    assert "token" not in at.query_params


def test_a_remote_visitor_can_type_the_token(home, remote, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TOKEN", TOKEN)
    at = _remote_app()
    assert _refused(at) and "needs an access token" in _texts(at.info)
    at.text_input(key="_access_token_input").set_value("guess")
    at.button[0].click().run()
    assert _refused(at) and "not valid" in _texts(at.error)
    at.text_input(key="_access_token_input").set_value(TOKEN)
    at.button[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Train a model"


def test_a_token_given_to_a_server_without_one_is_refused(home, remote):
    at = _remote_app(token_in_url="anything")
    assert _refused(at) and "none is set" in _texts(at.error)
    assert "token" not in at.query_params


def test_a_local_visitor_gets_in_without_a_token(home):
    at = _app()
    assert at.title[0].value == "Train a model"
    assert not at.sidebar.warning  # listening on 127.0.0.1 (tests run with the project's config)


def test_with_a_token_set_this_machine_needs_it_too(home, monkeypatch):
    """As Jupyter: behind a reverse proxy on the same machine every visitor looks local."""
    monkeypatch.setenv("WORKBENCH_TOKEN", TOKEN)
    at = _remote_app()  # the autouse fixture makes this visitor local
    assert guard.is_local(guard.client_ip()) and _refused(at)
    at.text_input(key="_access_token_input").set_value(TOKEN)
    at.button[0].click().run()
    assert at.title[0].value == "Train a model"


def test_local_visitors_are_warned_when_the_server_listens_everywhere_without_a_token(home, monkeypatch):
    monkeypatch.setattr(guard, "server_address", lambda: "")  # `streamlit run` from another folder
    at = _app()
    warning = _texts(at.sidebar.warning)
    assert "every network interface" in warning and "refused" in warning
    monkeypatch.setenv("WORKBENCH_TOKEN", TOKEN)
    at = _app()
    assert not at.sidebar.warning


# --- user text in Markdown ------------------------------------------------------------------------

NASTY = "![x](http://192.0.2.9/x.png) `tick` **bold** :red[red] <b>b</b> $x^2$ _u_ [l](http://192.0.2.9) #h"

_UNESCAPED = ("![", "](", ":red[", "**bold**", "$x", "<b>")


def _unescaped(raw: str, piece: str) -> bool:
    """Whether ``piece`` occurs in Markdown source with its first character not escaped."""
    i = raw.find(piece)
    while i != -1:
        if i == 0 or raw[i - 1] != "\\":
            return True
        i = raw.find(piece, i + 1)
    return False


def test_run_names_and_error_texts_render_literally(home):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict(), name=NASTY)
    store.update_run(run_id, status="failed", error=f"ValueError: {NASTY}")
    at = _app(run=run_id, page="monitor")
    heading = _raw(at.subheader)
    assert NASTY in _texts(at.subheader)  # shown as typed...
    assert not any(_unescaped(heading, p) for p in _UNESCAPED), heading  # ...never as Markdown
    error = _raw(at.error)
    assert NASTY in _texts(at.error) and not any(_unescaped(error, p) for p in _UNESCAPED), error

    at.button(key="delete").click().run()  # the confirmation names the run too
    warning = _raw(at.warning)
    assert NASTY in _texts(at.warning) and not any(_unescaped(warning, p) for p in _UNESCAPED), warning


def test_a_run_id_from_the_url_renders_literally(home):
    store = RunStore(home)
    store.create_run(get_preset("gpt-nano").to_dict())
    evil = "x` ![x](http://192.0.2.9/x.png) `y"
    at = _app(run=evil, page="monitor")
    warning = _raw(at.warning)
    assert f"``{evil}``" in warning  # a code span whose fence is longer than any backtick run inside


# --- server paths ---------------------------------------------------------------------------------

def test_server_paths_are_not_shown_to_the_browser(home):
    store = RunStore(home)
    upload = home / "uploads" / "0123456789abcdef.txt"
    cfg = get_preset("gpt-nano").to_dict()
    cfg["data"]["corpus"] = str(upload)
    run_id = store.create_run(cfg, name="paths")
    run_dir = store.run_dir(run_id)
    store.update_run(run_id, status="failed", started_at=time.time(),
                     error=f"CorpusError: corpus file '{upload}' does not exist")
    (run_dir / "stdout.log").write_text(f"Traceback:\n  File \"{run_dir}/x.py\", line 1\nboom\n")
    for page in ("monitor", "runs", "train", "attention", "sample"):
        at = _app(run=run_id, page=page)
        everything = _everything(at)
        assert str(home) not in everything, page
    at = _app(run=run_id, page="monitor")
    assert "$WORKBENCH_HOME/uploads/0123456789abcdef.txt" in _texts(at.error)
    assert f"$WORKBENCH_HOME/runs/{run_id}/x.py" in _texts(at.code)
    assert "$WORKBENCH_HOME" in _texts(at.sidebar.caption)
    assert '"corpus": "$WORKBENCH_HOME/uploads/0123456789abcdef.txt"' in at.json[0].value or \
        "$WORKBENCH_HOME/uploads/0123456789abcdef.txt" in at.json[0].value


def test_redact_replaces_known_folders():
    home = str(guard.workbench_home())
    shown = guard.redact(f"{home}/runs/a and {home}x/b")
    assert shown.startswith("$WORKBENCH_HOME/runs/a and ") and shown.endswith("wb_homex/b")  # a longer name: not it
    assert "$WORKBENCH_HOMEx" not in shown and home not in shown
    assert guard.redact_config({"data": {"corpus": "/srv/private/texts/novel.txt"}}) == \
        {"data": {"corpus": ".../novel.txt"}}
