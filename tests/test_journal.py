"""Event journal: results only, WAL, retention, thread safety, and kill -9 durability."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from affectlite.errors import AffectliteError, ConfigError
from affectlite.journal import EventJournal, JournalError, JournalEvent
from affectlite.labels import LABELS
from affectlite.results import Box, EmotionResult, FaceResult, TextResult, VoiceResult

SDK = str(Path(__file__).resolve().parents[1] / "sdk")


def _probs(i: int) -> tuple[float, ...]:
    p = [0.02] * len(LABELS)
    p[i % len(LABELS)] = 1.0 - 0.02 * (len(LABELS) - 1)
    return tuple(p)


def _result(i: int, track: int | None = 7) -> EmotionResult:
    face = FaceResult(track_id=track if track is not None else 0, box=Box(123.0, 45.0, 67.0, 89.0),
                      detection_score=0.93, probabilities=_probs(i), timestamp_ns=1000 + i)
    voice = VoiceResult(probabilities=_probs(i + 1), voice_activity=0.8, start_ns=10, end_ns=20, utterance_id=3)
    text = TextResult(probabilities=_probs(i + 2), n_tokens=5, timestamp_ns=30)
    p = _probs(i)
    return EmotionResult(label=LABELS[i % len(LABELS)], probabilities=p, confidence=max(p), valence=0.25,
                         arousal=0.5, faces=(face,), voice=voice, text=text,
                         modality_weights={"face": 0.5, "voice": 0.3, "text": 0.2}, track_id=track,
                         capture_ns=5000 + i, result_ns=6000 + i, frame_index=i)


def test_roundtrip_stores_results_only(tmp_path: Path) -> None:
    db = tmp_path / "kiosk" / "events.db"
    with EventJournal(db) as j:
        t0 = time.time_ns()
        ids = [j.append(_result(i)) for i in range(3)]
        assert ids == sorted(ids) and len(set(ids)) == 3
        ev = j.query()
    assert [e.id for e in ev] == ids
    e = ev[1]
    assert isinstance(e, JournalEvent)
    assert e.label == LABELS[1] and e.frame_index == 1 and e.capture_ns == 5001 and e.result_ns == 6001
    assert e.wall_ns >= t0 and e.track_id == 7 and e.valence == 0.25 and e.arousal == 0.5
    assert e.probabilities[LABELS[1]] == pytest.approx(0.88) and list(e.probabilities) == list(LABELS)
    assert e.modalities["face"]["faces"] == [{"track_id": 7, "label": LABELS[1], "confidence": 0.88}]
    assert e.modalities["voice"]["label"] == LABELS[2] and e.modalities["voice"]["utterance_id"] == 3
    assert e.modalities["text"] == {"weight": 0.2, "label": LABELS[3], "confidence": 0.88}
    # nothing but results at rest: no boxes, no detection scores, no text, no sample/pixel data
    raw = sqlite3.connect(db)
    cols = [r[1] for r in raw.execute("PRAGMA table_info(events)")]
    assert cols == ["id", "wall_ns", "capture_ns", "result_ns", "frame_index", "label", "confidence",
                    "probabilities", "valence", "arousal", "track_id", "modalities"]
    dump = "\n".join(raw.iterdump())
    raw.close()
    for forbidden in ("123.0", "89.0", "0.93", "box", "n_tokens", "voice_activity"):
        assert forbidden not in dump, forbidden


def test_wal_mode_and_reopen_keeps_events(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    j = EventJournal(db)
    j.append(_result(0))
    other = sqlite3.connect(db)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1  # committed, visible to others
    other.close()
    j.close()
    j.close()  # idempotent
    assert j.closed
    with pytest.raises(JournalError, match="closed"):
        j.append(_result(1))
    with EventJournal(db) as j2:
        assert len(j2) == 1 and j2.integrity_check() == "ok"
        j2(_result(2))  # usable as an on_result callback itself
        assert [e.frame_index for e in j2] == [0, 2]


def test_query_filters(tmp_path: Path) -> None:
    with EventJournal(tmp_path / "e.db") as j:
        for i in range(10):
            j.append(_result(i, track=i % 2))
        mid = time.time_ns()
        for i in range(10, 14):
            j.append(_result(i, track=None))
        assert [e.frame_index for e in j.query(since_ns=mid)] == [10, 11, 12, 13]
        assert [e.frame_index for e in j.query(until_ns=mid, limit=3)] == [0, 1, 2]
        assert [e.frame_index for e in j.query(limit=2, newest_first=True)] == [13, 12]
        assert [e.frame_index for e in j.query(track_id=1)] == [1, 3, 5, 7, 9]
        assert all(e.label == "happy" for e in j.query(label="happy")) and j.query(label="happy")
        assert j.query(since_ns=mid)[0].track_id is None


def test_max_events_keeps_newest(tmp_path: Path) -> None:
    with EventJournal(tmp_path / "e.db", max_events=10) as j:
        for i in range(57):
            j.append(_result(i))
            assert len(j) <= 10
        assert [e.frame_index for e in j.query()] == list(range(47, 57))


def test_retention_by_age(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    with EventJournal(db, retention_s=0.3) as j:
        for i in range(5):
            j.append(_result(i))
        time.sleep(0.4)
        j.append(_result(99))
        assert j.prune() == 5
        assert [e.frame_index for e in j] == [99]
    time.sleep(0.4)
    with EventJournal(db, retention_s=0.3) as j:  # enforced on open too
        assert len(j) == 0


def test_concurrent_appends_from_threads(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "e.db")
    ids: list[int] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        for i in range(150):
            rid = j.append(_result(k * 1000 + i))
            with lock:
                ids.append(rid)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    reader_counts = [len(j.query(limit=5)) for _ in range(20)]  # reads interleave with writes
    for t in threads:
        t.join()
    assert len(ids) == 600 and len(set(ids)) == 600 and len(j) == 600 and max(reader_counts) <= 5
    assert j.integrity_check() == "ok"
    j.close()


def test_bad_arguments_and_files(tmp_path: Path) -> None:
    for kw in ({"retention_s": 0}, {"retention_s": -1.0}, {"max_events": 0}, {"max_events": 2.5},
               {"max_events": True}, {"synchronous": "OFF"}):
        with pytest.raises(ConfigError):
            EventJournal(tmp_path / "x.db", **kw)  # type: ignore[arg-type]
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(JournalError, match="not a SQLite database, or corrupt"):
        EventJournal(garbage)
    assert garbage.stat().st_size == 4096  # left intact
    foreign = tmp_path / "foreign.db"
    c = sqlite3.connect(foreign)
    c.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload BLOB)")
    c.commit()
    c.close()
    with pytest.raises(JournalError, match="not an affectlite journal"):
        EventJournal(foreign)
    assert issubclass(JournalError, AffectliteError)
    with EventJournal(tmp_path / "ok.db") as j, pytest.raises(TypeError):
        j.append({"label": "happy"})  # type: ignore[arg-type]


_CHILD = textwrap.dedent("""
    import sys
    from affectlite.journal import EventJournal
    from affectlite.labels import LABELS
    from affectlite.results import EmotionResult
    j = EventJournal(sys.argv[1], synchronous=sys.argv[2], max_events=int(sys.argv[3]))
    p = tuple(1.0 / len(LABELS) for _ in LABELS)
    i = 0
    print("ready", flush=True)
    while True:
        rid = j.append(EmotionResult(label="neutral", probabilities=p, confidence=p[0], frame_index=i))
        print(rid, flush=True)
        i += 1
""")


@pytest.mark.parametrize(("synchronous", "rounds"), [("NORMAL", 3), ("FULL", 1)])
def test_survives_kill_9_mid_write(tmp_path: Path, synchronous: str, rounds: int) -> None:
    db = tmp_path / "events.db"
    committed: set[int] = set()
    for r in range(rounds):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(db), synchronous, "1000000"],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SDK})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        want = 200 + 150 * r  # kill at a different point each round, while it is writing
        got: list[int] = []
        while len(got) < want:
            line = proc.stdout.readline()
            assert line, "child died early"
            got.append(int(line))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        # every complete line the child printed was an id whose commit had returned
        got += [int(x) for x in rest.splitlines()[:-1]] if rest and not rest.endswith("\n") else \
            [int(x) for x in rest.splitlines()]
        assert proc.returncode == -signal.SIGKILL
        committed.update(got)
        assert (tmp_path / "events.db-wal").exists()  # killed with an un-checkpointed WAL
        with EventJournal(db) as j:
            assert j.integrity_check() == "ok"
            stored = {e.id for e in j.query()}
        missing = committed - stored
        assert not missing, f"round {r}: {len(missing)} committed events lost, e.g. {sorted(missing)[:5]}"


def test_journal_file_holds_no_media(tmp_path: Path) -> None:
    from affectlite.privacy import scan_for_media

    since = time.time_ns()
    with EventJournal(tmp_path / "events.db") as j:
        for i in range(20):
            j.append(_result(i))
    assert scan_for_media([tmp_path], since) == []
    # and the JSON we store parses back to plain labels/scores only
    raw = sqlite3.connect(tmp_path / "events.db")
    mods = [json.loads(m) for (m,) in raw.execute("SELECT modalities FROM events")]
    raw.close()
    keys = {k for m in mods for v in m.values() for k in v}
    assert keys <= {"weight", "faces", "label", "confidence", "utterance_id"}
