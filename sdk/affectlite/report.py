"""What ``affectlite analyze`` writes for one recording: the CSV rows, the summary, and a self-contained HTML report.

The report is one HTML file: the timeline is drawn by matplotlib (the ``report`` extra) as SVG with its text as
paths, inlined into the page; no script, stylesheet, font or image is loaded from anywhere (thumbnails, only with
``--keep-thumbnails``, are files beside it). Labels and scores only: no frame or audio is written by default.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import SourceUnavailableError
from .labels import LABELS

__all__ = ["CSV_COLUMNS", "REPORT_HINT", "ResultLog", "csv_rows", "index_html", "primary_stream", "render_report",
           "summarize", "timeline_svg"]

REPORT_HINT = "the HTML report needs matplotlib: pip install 'affectlite[report]'"

#: Colours of the labels in every plot (colour-blind-friendly Okabe-Ito palette, grey for unknown).
COLORS = {"neutral": "#999999", "happy": "#E69F00", "sad": "#0072B2", "angry": "#D55E00", "fear": "#CC79A7",
          "disgust": "#009E73", "surprise": "#F0E442", "unknown": "#DDDDDD"}

CSV_COLUMNS = (["time_s", "track_id", "label", "confidence", "valence", "arousal"]
               + [f"p_{lab}" for lab in LABELS]
               + ["face_label", "face_confidence", "voice_label", "voice_confidence", "voice_reliability",
                  "text_label", "text_confidence", "weight_face", "weight_voice", "weight_text"])

_NS = 1e9


def _t(r: Mapping[str, Any]) -> float:
    return float(r.get("capture_ns", 0)) / _NS


class ResultLog:
    """A compact in-memory copy of a run's results: what :func:`summarize` and :func:`timeline_svg` read.

    A full result dict takes about 6.5 KB in memory (an hour at 10 results per second: ~280 MB); a row here keeps
    the time, track, fused label and probabilities, the track's face label, and shared voice/text entries
    (one object per distinct voice or text result), about a sixth of that.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._voice: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._text: dict[tuple[Any, ...], dict[str, Any]] = {}

    def add(self, d: Mapping[str, Any]) -> None:
        """Keep the parts of one result (``EmotionResult.to_json_dict()``) the summary and timeline use."""
        tid = d.get("track_id")
        face = next((f for f in d.get("faces", []) if f.get("track_id") == tid), None)
        v, tx = d.get("voice"), d.get("text")
        sv = st = None
        if v:
            kv = (int(v.get("utterance_id", 0)), int(v["start_ns"]), int(v["end_ns"]), str(v["label"]))
            sv = self._voice.setdefault(kv, {"utterance_id": kv[0], "start_ns": kv[1], "end_ns": kv[2],
                                             "label": kv[3]})
        if tx:
            kt = (int(tx.get("timestamp_ns", 0)), str(tx["label"]))
            st = self._text.setdefault(kt, {"timestamp_ns": kt[0], "label": kt[1]})
        self.rows.append({"capture_ns": int(d.get("capture_ns", 0)), "track_id": tid, "label": str(d["label"]),
                          "probabilities": {k: float(x) for k, x in d.get("probabilities", {}).items()},
                          "faces": [{"track_id": tid, "label": str(face["label"])}] if face else [],
                          "voice": sv, "text": st})


def csv_rows(results: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """One row per result (time step and face track), in :data:`CSV_COLUMNS` order."""
    rows: list[list[Any]] = []
    for r in results:
        probs = r.get("probabilities", {})
        face = next((f for f in r.get("faces", []) if f.get("track_id") == r.get("track_id")), None)
        v, tx, w = r.get("voice"), r.get("text"), r.get("modality_weights", {})
        rows.append([round(_t(r), 3), "" if r.get("track_id") is None else r["track_id"], r["label"],
                     round(float(r["confidence"]), 4), round(float(r["valence"]), 4), round(float(r["arousal"]), 4)]
                    + [probs.get(lab, 0.0) for lab in LABELS]
                    + [face["label"] if face else "", round(face["confidence"], 4) if face else "",
                       v["label"] if v else "", round(v["confidence"], 4) if v else "",
                       "" if not v or v.get("reliability") is None else round(v["reliability"], 4),
                       tx["label"] if tx else "", round(tx["confidence"], 4) if tx else "",
                       round(w.get("face", 0.0), 4), round(w.get("voice", 0.0), 4), round(w.get("text", 0.0), 4)])
    return rows


def _durations(times: Sequence[float], end: float, cap: float) -> list[float]:
    """How long each time step holds: until the next one, at most ``cap`` seconds (the last until ``end``)."""
    out = []
    for i, t in enumerate(times):
        nxt = times[i + 1] if i + 1 < len(times) else max(end, t)
        out.append(max(0.0, min(nxt - t, cap)))
    return out


def _shares(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    acc: dict[str, float] = defaultdict(float)
    for lab, d in pairs:
        acc[lab] += d
    total = sum(acc.values())
    return {k: round(v / total, 4) for k, v in sorted(acc.items(), key=lambda kv: -kv[1])} if total > 0 else {}


def _streams(results: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Results per face track (``"face 1"``...) and for the audio/text-only stream (``"stream"``)."""
    by: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        by["stream" if r.get("track_id") is None else f"face {r['track_id']}"].append(r)
    return dict(by)


def primary_stream(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The results of the face track seen longest, or the audio/text stream when no face was seen."""
    streams = _streams(results)
    if not streams:
        return []
    faces = {k: v for k, v in streams.items() if k != "stream"}
    pick = max(faces, key=lambda k: len(faces[k])) if faces else "stream"
    return streams[pick]


def summarize(results: Sequence[Mapping[str, Any]], *, duration_s: float, cues: Sequence[Mapping[str, Any]] = (),
              top_changes: int = 5) -> dict[str, Any]:
    """The summary of one recording (``summary.json``).

    Args:
        results: Every result, as :meth:`EmotionResult.to_json_dict` gives them, in order.
        duration_s: Length of the recording.
        cues: The subtitle cues (``start_s``, ``end_s``, ``text``).
        top_changes: How many moments of largest change to list.
    """
    streams = _streams(results)
    tracks: dict[str, Any] = {}
    fused_pairs: list[tuple[str, float]] = []
    face_pairs: list[tuple[str, float]] = []
    for key, rs in streams.items():
        times = [_t(r) for r in rs]
        durs = _durations(times, duration_s, cap=1.0)
        pairs = list(zip([r["label"] for r in rs], durs, strict=True))
        if key != "stream":
            faces = [next((f for f in r.get("faces", []) if f.get("track_id") == r.get("track_id")), None)
                     for r in rs]
            face_pairs += [(f["label"], d) for f, d in zip(faces, durs, strict=True) if f]
            tracks[key] = {"visible_s": round(sum(durs), 2), "first_s": round(times[0], 2),
                           "last_s": round(times[-1], 2), "fused": _shares(pairs)}
    prim = primary_stream(results)
    if prim:
        pt = [_t(r) for r in prim]
        fused_pairs = list(zip([r["label"] for r in prim], _durations(pt, duration_s, cap=1.0), strict=True))
    # voice: the final result of each utterance, weighted by its length
    utter: dict[int, Mapping[str, Any]] = {}
    for r in results:
        v = r.get("voice")
        if v:
            utter[int(v.get("utterance_id", 0))] = v
    voice_pairs = [(v["label"], max(0.0, (v["end_ns"] - v["start_ns"]) / _NS)) for v in utter.values()]
    speech = _speech_seconds([(v["start_ns"] / _NS, v["end_ns"] / _NS) for v in utter.values()])
    texts: dict[tuple[float, str], str] = {}
    for r in results:
        tx = r.get("text")
        if tx:
            texts[(float(tx.get("timestamp_ns", 0)) / _NS, str(tx.get("label")))] = tx["label"]
    return {
        "duration_s": round(duration_s, 3),
        "results": len(results),
        "fused": _shares(fused_pairs),
        "modalities": {"face": _shares(face_pairs), "voice": _shares(voice_pairs),
                       "text": _shares((lab, 1.0) for lab in texts.values())},
        "face_tracks": tracks,
        "speech_s": round(speech, 2),
        "utterances": len(utter),
        "subtitle_cues": len(cues),
        "largest_changes": _largest_changes(prim, top_changes),
    }


def _speech_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def _largest_changes(rs: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` moments where the fused probabilities moved most (L1 distance over 1 s), at least 2 s apart."""
    if len(rs) < 2:
        return []
    times = [_t(r) for r in rs]
    probs = [[float(r["probabilities"].get(lab, 0.0)) for lab in LABELS] for r in rs]
    cands = []
    j = 0
    for i in range(1, len(rs)):
        while times[i] - times[j] > 1.0:
            j += 1
        if j == i:
            continue
        d = sum(abs(a - b) for a, b in zip(probs[i], probs[j], strict=True))
        cands.append((d, i, j))
    out: list[dict[str, Any]] = []
    for d, i, j in sorted(cands, key=lambda c: (-c[0], c[1])):
        if len(out) >= n or d < 0.05:
            break
        if any(abs(times[i] - o["time_s"]) < 2.0 for o in out):
            continue
        out.append({"time_s": round(times[i], 2), "change": round(d, 3), "from": rs[j]["label"],
                    "to": rs[i]["label"]})
    return sorted(out, key=lambda o: o["time_s"])


def _merge(segs: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Join touching segments of the same label (a long recording's lane is a few bars, not one per frame)."""
    out: list[tuple[float, float, str]] = []
    for s, d, lab in sorted(segs):
        if out and out[-1][2] == lab and s <= out[-1][0] + out[-1][1] + 1e-3:
            ps, pd, _ = out[-1]
            out[-1] = (ps, max(pd, s + d - ps), lab)
        else:
            out.append((s, d, lab))
    return out


def _binned(rs: Sequence[Mapping[str, Any]], max_points: int) -> list[Mapping[str, Any]]:
    """At most ``max_points`` results: probabilities averaged over equal time bins (plots of long recordings)."""
    if len(rs) <= max_points:
        return list(rs)
    t0, t1 = _t(rs[0]), _t(rs[-1])
    width = (t1 - t0) / max_points or 1.0
    bins: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rs:
        bins[min(int((_t(r) - t0) / width), max_points - 1)].append(r)
    out: list[Mapping[str, Any]] = []
    for b in sorted(bins):
        group = bins[b]
        probs = {lab: sum(float(g["probabilities"].get(lab, 0.0)) for g in group) / len(group) for lab in LABELS}
        out.append({"capture_ns": round((t0 + b * width) * _NS), "probabilities": probs,
                    "label": max(probs, key=lambda k: probs[k])})
    return out


def _import_pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SourceUnavailableError(REPORT_HINT) from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def timeline_svg(results: Sequence[Mapping[str, Any]], *, duration_s: float,
                 cues: Sequence[Mapping[str, Any]] = (), title: str = "") -> str:
    """The timeline as an SVG document (matplotlib; text drawn as paths, so no font is needed).

    Top: the fused probabilities of the primary face track (or the audio/text stream) as stacked areas. Below,
    one lane per face track, the voice and the text, coloured by label; subtitle cues are marked on the time
    axis of the text lane.

    Raises:
        SourceUnavailableError: matplotlib is not installed.
    """
    plt = _import_pyplot()
    from matplotlib import rcParams

    streams = _streams(results)
    face_keys = sorted((k for k in streams if k != "stream"), key=lambda k: int(k.split()[1]))
    lanes: list[tuple[str, list[tuple[float, float, str]]]] = []
    for k in face_keys:
        rs = streams[k]
        ts = [_t(r) for r in rs]
        segs = []
        for r, t, d in zip(rs, ts, _durations(ts, duration_s, cap=0.5), strict=True):
            f = next((f for f in r.get("faces", []) if f.get("track_id") == r.get("track_id")), None)
            if f is not None:
                segs.append((t, d, str(f["label"])))
        lanes.append((k, _merge(segs)))
    utter: dict[int, Mapping[str, Any]] = {}
    for r in results:
        if r.get("voice"):
            utter[int(r["voice"].get("utterance_id", 0))] = r["voice"]
    lanes.append(("voice", [(v["start_ns"] / _NS, max(0.05, (v["end_ns"] - v["start_ns"]) / _NS), str(v["label"]))
                            for v in utter.values()]))
    text_segs: dict[float, tuple[float, float, str]] = {}
    for r in results:
        tx = r.get("text")
        if tx:
            t0 = float(tx.get("timestamp_ns", 0)) / _NS
            end = next((float(c["end_s"]) for c in cues if abs(float(c["start_s"]) - t0) < 1e-3), t0 + 2.0)
            text_segs[t0] = (t0, max(0.1, end - t0), str(tx["label"]))
    lanes.append(("text", list(text_segs.values())))

    prim = _binned(primary_stream(results), max_points=1500)
    with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "affectlite", "font.size": 9}):
        rcParams["svg.hashsalt"] = "affectlite"
        n = len(lanes)
        fig, axes = plt.subplots(1 + n, 1, figsize=(11, 2.6 + 0.45 * n), sharex=True,
                                 gridspec_kw={"height_ratios": [5] + [1] * n})
        ax = axes[0]
        end = max(duration_s, max((_t(r) for r in results), default=0.0), 0.1)
        if prim:
            ts = [_t(r) for r in prim]
            ys = [[float(r["probabilities"].get(lab, 0.0)) for r in prim] for lab in LABELS]
            ax.stackplot(ts, ys, colors=[COLORS[lab] for lab in LABELS], labels=list(LABELS), step="post")
        ax.set_ylim(0, 1)
        ax.set_ylabel("fused p")
        ax.set_title(title or "fused emotion probabilities", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
        for lax, (name, segs) in zip(axes[1:], lanes, strict=True):
            for lab in COLORS:
                bars = [(s, d) for s, d, lb in segs if lb == lab]
                if bars:
                    lax.broken_barh(bars, (0.1, 0.8), facecolors=COLORS[lab], edgecolors=COLORS[lab], linewidth=0.4)
            lax.set_yticks([0.5])
            lax.set_yticklabels([name])
            lax.set_ylim(0, 1)
            lax.tick_params(axis="y", length=0)
            if name == "text":
                for c in cues:
                    lax.plot([float(c["start_s"])], [0.0], marker="^", color="black", markersize=5, clip_on=False)
        axes[-1].set_xlim(0, end)
        axes[-1].set_xlabel("time (s)")
        fig.align_ylabels(axes)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)  # RDF metadata: namespaces, no content
    return svg[svg.index("<svg"):]  # drop the XML prolog and doctype: the SVG is inlined into HTML


_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1150px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}.muted{color:#666}
.timeline svg{width:100%;height:auto}code{font-size:.9em}.sw{display:inline-block;width:.8em;height:.8em;
margin-right:.3em;vertical-align:middle}"""


def _share_cell(shares: Mapping[str, float]) -> str:
    if not shares:
        return '<span class="muted">-</span>'
    return " ".join(f'<span class="sw" style="background:{COLORS.get(k, "#ccc")}"></span>{html.escape(k)} '
                    f"{100 * v:.0f}%" for k, v in shares.items())


def render_report(*, name: str, source: str, results: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                  cues: Sequence[Mapping[str, Any]], cue_source: str, models: Sequence[Mapping[str, Any]],
                  made_with: Mapping[str, Any], thumbnails: Mapping[str, str] | None = None) -> str:
    """The self-contained HTML report of one recording.

    Raises:
        SourceUnavailableError: matplotlib is not installed.
    """
    esc = html.escape
    svg = timeline_svg(results, duration_s=float(summary["duration_s"]), cues=cues, title=f"{name}: fused "
                       "emotion probabilities (primary face)")
    rows = [("duration", f"{summary['duration_s']:.1f} s"), ("results", str(summary["results"])),
            ("fused (primary)", _share_cell(summary["fused"])),
            ("face", _share_cell(summary["modalities"]["face"])),
            ("voice (per utterance, by length)", _share_cell(summary["modalities"]["voice"])),
            ("text (per cue)", _share_cell(summary["modalities"]["text"])),
            ("speech", f"{summary['speech_s']:.1f} s in {summary['utterances']} utterance(s)"),
            ("subtitle cues", f"{summary['subtitle_cues']} ({esc(cue_source) or 'none found'})")]
    summary_rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    track_rows = "".join(
        f"<tr><td>{esc(k)}{_thumb(thumbnails, k)}</td><td>{t['visible_s']:.1f} s</td>"
        f"<td>{t['first_s']:.1f}-{t['last_s']:.1f} s</td><td>{_share_cell(t['fused'])}</td></tr>"
        for k, t in summary["face_tracks"].items())
    change_rows = "".join(f"<tr><td>{c['time_s']:.1f} s</td><td>{esc(c['from'])} &rarr; {esc(c['to'])}</td>"
                          f"<td>{c['change']:.2f}</td></tr>" for c in summary["largest_changes"])
    cue_rows = "".join(f"<tr><td>{float(c['start_s']):.1f}-{float(c['end_s']):.1f} s</td><td>{esc(str(c['text']))}"
                       "</td></tr>" for c in cues[:200])
    model_rows = "".join(
        f"<tr><td>{esc(m['modality'])}</td><td>{esc(m['name'])} {esc(m['version'])}</td><td><ul>"
        + "".join(f"<li>{esc(x)}</li>" for x in m["limitations"]) + "</ul></td></tr>" for m in models)
    opts = esc(json.dumps(made_with, indent=1, sort_keys=True, default=str))
    counts = Counter(r["label"] for r in results)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>affectlite report: {esc(name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_CSS}</style></head>
<body>
<h1>affectlite report: {esc(name)}</h1>
<p class="muted">{esc(source)} &middot; made on this device by affectlite {esc(str(made_with.get("affectlite", "")))};
labels and scores only: no frame or audio is stored in this report. Results are model estimates of
<em>expressed</em> emotion, not of what a person feels; read the caveats below before drawing conclusions.</p>
<h2>Timeline</h2>
<div class="timeline" id="timeline">{svg}</div>
<p class="muted">Lanes: one per face track (the face model's label), the voice (one bar per utterance) and the
text (one bar per subtitle cue, &#9650; marks each cue's start). {len(results)} results, most often
{esc(counts.most_common(1)[0][0]) if counts else "-"}.</p>
<h2>Summary</h2>
<table id="summary">{summary_rows}</table>
<h2>Face tracks</h2>
<table id="tracks"><tr><th>track</th><th>visible</th><th>seen</th><th>fused</th></tr>{track_rows}</table>
<h2>Largest changes</h2>
<table><tr><th>time</th><th>fused label</th><th>change (L1 over 1 s)</th></tr>{change_rows}</table>
<h2>Subtitle cues</h2>
<table><tr><th>time</th><th>text</th></tr>{cue_rows}</table>
<h2>Models and their caveats</h2>
<table id="models"><tr><th>modality</th><th>model</th><th>limitations (from its model card)</th></tr>
{model_rows}</table>
<h2>How this was made</h2>
<pre>{opts}</pre>
</body></html>
"""


def _thumb(thumbnails: Mapping[str, str] | None, key: str) -> str:
    if not thumbnails or key not in thumbnails:
        return ""
    return f'<br><img src="{html.escape(thumbnails[key])}" alt="{html.escape(key)}" width="64">'


def index_html(entries: Sequence[Mapping[str, Any]]) -> str:
    """``index.html`` linking each recording's report (``entries``: name, href, summary, error)."""
    esc = html.escape
    rows = []
    for e in entries:
        s = e.get("summary") or {}
        if e.get("error"):
            rows.append(f"<tr><td>{esc(e['name'])}</td><td colspan=3>failed: {esc(str(e['error']))}</td></tr>")
            continue
        top = next(iter(s.get("fused", {}).items()), ("-", 0.0))
        rows.append(f'<tr><td><a href="{esc(e["href"])}">{esc(e["name"])}</a></td>'
                    f"<td>{float(s.get('duration_s', 0.0)):.1f} s</td><td>{esc(top[0])} "
                    f"{100 * float(top[1]):.0f}%</td><td>{len(s.get('face_tracks', {}))}</td></tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>affectlite analysis</title><style>{_CSS}</style></head>
<body><h1>affectlite analysis</h1>
<table id="index"><tr><th>recording</th><th>duration</th><th>most of the time</th><th>face tracks</th></tr>
{''.join(rows)}</table></body></html>
"""


