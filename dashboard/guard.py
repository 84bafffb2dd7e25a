"""Who may use the dashboard, and how text the app did not write reaches the browser.

The access gate (:func:`access_gate`, called first by ``app.py``): without a configured token
only this machine gets in; with one (``$WORKBENCH_TOKEN``, set by ``python -m workbench dashboard
--host ...``) every visitor needs it. Text that the app does not write itself (run names, run ids
from the URL, error messages, config values) goes into Markdown only through :func:`md` or
:func:`code`, which make it render literally: a name such as ``![x](http://host/x.png)`` shows
those characters and fetches nothing. Server paths never reach the browser: :func:`redact` turns
them into ``$WORKBENCH_HOME/...`` (and the like) first.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import streamlit as st

from workbench.paths import workbench_home
from workbench.serve import TOKEN_ENV, is_loopback, token_ok

# --- safe text ----------------------------------------------------------------------------------

WJ = "\u2060"
"""Word joiner: an invisible character that breaks GitHub's bare-link patterns."""
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]()<>|~$:!&@{}#])")


def md(text: Any) -> str:
    r"""``text`` escaped for Streamlit Markdown: it renders as the same characters, never as
    formatting, a link, an image, HTML, LaTeX, an emoji or icon shortcode, or a colour directive.

    Backslashes escape the Markdown syntax. GitHub's bare links (``http://...``, ``www.``,
    ``a@b.c``) are found in the text after parsing, where escapes are gone, so an invisible
    word joiner (U+2060) goes into ``://``, ``www.`` and after ``@`` instead.

    >>> print(md("![x](http://evil/x.png) *a_b* `c` $x$ :red[y]").replace(WJ, "^"))
    \!\[x\]\(http\:^//evil/x.png\) \*a\_b\* \`c\` \$x\$ \:red\[y\]
    >>> print(md("- item\n1. two\n== www.example.com me@example.com").replace(WJ, "^"))
    \- item
    1\. two
    \== www^.example.com me\@^example.com
    """
    s = _INLINE_SPECIAL.sub(r"\\\1", str(text))
    s = re.sub(r"^(\s*)([-+=])", r"\1\\\2", s, flags=re.MULTILINE)  # list item, setext heading, rule
    s = re.sub(r"^(\s*\d+)([.)])", r"\1\\\2", s, flags=re.MULTILINE)  # ordered list item
    s = s.replace(r"\://", "\\:" + WJ + "//").replace(r"\@", "\\@" + WJ)
    return re.sub(r"(?i)\b(www)\.", lambda m: m.group(1) + WJ + ".", s)


def code(text: Any) -> str:
    """``text`` as an inline code span that shows it literally (backticks inside included).

    >>> code("20260101-120000-ab12"), code("a`b"), code("`x`")
    ('`20260101-120000-ab12`', '``a`b``', '`` `x` ``')
    """
    s = " ".join(str(text).splitlines()).replace("\r", " ")
    if not s:
        return ""
    # Streamlit rewrites ":material/" before parsing, even inside code; a zero-width space keeps it
    s = s.replace(":material/", ":\u200bmaterial/")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s[0] in "` " or s[-1] in "` " else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _path_prefixes() -> list[tuple[str, str]]:
    """Server folders and what to show instead, longest first."""
    out: dict[str, str] = {}
    for path, shown in ((Path.home(), "~"), (Path(tempfile.gettempdir()), "<tmp>"),
                        (Path(sys.base_prefix), "<python>"), (Path(sys.prefix), "<python>"),
                        (Path(__file__).resolve().parent.parent, "<workbench>"),
                        (workbench_home(), "$WORKBENCH_HOME")):
        for p in {str(path), str(path.resolve())}:
            if len(p) > 1:
                out[p] = shown
    return sorted(out.items(), key=lambda kv: -len(kv[0]))


def redact(text: Any) -> str:
    """``text`` with server paths replaced: ``$WORKBENCH_HOME/...`` for the store, ``~`` for the
    user's home, ``<python>`` / ``<workbench>`` / ``<tmp>`` for the interpreter, the project and
    the temporary folder. The browser learns nothing about the server's file system."""
    s = str(text)
    for prefix, shown in _path_prefixes():
        s = re.sub(re.escape(prefix) + r"(?![\w.-])", lambda _m, shown=shown: shown, s)
    return s


def redact_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config for display: paths redacted; a corpus file outside the known folders shows
    its file name only."""

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            shown = redact(value)
            if key == "corpus" and shown.startswith("/"):
                shown = ".../" + Path(shown).name
            return shown
        return value

    return walk(config)


# --- who may use this dashboard -----------------------------------------------------------------

def client_ip() -> str | None:
    """The visitor's address as the server saw the connection; None on this machine (Streamlit
    reports 127.0.0.1 and ::1 as None, and a Unix socket has no address). Anything else that is
    not an address string counts as a remote visitor (AppTest's mocked runtime gives a mock
    object): tests replace this function to play a local or a remote visitor."""
    ip = st.context.ip_address
    if ip is not None and not isinstance(ip, str):
        return "unknown"
    return ip


def server_address() -> str:
    """The address Streamlit listens on ('' = every interface)."""
    return str(st.get_option("server.address") or "")


def is_local(ip: str | None) -> bool:
    """Whether a visitor at ``ip`` is on this machine.

    >>> is_local(None), is_local("127.0.0.1"), is_local("::ffff:127.0.0.1"), is_local("192.0.2.7")
    (True, True, True, False)
    """
    if ip is None:
        return True
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


def _grant(expected: str) -> None:
    st.session_state["_access"] = hashlib.sha256(expected.encode()).hexdigest()


def _granted(expected: str | None) -> bool:
    return bool(expected) and st.session_state.get("_access") == hashlib.sha256(expected.encode()).hexdigest()


def _check_typed_token() -> None:
    expected = os.environ.get(TOKEN_ENV) or None
    typed = st.session_state.get("_access_token_input") or ""
    st.session_state["_access_token_input"] = ""
    if token_ok(typed, expected):
        _grant(expected)  # type: ignore[arg-type]
    else:
        time.sleep(0.5)  # a wrong guess costs a little time
        st.session_state["_access_denied"] = True


def access_gate() -> None:
    """Let a visitor in, or draw a refusal page and stop the script.

    Without a configured token, a visitor on this machine is let in and nobody from another
    machine is, whatever address Streamlit was told to listen on. With a token in
    ``$WORKBENCH_TOKEN`` (set by ``python -m workbench dashboard --host ...``) every visitor needs
    it, as with Jupyter, this machine included (behind a reverse proxy every visitor looks
    local): once, as ``?token=...`` in the link (then removed from the address bar, so a copied
    link does not carry it), or typed into the password field.
    """
    given = st.query_params.get("token")
    if "token" in st.query_params:
        del st.query_params["token"]  # never left in the address bar, history or a shared link
    expected = os.environ.get(TOKEN_ENV) or None
    if expected is None and is_local(client_ip()):
        return
    if _granted(expected):
        return
    if given is not None and token_ok(given, expected):
        _grant(expected)  # type: ignore[arg-type]
        return

    st.title("LLM Objectives Workbench")
    if expected is None:
        st.error(
            "This dashboard serves only the machine it runs on: visitors from other machines need an access "
            "token, and none is set.",
            icon=":material/lock:",
        )
        st.markdown(
            "To share it with your team, its owner restarts it with `make run HOST=0.0.0.0` or "
            "`python -m workbench dashboard --host 0.0.0.0`: that prints a link with an access token "
            "(`?token=...`) to give to the people who may use it."
        )
    else:
        st.info("This dashboard needs an access token. Open the link with `?token=...` that its owner shared, "
                "or type the token here.", icon=":material/lock:")
        if given is not None or st.session_state.pop("_access_denied", False):
            st.error("That token is not valid.", icon=":material/error:")
        with st.form("access_form"):
            st.text_input("Access token", type="password", key="_access_token_input")
            st.form_submit_button("Open the dashboard", on_click=_check_typed_token)
    st.stop()


def exposure_warning() -> None:
    """In the sidebar, for a visitor on this machine: the server listens beyond loopback (e.g.
    ``streamlit run`` from another folder) without a token, so other machines are refused."""
    if os.environ.get(TOKEN_ENV) or is_loopback(server_address()) or not is_local(client_ip()):
        return
    st.sidebar.warning(
        "This dashboard listens on every network interface but has no access token, so visitors from "
        "other machines are refused. To share it, start it with "
        "`python -m workbench dashboard --host 0.0.0.0` (or `make run HOST=0.0.0.0`), which prints a "
        "link with a token.",
        icon=":material/shield:",
    )
