"""Run store: one SQLite database (WAL) under ``$WORKBENCH_HOME`` plus a folder per run.

One training process writes; the dashboard, notebooks and CLI read at the same time. WAL mode
lets readers see committed rows while the writer appends; every write is one short transaction,
so a crash loses at most the rows of the batch in flight and never corrupts the database.

Layout::

    $WORKBENCH_HOME/store.db
    $WORKBENCH_HOME/runs/<id>/{config.json, tokenizer.json, stdout.log, ckpt/, attn/}
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import workbench_home

TERMINAL = ("finished", "stopped", "failed")
STATUSES = ("queued", "running") + TERMINAL
HEARTBEAT_S = 5.0
"""How often a training process writes its heartbeat (a thread, independent of step speed)."""
STALE_AFTER_S = 60.0
"""A running run whose heartbeat is older than this is reported dead (its process ended
without recording its status, e.g. a notebook kernel whose run crashed on a full disk)."""
QUEUED_GRACE_S = 180.0
"""A queued run whose process has not claimed it within this long is reported as never started."""
COLUMNS_ADDED = {"host": "TEXT", "corpus_hash": "TEXT"}
"""Columns later versions added to ``runs``; older stores get them on open."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL,
    pid INTEGER,
    step INTEGER NOT NULL DEFAULT 0,
    max_steps INTEGER NOT NULL DEFAULT 0,
    best_val_loss REAL,
    num_params INTEGER,
    device TEXT,
    error TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    corpus_hash TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (run_id, name, step)
);
CREATE INDEX IF NOT EXISTS metrics_by_step ON metrics(run_id, step);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    path TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (run_id, kind, step)
);
"""


class UnknownRunError(KeyError):
    """A run id that is not in the store."""

    def __str__(self) -> str:
        return f"unknown run id {self.args[0]!r}; `python -m workbench runs` lists the runs"


@dataclass
class RunInfo:
    """One row of the ``runs`` table."""

    id: str
    name: str
    status: str
    config: dict[str, Any]
    created_at: float
    started_at: float | None
    ended_at: float | None
    heartbeat_at: float | None
    pid: int | None
    step: int
    max_steps: int
    best_val_loss: float | None
    num_params: int | None
    device: str | None
    error: str | None
    stop_requested: bool
    host: str | None = None
    corpus_hash: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def label(self) -> str:
        """Short text for pickers: id, name, preset and status."""
        extra = self.name or self.config.get("preset", "")
        return f"{self.id} · {extra} · {self.status}" if extra else f"{self.id} · {self.status}"


def new_run_id() -> str:
    """Sortable and unique across processes: ``20261122-171503-3fa9``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class RunStore:
    """Access to the store; cheap to create, one SQLite connection per instance (per thread)."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home) if home is not None else workbench_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.runs_dir = self.home / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.db_path = self.home / "store.db"
        self._conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        # statement by statement (executescript would commit on its own); IF NOT EXISTS makes
        # this idempotent when several processes open the store at once
        for stmt in SCHEMA.strip().split(";"):
            if stmt.strip():
                self._execute_retry(stmt)
        have = {row[1] for row in self._execute_retry("PRAGMA table_info(runs)").fetchall()}
        for col, kind in COLUMNS_ADDED.items():
            if col not in have:
                try:
                    self._execute_retry(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise

    def _execute_retry(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        for attempt in range(3):
            try:
                return self._conn.execute(sql, tuple(params))
            except sqlite3.OperationalError as exc:  # "database is locked" past busy_timeout (30 s)
                if "locked" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")

    class _Tx:
        def __init__(self, store: RunStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._execute_retry("BEGIN IMMEDIATE")
            return self.store._conn

        def __exit__(self, exc_type, exc, tb) -> None:
            self.store._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _tx(self) -> RunStore._Tx:
        return RunStore._Tx(self)

    def close(self) -> None:
        self._conn.close()

    # --- runs ------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run(self, config: dict[str, Any], name: str = "", run_id: str | None = None) -> str:
        """Insert a ``queued`` run and make its folder; returns the id."""
        run_id = run_id or new_run_id()
        max_steps = int(config.get("train", {}).get("max_steps", 0))
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (id, name, status, config, created_at, max_steps) VALUES (?, ?, 'queued', ?, ?, ?)",
                (run_id, name, json.dumps(config), time.time(), max_steps),
            )
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of one run (status, pid, step, best_val_loss, error, config, ...)."""
        if not fields:
            return
        allowed = set(RunInfo.__dataclass_fields__) - {"id", "created_at"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update run columns {sorted(bad)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}")
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as c:
            cur = c.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))
            if cur.rowcount == 0:
                raise UnknownRunError(run_id)

    def get_run(self, run_id: str) -> RunInfo:
        cur = self._execute_retry("SELECT * FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise UnknownRunError(run_id)
        return _to_info(cur.description, row)

    def list_runs(self, limit: int | None = None) -> list[RunInfo]:
        sql = "SELECT * FROM runs ORDER BY created_at DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        cur = self._execute_retry(sql)
        return [_to_info(cur.description, r) for r in cur.fetchall()]

    def delete_run(self, run_id: str) -> None:
        """Remove a run that is not live: its rows (one transaction), then its folder."""
        info = self.reconcile(run_id)
        if not info.is_terminal:
            raise ValueError(f"run {run_id} is {info.status}; stop it before deleting it")
        with self._tx() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM artifacts WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def request_stop(self, run_id: str) -> None:
        """Ask a live run to stop at its next step (the trainer polls this flag)."""
        self.update_run(run_id, stop_requested=1)

    def stop_requested(self, run_id: str) -> bool:
        row = self._execute_retry("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    # --- metrics ---------------------------------------------------------------------------

    def log_metrics(self, run_id: str, step: int, metrics: dict[str, float], when: float | None = None) -> None:
        self.log_metric_rows(run_id, [(step, k, float(v)) for k, v in metrics.items()], when)

    def log_metric_rows(self, run_id: str, rows: list[tuple[int, str, float]], when: float | None = None) -> None:
        """Append rows in one transaction; a repeated (name, step) replaces (resume re-logs)."""
        if not rows:
            return
        bad = [f"{n} at step {s}" for s, n, v in rows if math.isnan(v)]
        if bad:  # SQLite would store NaN as NULL and break the NOT NULL constraint mid-run
            raise ValueError(f"metric {', '.join(bad)} is NaN; the store keeps numbers only")
        t = time.time() if when is None else when
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, s, n, v, t) for s, n, v in rows],
            )

    def metrics(self, run_id: str, after_step: int = -1, names: list[str] | None = None) -> list[tuple[int, str, float, float]]:
        """Rows ``(step, name, value, time)`` with step > ``after_step``, by step."""
        sql = "SELECT step, name, value, time FROM metrics WHERE run_id = ? AND step > ?"
        params: list[Any] = [run_id, after_step]
        if names:
            sql += f" AND name IN ({','.join('?' * len(names))})"
            params += names
        return self._execute_retry(sql + " ORDER BY step, name", params).fetchall()

    def metric_rows_since(self, run_id: str, cursor: int = 0) -> tuple[list[tuple[int, str, float]], int]:
        """Rows ``(step, name, value)`` written after ``cursor`` (0 = all), and the new cursor.

        A live view keeps the cursor and asks only for what is new (rows re-logged by a resume
        get new row ids, so they come again and replace the old values).
        """
        rows = self._execute_retry(
            "SELECT rowid, step, name, value FROM metrics WHERE run_id = ? AND rowid > ? ORDER BY rowid",
            (run_id, cursor),
        ).fetchall()
        return [(s, n, v) for _, s, n, v in rows], (rows[-1][0] if rows else cursor)

    def metric_series(self, run_id: str, after_step: int = -1) -> dict[str, tuple[list[int], list[float]]]:
        """Metrics as ``{name: (steps, values)}`` (what the plots take)."""
        out: dict[str, tuple[list[int], list[float]]] = {}
        for step, name, value, _ in self.metrics(run_id, after_step):
            steps, values = out.setdefault(name, ([], []))
            steps.append(step)
            values.append(value)
        return out

    # --- artifacts -------------------------------------------------------------------------

    def add_artifact(self, run_id: str, kind: str, step: int, path: str | Path) -> None:
        rel = os.path.relpath(Path(path), self.run_dir(run_id))
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO artifacts (run_id, kind, step, path, time) VALUES (?, ?, ?, ?, ?)",
                (run_id, kind, step, rel, time.time()),
            )

    def artifacts(self, run_id: str, kind: str) -> list[tuple[int, Path]]:
        """``(step, absolute path)`` of one kind ('attention', ...), by step."""
        rows = self._execute_retry(
            "SELECT step, path FROM artifacts WHERE run_id = ? AND kind = ? ORDER BY step", (run_id, kind)
        ).fetchall()
        return [(s, self.run_dir(run_id) / p) for s, p in rows]

    # --- liveness --------------------------------------------------------------------------

    def claim(self, run_id: str) -> None:
        """Record that this process now trains the run (pid, host, a fresh heartbeat).

        Refused while another live process on this host holds the run (a second Resume click).
        """
        me, host, now = os.getpid(), socket.gethostname(), time.time()
        with self._tx() as c:
            row = c.execute("SELECT status, pid, host FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise UnknownRunError(run_id)
            status, pid, pid_host = row
            if status == "running" and pid not in (None, me) and pid_host in (None, host) and _pid_alive(pid):
                raise ValueError(f"run {run_id} is already being trained by process {pid}")
            c.execute("UPDATE runs SET status = 'running', pid = ?, host = ?, started_at = ?, heartbeat_at = ?, "
                      "ended_at = NULL, error = NULL WHERE id = ?", (me, host, now, now, run_id))

    def queue(self, run_id: str, **fields: Any) -> None:
        """Put an ended run back in the queue for a new process (resume): the old process's pid and
        times are cleared, so nothing mistakes the new start for the old, dead one."""
        self.update_run(run_id, status="queued", pid=None, started_at=None, ended_at=None, error=None,
                        heartbeat_at=time.time(), stop_requested=0, **fields)

    def reconcile(self, run_id: str, stale_after_s: float = STALE_AFTER_S,
                  queued_grace_s: float = QUEUED_GRACE_S) -> RunInfo:
        """Mark a run ``failed`` when the store says it is live but its process is not.

        - its pid no longer exists on this host: the process died (killed, out of memory);
        - running, but no heartbeat for ``stale_after_s``: the process ended without recording
          its status (a notebook kernel outlives its run);
        - queued, and no process claimed it within ``queued_grace_s``: it never started.

        Every run writes a heartbeat, wherever it was started. The decision and the write happen
        in one transaction, so a process that claims or ends the run meanwhile wins.
        """
        info = self.get_run(run_id)
        if info.is_terminal:
            return info
        with self._tx() as c:
            cur = c.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
            info = _to_info(cur.description, cur.fetchone())
            reason = None if info.is_terminal else _why_dead(info, time.time(), stale_after_s, queued_grace_s)
            if reason is not None:
                c.execute("UPDATE runs SET status = 'failed', ended_at = ?, error = ? WHERE id = ?",
                          (time.time(), reason, run_id))
        return self.get_run(run_id) if reason is not None else info


def _why_dead(info: RunInfo, now: float, stale_after_s: float, queued_grace_s: float) -> str | None:
    """Why a run the store calls live has no live process, or None if it may well have one."""
    if info.pid is not None and info.host in (None, socket.gethostname()) and not _pid_alive(info.pid):
        return (f"the training process (pid {info.pid}) died without reporting: killed, out of memory, "
                f"or the machine restarted")
    last_sign = info.heartbeat_at or info.started_at or info.created_at
    if info.status == "running" and now - last_sign > stale_after_s:
        return (f"the training process stopped reporting: no heartbeat for {now - last_sign:.0f} s "
                f"(it ended without recording its status)")
    if info.status == "queued" and now - last_sign > queued_grace_s:
        return f"the training process never started (queued {now - last_sign:.0f} s ago)"
    return None


def _to_info(description: tuple, row: tuple) -> RunInfo:
    d = dict(zip((col[0] for col in description), row))
    d["config"] = json.loads(d["config"])
    d["stop_requested"] = bool(d["stop_requested"])
    return RunInfo(**d)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of this process counts as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
