"""Serving the dashboard: loopback by default, an access token beyond it (as Jupyter does).

``python -m workbench dashboard`` (and ``make run``) start Streamlit on 127.0.0.1 wherever they
are run from. With ``--host 0.0.0.0`` the dashboard is reachable from other machines, so a token
is required: given, taken from ``$WORKBENCH_TOKEN``, or made here and printed in the URL to
share. The app itself checks it (``dashboard/common.py``): with a token set, every visitor needs
it; without one, only this machine gets in, so even ``streamlit run dashboard/app.py`` from
another folder (which binds every interface) serves nobody else.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TOKEN_ENV = "WORKBENCH_TOKEN"


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("")
    (True, True, True, False, False)
    """
    if not host:
        return False  # Streamlit's empty address means every interface
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_ok(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; no expected token means nobody from outside is let in.

    >>> token_ok("abc", "abc"), token_ok("abd", "abc"), token_ok("abc", None), token_ok(None, "abc")
    (True, False, False, False)
    """
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def streamlit_command(host: str, port: int) -> list[str]:
    from .uploads import MAX_UPLOAD_BYTES

    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", str(MAX_UPLOAD_BYTES // (1024 * 1024))]


def serve_dashboard(host: str = "127.0.0.1", port: int = 8501, token: str | None = None) -> int:
    """Run Streamlit in the foreground; returns its exit status."""
    if not APP.exists():
        raise FileNotFoundError(f"the dashboard is not beside this package ({APP}); run from a clone of the project")
    env = dict(os.environ)
    if is_loopback(host):
        print(f"dashboard: http://{host}:{port} (this machine only)", file=sys.stderr)
    else:
        token = token or secrets.token_urlsafe(24)
        env[TOKEN_ENV] = token
        shown = "localhost" if host in ("0.0.0.0", "::", "") else host
        print(f"dashboard: http://{shown}:{port}/?token={token}\n"
              f"  visitors from other machines need this token; share the link only with people you trust",
              file=sys.stderr)
    try:
        return subprocess.call(streamlit_command(host, port), env=env)
    except KeyboardInterrupt:
        return 130
