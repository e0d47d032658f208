"""The documentation: the README (length, links), the MkDocs site (``mkdocs build --strict``, the API reference
lists every public name, the home and a reference page rendered in headless Chromium) and every runnable example
in README.md and docs/ (fenced ``python``/``bash``/``sh``/``console`` blocks), executed here.

A block runs unless the line right before its fence says otherwise (the comment is invisible on GitHub and in
the site)::

    <!-- docs-test: skip: REASON -->        not run here (a reason is required: installs, trains, needs root ...)
    <!-- docs-test: hardware: REASON -->    marked ``hardware`` and not run (needs a device; run it by hand)
    <!-- docs-test: sample -->              run with a profile folder (AFFECTLITE_PROFILE_PATH) whose profiles read
                                            the shipped sample video and speech instead of a camera and microphone
    <!-- docs-test: after-install -->       the ``pip install ...`` commands are left out, the rest runs
    <!-- docs-test: datasets -->            needs ``../shared/datasets`` (skipped where it is missing)

Blocks run in a scratch folder whose top-level entries link to the repository's (so ``examples/...`` and
``firmware_configs/...`` resolve and files written land in the scratch folder; ``../shared`` there is the
checkout's ``../shared``), with this interpreter's ``python3``/``affectlite`` first on PATH.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import affectlite
from _browser import headless_chromium
from affectlite import _profile_files
from affectlite.samples import sample_paths

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
RUN_LANGS = {"python": "python", "py": "python", "python3": "python", "bash": "shell", "sh": "shell",
             "shell": "shell", "console": "console"}
MARKS = {"skip", "hardware", "sample", "after-install", "datasets"}
DATASETS = ROOT.parent / "shared" / "datasets"
MARK = re.compile(r"^\s*<!--\s*docs-test:\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
README_MAX_LINES = 150


def doc_files() -> list[Path]:
    pages = sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)
    return [README, ROOT / "CONTRIBUTING.md", *pages]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int          # 1-based line of the opening fence
    lang: str          # "python", "shell" or "console"
    code: str
    mark: str | None
    reason: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks in a runnable language, with the docs-test mark on the line before each."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            j += 1
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:j]]
        if lang in RUN_LANGS:
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mk = MARK.match(prev)
            out.append(Block(path, i + 1, RUN_LANGS[lang], "\n".join(body) + "\n",
                             mk.group(1) if mk else None, (mk.group(2) or "") if mk else ""))
        i = j + 1
    return out


ALL_BLOCKS = [b for p in doc_files() if p.is_file() for b in blocks(p)]
#: Blocks on pages whose authors have not marked them yet (page, start of the block's first line -> reason);
#: prefer a docs-test comment in the page itself.
UNMARKED = {
    ("docs/voice.md", "affectlite train voice"): "trains the voice model on the datasets (an hour or more)",
    ("docs/face.md", "affectlite train face"): "trains the face model on FER2013 (hours)",
    ("docs/media.md", 'pip install "affectlite['): "installs packages; talk.mp4 and lesson.mkv stand for your files",
    ("docs/media.md", "python3 tests/benchmarks/bench_media.py"): "a benchmark of several minutes",
    ("docs/text.md", "affectlite eval text --data ../shared/datasets/meld"): "evaluates whole corpora (a minute+)",
    ("docs/text.md", "affectlite train text"): "trains the text models on the datasets",
}


# ------------------------------------------------------------------------------------------ README
def test_readme_is_short_and_keeps_the_two_fresh_machine_commands() -> None:
    text = README.read_text(encoding="utf-8")
    n = len(text.splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; keep it within {README_MAX_LINES} (move detail to docs/)"
    assert 'pip install ".[litert,opencv,files]" && affectlite run --sample --pretty' in text
    readme = re.search(r'pip install -e "\.\[([a-z,]+)\]" && python3 -m pytest -q', text)
    assert readme, "the README's test command is missing"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = re.search(r'pip install -q -e "\.\[([a-z,]+)\]"', ci)
    assert install and "dev" in install.group(1).split(","), "CI must install the dev extra (it includes docs)"
    assert install.group(1) == readme.group(1), ".ci/run and the README's test command install different extras"
    assert "\npython3 -m pytest -q\n" in ci


def test_readme_and_models_page_name_every_shipped_model() -> None:
    """The model tables are written by hand: every shipped card's model must appear in them (update them when a
    model is added or renamed; the figures come from the cards, rendered in full on the site's Model cards page)."""
    import json

    readme = README.read_text(encoding="utf-8")
    models = (DOCS / "models" / "index.md").read_text(encoding="utf-8")
    for card in sorted((ROOT / "sdk" / "affectlite" / "models").glob("*.card.json")):
        c = json.loads(card.read_text(encoding="utf-8"))
        if c["task"] == "fusion":
            continue
        assert f"`{c['name']}`" in readme, f"README.md's model table lacks {c['name']} ({card.name})"
        assert f"`{c['name']}`" in models, f"docs/models/index.md lacks {c['name']} ({card.name})"


def test_readme_command_line_lists_every_command() -> None:
    from affectlite.cli import build_parser

    line = next(ln for ln in README.read_text(encoding="utf-8").splitlines() if ln.startswith("**Command line**"))
    listed = set(re.findall(r"`affectlite ([a-z |]+)`", line)[0].replace(" ", "").split("|"))
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert listed == set(sub.choices), f"README lists {sorted(listed)}, the CLI has {sorted(sub.choices)}"


def _anchors(md: str) -> set[str]:
    """GitHub's heading anchors of a Markdown text (lower case, punctuation dropped, spaces to '-')."""
    out: set[str] = set()
    fenced = False
    for ln in md.splitlines():
        if FENCE.match(ln):
            fenced = not fenced
        elif not fenced and ln.startswith("#"):
            title = ln.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", [README, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_every_relative_link_resolves(path: Path) -> None:
    if not path.is_file():
        pytest.fail(f"{path.name} is missing")
    text = path.read_text(encoding="utf-8")
    bad = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file) if file else path
        if not dest.exists():
            bad.append(f"{target}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not bad, "broken links in " + path.name + ":\n" + "\n".join(bad)


# ------------------------------------------------------------------------------------------ the site
@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib_missing(m)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[docs]'; the dev extra includes it)")
    out = Path(tempfile.mkdtemp(prefix="affectlite-site-"))
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=env, check=False)
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    try:
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def importlib_missing(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:  # the parent package is missing
        return True


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_site_builds_strict_and_the_api_reference_lists_every_public_name(site: Path) -> None:
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    errs = (site / "reference" / "errors" / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="([^"]+)"', api)) | set(re.findall(r'id="([^"]+)"', errs))
    text = _text(api)
    missing = [n for n in affectlite.__all__ if n not in text]
    assert not missing, f"names of affectlite.__all__ not on the API page: {missing}"
    documented = [n for n in affectlite.__all__ if f"affectlite.{n}" in ids or n.strip("_").lower() in ids]
    assert sorted(documented) == sorted(affectlite.__all__), set(affectlite.__all__) - set(documented)
    # the docstrings themselves are rendered, not only the names
    assert "dispatch thread" in text and "Raises" in text
    for cls in ("EmotionPipeline", "PipelineOptions"):
        assert f'id="affectlite.{cls}' in api


def test_generated_reference_pages_come_from_the_code(site: Path) -> None:
    from affectlite import profiles
    from affectlite.cli import build_parser

    cli = _text((site / "reference" / "cli" / "index.html").read_text(encoding="utf-8"))
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"affectlite {name}" in cli
    assert "--sample" in cli and "--pretty" in cli
    options = (site / "reference" / "options" / "index.html").read_text(encoding="utf-8")
    keys = re.findall(r"^\| `([a-z_.]+)` \|", profiles.schema_markdown(), flags=re.M)
    assert len(keys) > 40 and all(f"<code>{k}</code>" in options for k in keys)
    errors = _text((site / "reference" / "errors" / "index.html").read_text(encoding="utf-8"))
    assert "AffectliteError" in errors and "NetworkBlockedError" in errors
    cards = _text((site / "models" / "cards" / "index.html").read_text(encoding="utf-8"))
    import json

    for card in sorted((ROOT / "sdk" / "affectlite" / "models").glob("*.card.json")):
        c = json.loads(card.read_text(encoding="utf-8"))
        assert c["name"] in cards and c["model_sha256"][:16] in cards


def test_site_loads_nothing_from_the_network(site: Path) -> None:
    """No Google Fonts or CDN: the pages work offline (privacy; the headless test runs without network)."""
    for page in (site / "index.html", site / "reference" / "api" / "index.html"):
        html = page.read_text(encoding="utf-8")
        loads = re.findall(r'<(?:script|img|iframe)[^>]*\ssrc="(https?://[^"]+)"', html)
        loads += re.findall(r'<link[^>]*\shref="(https?://[^"]+)"', html)
        assert not loads, f"{page.name} loads from the network: {loads}"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(site))
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as srv:
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        try:
            yield f"http://127.0.0.1:{srv.server_address[1]}/"
        finally:
            srv.shutdown()


def _browser() -> Any:
    """Headless Chromium as tests/test_kiosk.py starts it, behind a dead proxy (loopback only)."""
    return headless_chromium("docs", "1280,900", ("--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"))


def test_home_and_api_reference_render_in_headless_chromium(served: str) -> None:
    import cv2

    drv = _browser()
    shots = Path(os.environ.get("AFFECTLITE_SCREENSHOTS", tempfile.gettempdir())) / "affectlite-docs"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        for page, expect in (("", ("affectlite", "Getting started", "Expression estimates")),
                             ("reference/api/", ("EmotionPipeline", "PipelineOptions", "on_result"))):
            drv.get(served + page)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and drv.execute_script("return document.readyState") != "complete":
                time.sleep(0.05)
            body = drv.find_element("tag name", "body").text
            for word in expect:
                assert word in body, f"{word!r} not rendered on /{page}"
            # Material's stylesheet and script applied (not a bare HTML page)
            assert drv.execute_script("return !!document.querySelector('.md-header') && "
                                      "getComputedStyle(document.querySelector('.md-header')).position") == "sticky"
            shot = shots / f"{(page.strip('/') or 'home').replace('/', '-')}.png"
            assert drv.save_screenshot(str(shot))
            img = cv2.imread(str(shot))
            assert img is not None and img.shape[0] >= 600 and img.shape[1] >= 1200
            assert float(img.std()) > 20, f"screenshot of /{page} looks blank"
        try:
            logs = drv.get_log("browser")
        except Exception:  # some drivers do not expose logs
            logs = []
        severe = [e for e in logs if e.get("level") == "SEVERE" and "favicon" not in e.get("message", "")]
        assert not severe, severe
    finally:
        drv.quit()


# ------------------------------------------------------------------------------------------ examples
def test_examples_are_found_and_every_mark_is_known_with_a_reason() -> None:
    assert len(ALL_BLOCKS) >= 10
    assert any(b.path == README and b.lang == "python" for b in ALL_BLOCKS)
    bad = [f"{b.id}: mark {b.mark!r}" for b in ALL_BLOCKS if b.mark is not None and b.mark not in MARKS]
    bad += [f"{b.id}: {b.mark} without a reason" for b in ALL_BLOCKS if b.mark in ("skip", "hardware")
            and not b.reason]
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder whose entries link to the repository's top level, plus the sample-backed profiles."""
    w = tmp_path_factory.mktemp("docs-examples")
    for p in ROOT.iterdir():
        if p.name not in (".git",):
            (w / p.name).symlink_to(p)
    if DATASETS.is_dir() and not (w.parent / "shared").exists():
        (w.parent / "shared").symlink_to(DATASETS.parent)
    video, wav = sample_paths()
    prof = tmp_path_factory.mktemp("sample-profiles")
    for base in sorted(_profile_files.bundled_profiles_dir().glob("*.yaml")):
        (prof / base.name).write_text(
            f"extends: {base}\ncamera: {{backend: opencv, device: '{video}', realtime: false}}\n"
            f"audio: {{backend: file, device: '{wav}', realtime: false}}\n", encoding="utf-8")
    (w / ".sample-profiles").symlink_to(prof)
    return w


def _env(block: Block, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sdk"), str(ROOT / "converters"), env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    # a private temp and cache folder per block: examples that scan them (privacy.md) see only their own files
    private = workdir / f".tmp-{block.path.stem}-{block.line}"
    (private / "cache").mkdir(parents=True, exist_ok=True)
    env["TMPDIR"], env["XDG_CACHE_HOME"] = str(private), str(private / "cache")
    if block.mark == "sample":
        env["AFFECTLITE_PROFILE_PATH"] = str((workdir / ".sample-profiles").resolve())
    return env


def _shell_code(block: Block) -> str:
    code = block.code
    if block.lang == "console":
        code = "\n".join(ln[2:] for ln in code.splitlines() if ln.startswith("$ ")) + "\n"
    if block.mark == "after-install":
        code = re.sub(r"(?m)^\s*(?:python3? -m )?pip install [^\n&]*(?:&&\s*|\n)", "", code)
    return code


def _params() -> list[Any]:
    out = []
    for b in ALL_BLOCKS:
        marks = [pytest.mark.hardware] if b.mark == "hardware" else []
        out.append(pytest.param(b, id=b.id, marks=marks))
    return out


@pytest.mark.parametrize("block", _params())
def test_doc_example_runs(block: Block, workdir: Path) -> None:
    if block.mark == "skip":
        pytest.skip(f"not run here: {block.reason}")
    if block.mark == "hardware":  # even on a device: these install services, need root or a person watching
        pytest.skip(f"run by hand on the device: {block.reason}")
    first = block.code.lstrip().split("\n", 1)[0]
    for (page, start), reason in UNMARKED.items():
        if block.id.startswith(page + ":") and first.startswith(start) and block.mark is None:
            pytest.skip(f"not run here: {reason}")
    if block.mark == "datasets" and not DATASETS.is_dir():
        pytest.skip(f"needs the datasets in {DATASETS}")
    env = _env(block, workdir)
    if block.lang == "python":
        script = workdir / f".block-{block.path.stem}-{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        cmd = [sys.executable, str(script)]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", _shell_code(block)]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, (f"{block.id} failed (exit {r.returncode}):\n{block.code}\n--- stdout\n"
                               f"{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")
