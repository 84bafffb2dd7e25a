"""Helpers shared by the dashboard pages: the store, the run picker, incremental metric reads
and small formatters (the access gate and safe text are in ``guard.py``).

The selected run lives in two places that are kept equal on every script run:
``st.session_state["selected_run"]`` (survives page switches inside one browser session) and
``st.query_params["run"]`` (survives a browser refresh and can be shared as a link).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

import numpy as np
import streamlit as st

from guard import code, md
from workbench.paths import workbench_home
from workbench.runstore import RunInfo, RunStore, UnknownRunError

PAGES: dict = {}
"""name -> st.Page, filled by app.py on every run (for st.page_link / st.switch_page)."""

STATUS_COLORS = {"queued": "gray", "running": "blue", "finished": "green", "stopped": "orange", "failed": "red"}
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "finished": ":material/check_circle:",
    "stopped": ":material/stop_circle:",
    "failed": ":material/error:",
}


# --- the store ----------------------------------------------------------------------------------

def get_store() -> RunStore:
    """One store per browser session and ``$WORKBENCH_HOME`` (a session runs one script at a time)."""
    home = str(workbench_home())
    cached = st.session_state.get("_store")
    if cached is None or str(cached.home) != home:
        cached = RunStore(home)
        st.session_state["_store"] = cached
    return cached


def launch_limits():
    """The caps on dashboard launches (``LaunchLimits.from_env``); a ConfigError for a bad setting."""
    from workbench.limits import LaunchLimits

    return LaunchLimits.from_env()


# --- the selected run ---------------------------------------------------------------------------

def select_run(run_id: str | None) -> None:
    """Make ``run_id`` the selected run for every page (and the URL)."""
    st.session_state["selected_run"] = run_id
    if run_id:
        st.query_params["run"] = run_id
        st.session_state["_qp_run"] = run_id
    elif "run" in st.query_params:
        del st.query_params["run"]


def selected_run_id() -> str | None:
    return st.session_state.get("selected_run")


def _on_pick(key: str) -> None:
    st.session_state["selected_run"] = st.session_state.get(key)


def run_picker() -> str | None:
    """Sidebar selectbox over the store's runs (newest first); returns the selected id.

    An id in the URL that the store does not know gives a warning and falls back to the
    newest run, never an exception.
    """
    store = get_store()
    runs = store.list_runs()
    ids = [r.id for r in runs]
    labels = {r.id: r.label for r in runs}

    qp = st.query_params.get("run")
    current = st.session_state.get("selected_run")
    # a URL value we did not write ourselves (refresh, shared link, typed) wins over the session
    candidate = qp if (qp and qp != st.session_state.get("_qp_run")) else (current or qp)

    if candidate and candidate not in labels:
        fallback = ids[0] if ids else None
        st.warning(
            f"Run {code(candidate)} is not in this workbench's store. "
            + (f"Showing the newest run {code(fallback)} instead; pick another in the sidebar." if fallback
               else "There are no runs yet: start one on the **Train** page."),
            icon=":material/warning:",
        )
        candidate = fallback
    if candidate is None and ids:
        candidate = ids[0]

    with st.sidebar:
        if not ids:
            st.info("No runs yet. Start one on the **Train** page.", icon=":material/info:")
            select_run(None)
            return None
        # the key follows the labels: the browser keeps showing a selectbox's old label text when
        # only the labels change (a run going from 'running' to 'finished'), a new key redraws it
        key = "run_picker_" + hashlib.sha1("|".join(labels[i] for i in ids).encode()).hexdigest()[:10]
        if st.session_state.get(key) != candidate:
            st.session_state[key] = candidate
        st.selectbox(
            "Run", ids, format_func=lambda i: labels.get(i, i), key=key, on_change=_on_pick, args=(key,),
            help="Every page shows this run. The choice is kept in the URL (?run=...), so a refresh keeps it.",
        )
        st.caption(f"{len(ids)} run(s) in `$WORKBENCH_HOME`")
    select_run(candidate)
    return candidate


def current_run(store: RunStore | None = None, reconcile: bool = True) -> RunInfo | None:
    """The selected run's row (a dead process reconciled to 'failed'), or None."""
    run_id = selected_run_id()
    if not run_id:
        return None
    store = store or get_store()
    try:
        return store.reconcile(run_id) if reconcile else store.get_run(run_id)
    except UnknownRunError:
        return None


def require_run(what: str) -> RunInfo | None:
    """The selected run, or an info box pointing to the Train page (returns None)."""
    info = current_run()
    if info is None:
        st.info(f"No run selected. Start a training run to {what}.", icon=":material/info:")
        st.page_link(PAGES["train"], label="Go to Train", icon=":material/model_training:")
    return info


# --- metrics, read incrementally ------------------------------------------------------------------

SERIES_KEY = "metric_series_cache"
SERIES_RUNS_KEPT = 6
"""Runs whose series a browser session keeps in memory (the least recently shown are dropped)."""


def run_series(store: RunStore, info: RunInfo) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run's metrics as ``{name: (steps, values)}``, reading only the rows written since the
    last call in this browser session (``RunStore.metric_rows_since``). A resumed run (its
    ``started_at`` changed) is read again from the start, since a resume re-logs steps."""
    cache: OrderedDict = st.session_state.setdefault(SERIES_KEY, OrderedDict())
    key = (str(store.home), info.id)
    entry = cache.get(key)
    if entry is None or entry["started_at"] != info.started_at:
        entry = {"started_at": info.started_at, "cursor": 0, "series": {}, "rows_read": 0}
    cache[key] = entry
    cache.move_to_end(key)
    while len(cache) > SERIES_RUNS_KEPT:
        cache.popitem(last=False)

    rows, entry["cursor"] = store.metric_rows_since(info.id, entry["cursor"])
    entry["rows_read"] = len(rows)
    series: dict[str, tuple[list, list]] = entry["series"]
    replaced: dict[str, dict[int, float]] = {}
    for step, name, value in rows:
        steps, values = series.setdefault(name, ([], []))
        if not steps or step > steps[-1]:
            steps.append(step)
            values.append(value)
        else:  # a step logged again (a resume re-logs): merged below
            replaced.setdefault(name, {})[step] = value
    for name, new in replaced.items():
        merged = dict(zip(*series[name]))
        merged.update(new)
        ordered = sorted(merged)
        series[name] = (ordered, [merged[s] for s in ordered])
    return {name: (np.asarray(s), np.asarray(v, dtype=float)) for name, (s, v) in series.items()}


# --- formatting ---------------------------------------------------------------------------------

def fmt_params(n: int | None) -> str:
    """``1234567 -> '1.23 M'``.

    >>> fmt_params(1234567), fmt_params(81_000), fmt_params(None)
    ('1.23 M', '81.0 k', '—')
    """
    if n is None:
        return "—"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def fmt_loss(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def fmt_duration(info: RunInfo) -> str:
    """Wall time of a run so far (or in total)."""
    if info.started_at is None:
        return "—"
    end = info.ended_at or (time.time() if not info.is_terminal else info.heartbeat_at or info.started_at)
    s = max(0.0, end - info.started_at)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def viewer_timezone() -> tuple[Any, str]:
    """(tzinfo, label) of the browser's time zone (``st.context.timezone``); the server's local
    zone when the browser did not say."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = st.context.timezone
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = datetime.now().astimezone()
    return None, f"{local.tzname()}, the server's zone"


def local_time(ts: float | None, tz: Any) -> datetime | None:
    """A UNIX time as a naive datetime in ``tz`` (None: the server's local zone)."""
    if ts is None:
        return None
    if tz is None:
        return datetime.fromtimestamp(ts)
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None)


def status_badge(status: str) -> None:
    st.badge(status, icon=STATUS_ICONS.get(status), color=STATUS_COLORS.get(status, "gray"))


def cuda_summary() -> str:
    """One line on which accelerators torch can see."""
    import torch

    if torch.cuda.is_available():
        return f"CUDA available: {md(torch.cuda.get_device_name(0))}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "CUDA not available; Apple MPS available"
    return "CUDA not available on this machine: runs use the CPU"
