"""The results store: one embedded SQLite file per preset, ``outputs/<preset>/results.sqlite``.

Three tables:

* ``runs``: what produced a set of results: preset, model size, seed, library version, the
  artifact key of the recipe, and the SHA-256 digests of the base and of every fine-tuned
  checkpoint. ``run_id`` hashes all of these, so results of different checkpoints, seeds or
  library versions never mix.
* ``records``: one row per ``(run, method, hyperparameters, subset, scored task, split)`` with
  ``accuracy`` and ``normalized_accuracy`` (accuracy / the fine-tuned model's accuracy on the same
  task and split, eq. 3 of the paper). The zero-shot model (method ``"zeroshot"``, empty subset)
  and the fine-tuned models (method ``"finetuned"``, subset = the task) are stored the same way.
* ``timings``: seconds spent merging and evaluating per merged model, and by which worker.

Each merged model's records are written in one transaction as soon as it is evaluated, so an
interrupted sweep loses at most the models in flight. The database runs in WAL mode with a
generous busy timeout and every insert is ``INSERT OR IGNORE`` on the record's key: two sweeps
writing to one store at the same time wait for each other's short transactions and never
duplicate or corrupt a record.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.metrics import normalized_accuracy
from ..paths import OUTPUTS_DIR, output_dir
from .task_subsets import parse_subset_name, subset_name

STORE_FILENAME = "results.sqlite"
_BUSY_TIMEOUT_SECONDS = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    preset TEXT NOT NULL,
    size TEXT NOT NULL,
    seed INTEGER NOT NULL,
    library_version TEXT NOT NULL,
    artifact_key TEXT NOT NULL,
    base_digest TEXT NOT NULL,
    finetuned_digests TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    method TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    subset TEXT NOT NULL,
    scored_task TEXT NOT NULL,
    split TEXT NOT NULL,
    accuracy REAL NOT NULL,
    normalized_accuracy REAL,
    PRIMARY KEY (run_id, method, hyperparameters, subset, scored_task, split)
);
CREATE TABLE IF NOT EXISTS timings (
    run_id TEXT NOT NULL,
    method TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    subset TEXT NOT NULL,
    merge_seconds REAL NOT NULL,
    eval_seconds REAL NOT NULL,
    worker TEXT NOT NULL,
    finished_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class RunIdentity:
    """What produced a set of results."""

    preset: str
    size: str
    seed: int
    library_version: str
    artifact_key: str
    base_digest: str
    finetuned_digests: Mapping[str, str]  # task -> SHA-256 of its fine-tuned checkpoint

    @property
    def run_id(self) -> str:
        fields = {**asdict(self), "finetuned_digests": dict(sorted(self.finetuned_digests.items()))}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    """One accuracy of one model on one task's split."""

    method: str
    hyperparameters: str  # canonical JSON, see hyperparameters_key
    subset: str  # "a+b", see task_subsets.subset_name
    scored_task: str
    split: str
    accuracy: float
    normalized_accuracy: float | None


def default_store_path(preset: str, root: str | Path = OUTPUTS_DIR) -> Path:
    """``outputs/<preset>/results.sqlite``."""
    return output_dir(preset, root) / STORE_FILENAME


def hyperparameters_key(hyperparameters: Mapping[str, Any]) -> str:
    """Canonical JSON of a hyperparameter setting: sorted keys, numbers as floats (``seed``
    stays an integer), so ``alpha=1`` and ``alpha=1.0`` are the same setting."""
    def canonical(name: str, value: Any) -> Any:
        if isinstance(value, bool) or name == "seed" or not isinstance(value, (int, float)):
            return value
        return float(value)
    return json.dumps({name: canonical(name, value) for name, value in sorted(hyperparameters.items())})


def setting_of(key: str) -> dict[str, Any]:
    """The hyperparameter setting a :func:`hyperparameters_key` stands for (a record's
    ``hyperparameters`` column), as keyword arguments of :func:`..core.merging.merge`."""
    return json.loads(key)


class ResultsStore:
    """An SQLite results file (created on first use, with its folder)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
        connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_SECONDS * 1000)}")
        return connection

    # ----------------------------------------------------------------------------- writing
    def register_run(self, identity: RunIdentity) -> str:
        """Record ``identity`` (once) and return its ``run_id``."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (identity.run_id, identity.preset, identity.size, identity.seed, identity.library_version,
                 identity.artifact_key, identity.base_digest, json.dumps(dict(sorted(identity.finetuned_digests.items()))),
                 time.time()),
            )
        return identity.run_id

    def write(self, run_id: str, records: Iterable[Record], *, merge_seconds: float = 0.0,
              eval_seconds: float = 0.0, worker: str | None = None) -> None:
        """Store the records of one evaluated model, and its timing, in one transaction."""
        records = list(records)
        if not records:
            return
        for record in records:
            if not (0.0 <= record.accuracy <= 1.0):
                raise ValueError(f"accuracy must lie in [0, 1], got {record.accuracy} for {record}")
        first = records[0]
        with self._transaction() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.method, r.hyperparameters, r.subset, r.scored_task, r.split, r.accuracy,
                  None if r.normalized_accuracy is None or math.isnan(r.normalized_accuracy) else r.normalized_accuracy)
                 for r in records],
            )
            connection.execute(
                "INSERT INTO timings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, first.method, first.hyperparameters, first.subset, merge_seconds, eval_seconds,
                 worker or f"{socket.gethostname()}:{os.getpid()}", time.time()),
            )

    def _transaction(self):
        return _Transaction(self._connect())

    # ----------------------------------------------------------------------------- reading
    def stored_keys(self, run_id: str) -> set[tuple[str, str, str, str, str]]:
        """``(method, hyperparameters, subset, scored_task, split)`` of every record of a run."""
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT method, hyperparameters, subset, scored_task, split FROM records WHERE run_id = ?", (run_id,)
            ).fetchall()
        return set(rows)

    def accuracies(self, run_id: str, method: str) -> dict[tuple[str, str, str], float]:
        """``(subset, scored_task, split) -> accuracy`` of a run's records of ``method``
        (e.g. ``"finetuned"``: the normalisers)."""
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT subset, scored_task, split, accuracy FROM records WHERE run_id = ? AND method = ?",
                (run_id, method),
            ).fetchall()
        return {(subset, task, split): accuracy for subset, task, split, accuracy in rows}

    def runs(self) -> pd.DataFrame:
        """Every run in the store."""
        with closing(self._connect()) as connection:
            return pd.read_sql_query("SELECT * FROM runs ORDER BY created_at", connection)

    def frame(self, run_id: str | None = None, method: str | None = None) -> pd.DataFrame:
        """The records (of one run / method, or all) as a DataFrame, one row per record.

        Columns: ``preset, size, seed, library_version, run_id, method, hyperparameters`` (JSON),
        one column per hyperparameter name (``alpha``, ``beta``, ...; ``param_<name>`` for the
        names of :data:`RESERVED_COLUMNS`, e.g. DARE's ``param_seed``), ``subset`` (``"a+b"``),
        ``n_tasks``, ``scored_task``, ``observed`` (the scored task is in the subset),
        ``split``, ``accuracy``, ``normalized_accuracy``. Sorted by every key, so equal stores
        give equal frames.
        """
        query = ("SELECT runs.preset, runs.size, runs.seed, runs.library_version, records.* "
                 "FROM records JOIN runs USING (run_id)")
        conditions, parameters = [], []
        for column, value in (("records.run_id", run_id), ("records.method", method)):
            if value is not None:
                conditions.append(f"{column} = ?")
                parameters.append(value)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        with closing(self._connect()) as connection:
            frame = pd.read_sql_query(query, connection, params=parameters)
        return tidy_records(frame)

    def timings(self, run_id: str | None = None) -> pd.DataFrame:
        """Seconds spent merging and evaluating each model (all attempts, in order)."""
        query, parameters = "SELECT * FROM timings", []
        if run_id is not None:
            query, parameters = query + " WHERE run_id = ?", [run_id]
        with closing(self._connect()) as connection:
            return pd.read_sql_query(query + " ORDER BY finished_at", connection, params=parameters)


#: Columns of records and of the tables of :mod:`.tuning` that a hyperparameter column must not
#: take: a hyperparameter of one of these names is stored as ``param_<name>`` (DARE's ``seed``).
RESERVED_COLUMNS = frozenset({
    "preset", "size", "seed", "library_version", "run_id", "method", "hyperparameters", "subset", "n_tasks",
    "scored_task", "observed", "split", "accuracy", "normalized_accuracy", "score", "selection_score", "tuned_on",
})


def setting_column(name: str) -> str:
    """The column that holds hyperparameter ``name`` (see :data:`RESERVED_COLUMNS`)."""
    return f"param_{name}" if name in RESERVED_COLUMNS else name


def with_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with one typed column per hyperparameter found in its ``hyperparameters`` JSON
    (named by :func:`setting_column`; missing where a setting lacks that hyperparameter), so
    that tables are filtered and plotted by ``frame["alpha"]``, never by parsing text."""
    settings = pd.DataFrame([setting_of(key) for key in frame["hyperparameters"]], index=frame.index)
    return frame.assign(**{setting_column(name): settings[name] for name in settings.columns})


def tidy_records(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``n_tasks``, ``observed`` and the hyperparameter columns of :func:`with_settings` to
    raw records, sorted."""
    frame = frame.copy()
    subsets = frame["subset"].map(parse_subset_name)
    frame["n_tasks"] = subsets.map(len)
    frame["observed"] = [task in subset for task, subset in zip(frame["scored_task"], subsets)]
    frame = with_settings(frame)
    keys = ["run_id", "method", "hyperparameters", "subset", "scored_task", "split"]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def records_for(method: str, hyperparameters: Mapping[str, Any], subset: tuple[str, ...],
                accuracy: Mapping[tuple[str, str], float],
                finetuned: Mapping[tuple[str, str], float]) -> list[Record]:
    """Records of one evaluated model: ``accuracy[(task, split)]``, normalised by the fine-tuned
    accuracy ``finetuned[(task, split)]`` (NaN where that is missing or zero)."""
    key, name = hyperparameters_key(hyperparameters), subset_name(subset)
    records = []
    for (task, split), value in sorted(accuracy.items()):
        records.append(Record(method, key, name, task, split, value,
                              normalized_accuracy(value, finetuned.get((task, split), 0.0))))
    return records


class _Transaction:
    """``with``: a connection in an immediate (write-locking) transaction, committed on success,
    rolled back on error, closed either way."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            self.connection.execute("ROLLBACK" if error_type else "COMMIT")
        finally:
            self.connection.close()

