"""Optional local event journal for kiosks: results only, in SQLite (WAL), with retention limits.

The journal stores what a result *says*, never what it was computed from: per event the wall-clock and
monotonic timestamps, the fused label, confidence, probabilities, valence/arousal, the primary track id
and, per modality, only labels, confidences and ephemeral track ids. No pixels, samples, text, face
boxes or identities. Pass :meth:`EventJournal.append` as (or from) the pipeline's ``on_result``::

    with EventJournal("/var/lib/kiosk/events.db", retention_s=7 * 86400, max_events=100_000) as journal:
        with affectlite.EmotionPipeline(opts, on_result=journal.append) as pipe:
            pipe.wait()

Durability: every :meth:`append` is its own committed transaction in WAL mode, so a process killed
(``kill -9``) right after ``append`` returned keeps that event. With ``synchronous="NORMAL"`` (default)
a power cut may lose the last few commits; ``synchronous="FULL"`` fsyncs each commit (slower on SD cards).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AffectliteError, ConfigError
from .labels import LABELS
from .results import EmotionResult

__all__ = ["EventJournal", "JournalError", "JournalEvent"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wall_ns INTEGER NOT NULL,
    capture_ns INTEGER NOT NULL,
    result_ns INTEGER NOT NULL,
    frame_index INTEGER NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    probabilities TEXT NOT NULL,
    valence REAL NOT NULL,
    arousal REAL NOT NULL,
    track_id INTEGER,
    modalities TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_wall_ns ON events(wall_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = ("id", "wall_ns", "capture_ns", "result_ns", "frame_index", "label", "confidence", "probabilities",
            "valence", "arousal", "track_id", "modalities")
_PRUNE_EVERY = 256  # appends between age-retention passes (also run on open, on prune() and ...)
_PRUNE_INTERVAL_S = 60.0  # ... at least this often while appending


class JournalError(AffectliteError):
    """The journal database cannot be opened, read or written (message says which file and why)."""


@dataclass(frozen=True)
class JournalEvent:
    """One stored result.

    Attributes:
        id: Row id (increasing; never reused).
        wall_ns: Wall-clock time it was stored (``time.time_ns()``).
        capture_ns: Capture time of the newest evidence (monotonic ns of the run that stored it).
        result_ns: When the result was made (monotonic ns).
        frame_index: Frame index, or -1 for audio/text-driven results.
        label: Fused label (``"unknown"`` when under the threshold).
        confidence: Fused confidence.
        probabilities: Label -> probability.
        valence: -1 .. 1.
        arousal: 0 .. 1.
        track_id: Primary face track id, or ``None``.
        modalities: Per modality the weight, label and confidence used, plus face track ids, e.g.
            ``{"face": {"weight": 0.6, "faces": [{"track_id": 3, "label": "happy", "confidence": 0.8}]}}``.
    """

    id: int
    wall_ns: int
    capture_ns: int
    result_ns: int
    frame_index: int
    label: str
    confidence: float
    probabilities: Mapping[str, float]
    valence: float
    arousal: float
    track_id: int | None
    modalities: Mapping[str, Any] = field(default_factory=dict)


def _r(x: float) -> float:
    return round(float(x), 4)


def _summary(result: EmotionResult) -> dict[str, Any]:
    """Labels, scores and track ids per modality: nothing else leaves the result."""
    mods: dict[str, Any] = {}
    weights = dict(result.modality_weights)
    if result.faces or "face" in weights:
        mods["face"] = {"weight": _r(weights.get("face", 0.0)),
                        "faces": [{"track_id": int(f.track_id), "label": f.label, "confidence": _r(f.confidence)}
                                  for f in result.faces]}
    if result.voice is not None or "voice" in weights:
        v = result.voice
        mods["voice"] = {"weight": _r(weights.get("voice", 0.0)),
                         **({"label": v.label, "confidence": _r(v.confidence), "utterance_id": int(v.utterance_id)}
                            if v is not None else {})}
    if result.text is not None or "text" in weights:
        t = result.text
        mods["text"] = {"weight": _r(weights.get("text", 0.0)),
                        **({"label": t.label, "confidence": _r(t.confidence)} if t is not None else {})}
    for k, w in weights.items():  # any other modality (e.g. a plugin): its weight only
        mods.setdefault(str(k), {"weight": _r(w)})
    return mods


class EventJournal:
    """A local SQLite journal of pipeline results, safe to share between threads.

    Args:
        path: Database file (created, with its folder, if missing). ``":memory:"`` for tests.
        retention_s: Delete events stored more than this many seconds ago (``None``: keep by age).
        max_events: Keep at most this many newest events (``None``: no count limit).
        synchronous: SQLite ``synchronous`` level: ``"NORMAL"`` (survives a process crash) or ``"FULL"``
            (also survives power loss, slower).

    Raises:
        ConfigError: a non-positive limit or an unknown ``synchronous`` level.
        JournalError: the file cannot be opened, is not a journal, or is corrupt.
    """

    def __init__(self, path: str | os.PathLike[str], *, retention_s: float | None = None,
                 max_events: int | None = None, synchronous: str = "NORMAL") -> None:
        if retention_s is not None and not (isinstance(retention_s, (int, float)) and retention_s > 0):
            raise ConfigError(f"EventJournal: retention_s must be a positive number of seconds or None, "
                              f"got {retention_s!r}")
        if max_events is not None and not (isinstance(max_events, int) and not isinstance(max_events, bool)
                                           and max_events > 0):
            raise ConfigError(f"EventJournal: max_events must be a positive int or None, got {max_events!r}")
        sync = str(synchronous).upper()
        if sync not in ("NORMAL", "FULL"):
            raise ConfigError(f"EventJournal: synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = str(path) if str(path) == ":memory:" else str(Path(path))
        self.retention_s = None if retention_s is None else float(retention_s)
        self.max_events = max_events
        self._lock = threading.Lock()
        self._since_prune = 0
        self._last_prune = time.monotonic()
        self._closed = False
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise JournalError(f"cannot open event journal {self.path}: {e}") from None
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path != ":memory:" and str(mode).lower() != "wal":
                raise JournalError(f"event journal {self.path}: the file system does not support SQLite WAL "
                                   f"mode (got {mode!r}); put the journal on a local disk")
            self._db.execute(f"PRAGMA synchronous={sync}")
            cols = tuple(r[1] for r in self._db.execute("PRAGMA table_info(events)"))
            if cols and cols != _COLUMNS:
                raise JournalError(f"event journal {self.path}: table 'events' has columns {cols}, expected "
                                   f"{_COLUMNS}: this file is not an affectlite journal; use another path")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(_SCHEMA_VERSION),))
            elif row[0] != str(_SCHEMA_VERSION):
                raise JournalError(f"event journal {self.path} has schema version {row[0]}, this affectlite "
                                   f"writes {_SCHEMA_VERSION}: move the old file away or upgrade affectlite")
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise JournalError(f"event journal {self.path} cannot be used: {e} (not a SQLite database, or "
                               "corrupt: move it away and a new journal will be created)") from None
        except BaseException:
            self._db.close()
            raise
        self.prune()

    # ------------------------------------------------------------------------------------------ write

    def append(self, result: EmotionResult) -> int:
        """Store one result (its labels, scores, timestamps and track ids only) and commit it.

        Usable directly as a pipeline ``on_result`` callback; safe to call from any thread.

        Returns:
            The event's id. Once this returns, the event survives the process being killed.

        Raises:
            JournalError: the journal is closed, or the write failed (e.g. disk full).
        """
        if not isinstance(result, EmotionResult):
            raise TypeError(f"EventJournal.append takes an EmotionResult, got {type(result).__name__}")
        probs = {lab: _r(p) for lab, p in zip(LABELS, result.probabilities, strict=False)}
        row = (time.time_ns(), int(result.capture_ns), int(result.result_ns), int(result.frame_index),
               str(result.label), float(result.confidence), json.dumps(probs), float(result.valence),
               float(result.arousal), None if result.track_id is None else int(result.track_id),
               json.dumps(_summary(result), separators=(",", ":")))
        with self._lock:
            self._check_open()
            try:
                cur = self._db.execute(
                    "INSERT INTO events(wall_ns, capture_ns, result_ns, frame_index, label, confidence, "
                    "probabilities, valence, arousal, track_id, modalities) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
                rowid = int(cur.lastrowid or 0)
                if self.max_events is not None:  # strict count limit; ids only grow, so this is an index seek
                    self._db.execute("DELETE FROM events WHERE id <= ?", (rowid - self.max_events,))
            except sqlite3.Error as e:
                raise JournalError(f"event journal {self.path}: cannot store the event: {e}") from None
            self._since_prune += 1
            if self._since_prune >= _PRUNE_EVERY or time.monotonic() - self._last_prune > _PRUNE_INTERVAL_S:
                self._prune_locked()
        return rowid

    def __call__(self, result: EmotionResult) -> None:
        """Same as :meth:`append` (so a journal can be passed as ``on_result`` itself)."""
        self.append(result)

    def prune(self) -> int:
        """Apply the retention limits now.

        ``max_events`` is enforced on every append; ``retention_s`` on open, every 256 appends and at
        least once a minute while appending, and whenever this is called.

        Returns:
            The number of events deleted.
        """
        with self._lock:
            self._check_open()
            return self._prune_locked()

    def _prune_locked(self) -> int:
        self._since_prune = 0
        self._last_prune = time.monotonic()
        deleted = 0
        try:
            if self.retention_s is not None:
                cutoff = time.time_ns() - int(self.retention_s * 1e9)
                deleted += self._db.execute("DELETE FROM events WHERE wall_ns < ?", (cutoff,)).rowcount
            if self.max_events is not None:
                deleted += self._db.execute(
                    "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.max_events,)).rowcount
        except sqlite3.Error as e:
            raise JournalError(f"event journal {self.path}: retention pass failed: {e}") from None
        return max(deleted, 0)

    # ------------------------------------------------------------------------------------------ read

    def query(self, since_ns: int | None = None, until_ns: int | None = None, *, limit: int | None = None,
              label: str | None = None, track_id: int | None = None, newest_first: bool = False
              ) -> list[JournalEvent]:
        """Read stored events, oldest first unless ``newest_first``.

        Args:
            since_ns: Only events stored at or after this wall-clock time (``time.time_ns()``).
            until_ns: Only events stored before this wall-clock time.
            limit: At most this many events.
            label: Only events with this fused label.
            track_id: Only events about this primary track.
            newest_first: Order by id descending.
        """
        where, args = [], []
        for cond, val in (("wall_ns >= ?", since_ns), ("wall_ns < ?", until_ns), ("label = ?", label),
                          ("track_id = ?", track_id)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id " + ("DESC" if newest_first else "ASC")
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            self._check_open()
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise JournalError(f"event journal {self.path}: query failed: {e}") from None
        return [_event(r) for r in rows]

    def __iter__(self) -> Iterator[JournalEvent]:
        return iter(self.query())

    def __len__(self) -> int:
        with self._lock:
            self._check_open()
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def integrity_check(self) -> str:
        """SQLite ``PRAGMA integrity_check``: ``"ok"`` for a healthy file."""
        with self._lock:
            self._check_open()
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # ------------------------------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"event journal {self.path} is closed")

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another reader holds the WAL: it is checkpointed later
            finally:
                self._db.close()

    def __enter__(self) -> EventJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"EventJournal({self.path!r}, retention_s={self.retention_s}, max_events={self.max_events}, "
                f"closed={self._closed})")


def _event(r: tuple[Any, ...]) -> JournalEvent:
    return JournalEvent(id=int(r[0]), wall_ns=int(r[1]), capture_ns=int(r[2]), result_ns=int(r[3]),
                        frame_index=int(r[4]), label=str(r[5]), confidence=float(r[6]),
                        probabilities=json.loads(r[7]), valence=float(r[8]), arousal=float(r[9]),
                        track_id=None if r[10] is None else int(r[10]), modalities=json.loads(r[11]))
