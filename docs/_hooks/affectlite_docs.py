"""MkDocs hook: the generated reference pages, links to repository files, and a nav that lists every page.

Generated at build time (never committed, so they cannot go stale):

- ``reference/cli.md``: the ``affectlite`` command from :func:`affectlite.cli.build_parser` (argparse help).
- ``reference/options.md``: every profile / options key from the JSON Schema (:func:`affectlite.profiles
  .schema_markdown`), the same table ``affectlite profile reference`` prints.
- ``reference/api.md``: every name in ``affectlite.__all__`` (mkdocstrings renders the docstrings).
- ``reference/errors.md``: the exception tree (from ``affectlite.errors``' docstring) and each exception.
- ``models/cards.md``: the shipped ``*.card.json`` model cards.

Links from a page to a file outside ``docs/`` (``../firmware_configs/...``) are checked against the repository:
a missing target is a warning (so ``mkdocs build --strict`` fails); an existing one becomes a link into
``repo_url`` when the site has one, else the path in code type (the site carries only ``docs/``).

Pages under ``docs/`` that ``nav`` does not list are appended (``research/`` pages under "Research notes", others
under "More"), so pages added by others appear without a build failure; list them in ``mkdocs.yml`` to place them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.plugins.affectlite")
REPO = Path(__file__).resolve().parents[2]
for _p in (REPO / "sdk", REPO / "converters"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

GENERATED = ("reference/cli.md", "reference/options.md", "reference/api.md", "reference/errors.md",
             "models/cards.md")
NOTE = "<!-- generated at build time by docs/_hooks/affectlite_docs.py: edit the source, not this page -->\n\n"


# ----------------------------------------------------------------------------------------------- CLI
def _subparsers(p: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    out: list[tuple[str, argparse.ArgumentParser, str]] = []
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in a._choices_actions}
            for name, sp in a.choices.items():
                out.append((name, sp, helps.get(name, "")))
    return out


def cli_markdown() -> str:
    """The ``affectlite`` command reference, generated from its argparse parser."""
    from affectlite.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "110"  # argparse wraps help at $COLUMNS; fixed for a stable page
    try:
        root = build_parser()
        lines = [NOTE, "# Command line\n\n",
                 "Generated from the `affectlite` argument parser (`affectlite.cli.build_parser`); "
                 "`affectlite COMMAND -h` prints the same.\n\n", "| command | what it does |\n|---|---|\n"]
        subs = _subparsers(root)
        lines += [f"| [`{n}`](#affectlite-{n}) | {h} |\n" for n, _, h in subs]
        lines += ["\n```text\n", root.format_help(), "```\n"]

        def walk(prefix: str, items: list[tuple[str, argparse.ArgumentParser, str]], level: int) -> None:
            for name, sp, h in items:
                full = f"{prefix} {name}"
                anchor = full.replace(" ", "-")
                lines.append(f"\n{'#' * level} `{full}` {{ #{anchor} }}\n\n")
                if h:
                    lines.append(f"{h[0].upper()}{h[1:]}.\n\n")
                lines.extend(["```text\n", sp.format_help(), "```\n"])
                walk(full, _subparsers(sp), min(level + 1, 4))

        walk("affectlite", subs, 2)
        lines.append(_recipes_markdown())
        return "".join(lines)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _recipes_markdown() -> str:
    """``affectlite train RECIPE -h`` of every recipe (each parses its own arguments; TensorFlow loads later)."""
    import contextlib
    import importlib
    import io

    try:
        from affectlite_convert.cli import RECIPES
    except ImportError:
        return ""
    out = ["\n### Training recipes { #affectlite-train-recipes }\n\n",
           "`affectlite train RECIPE ...` passes the rest of the line to the recipe, which has its own options "
           "([Train our models](../guides/training.md)):\n"]
    for name in RECIPES:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                importlib.import_module(f"affectlite_convert.recipes.{name}").main(["-h"])
            except SystemExit:
                pass
        if not buf.getvalue().strip():
            log.warning("affectlite train %s -h printed nothing", name)
            continue
        out += [f"\n#### `affectlite train {name}` {{ #affectlite-train-{name} }}\n\n```text\n", buf.getvalue(),
                "```\n"]
    return "".join(out)


# ----------------------------------------------------------------------------------------------- options
def options_markdown() -> str:
    """Every profile / options key: the table generated from the published JSON Schema."""
    from affectlite import profiles

    return (NOTE + "# Options and profile keys\n\n"
            "Every key of a device profile (YAML) and of `PipelineOptions`, generated from the JSON Schema "
            "(`affectlite profile schema`, shipped as `affectlite/schemas/profile.schema.json`). Set one with "
            "`--set KEY=VALUE` on the command line, `overrides={\"KEY\": VALUE}` in "
            "[`PipelineOptions.from_profile`](api.md#affectlite.PipelineOptions.from_profile), or in a profile "
            "file ([Device profiles](../deployment.md#device-profiles)). `affectlite profile reference` prints this "
            "table.\n\n" + profiles.schema_markdown() + "\n")


# ----------------------------------------------------------------------------------------------- API
def _public() -> tuple[list[str], list[str], list[str]]:
    """``affectlite.__all__`` split into (exceptions, other classes and functions, constants)."""
    import affectlite

    errs, objs, consts = [], [], []
    for name in affectlite.__all__:
        obj = getattr(affectlite, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            errs.append(name)
        elif inspect.isclass(obj) or inspect.isfunction(obj):
            objs.append(name)
        else:
            consts.append(name)
    return errs, objs, consts


CONSTANTS = {"LABELS": "The common label set, in the order of every probability vector.",
             "UNKNOWN": "The label of a fused result whose confidence is under `fusion.unknown_threshold`.",
             "__version__": "The package version."}


def api_markdown() -> str:
    """The Python API: every name in ``affectlite.__all__``, from its docstring."""
    import affectlite

    errs, objs, consts = _public()
    out = [NOTE, "# Python API\n\n",
           "Everything `import affectlite` exports (`affectlite.__all__`), rendered from the docstrings. "
           "Callbacks run on the pipeline's dispatch thread, one at a time ([Threads and callbacks]"
           "(../concepts.md#threads-and-callbacks)). Exceptions are on [their own page](errors.md).\n\n",
           "| name | kind | summary |\n|---|---|---|\n"]
    for name in affectlite.__all__:
        obj = getattr(affectlite, name)
        if name in errs:
            kind, link = "exception", f"errors.md#affectlite.{name}"
        elif name in objs:
            kind, link = ("class" if inspect.isclass(obj) else "function"), f"#affectlite.{name}"
        else:
            kind, link = "constant", f"#{name.strip('_').lower()}"
        doc = ((inspect.getdoc(obj) or "").strip().split("\n\n")[0].replace("\n", " ") if name in errs + objs
               else CONSTANTS.get(name, ""))
        doc = doc.replace("|", "\\|")
        out.append(f"| [`{name}`]({link}) | {kind} | {doc} |\n")
    out.append("\n## The callback contract {#callback-contract}\n\nFrom `affectlite.pipeline`, which every "
               "callback parameter below refers to (\"see the module docstring\"):\n\n"
               "::: affectlite.pipeline\n    options:\n      members: false\n      show_root_heading: false\n"
               "      show_root_toc_entry: false\n\n")
    out.append("\n## Constants\n\n")
    for name in consts:
        out.append(f"### `{name}` {{ #{name.strip('_').lower()} }}\n\n`affectlite.{name}` = "
                   f"`{getattr(affectlite, name)!r}`\n\n")
    for name in objs:
        out.append(f"::: affectlite.{name}\n\n")
    return "".join(out)


def errors_markdown() -> str:
    """The exception tree and every exception's docstring."""
    from affectlite import errors

    doc = inspect.getdoc(errors) or ""
    tree = doc.split("::", 1)[1] if "::" in doc else ""
    intro = doc.split("::", 1)[0].split("\n", 1)[1].strip() if "::" in doc else doc
    errs, _, _ = _public()
    out = [NOTE, "# Exceptions\n\n", intro.replace("\n", " ").rstrip(":") + ".\n\n",
           "```text\n", inspect.cleandoc(tree), "\n```\n\n",
           "Catch `affectlite.AffectliteError` to handle every error the SDK raises on purpose; the message says "
           "what is wrong and how to fix it.\n\n"]
    out += [f"::: affectlite.{n}\n    options:\n      members: false\n\n" for n in errs]
    return "".join(out)


# ----------------------------------------------------------------------------------------------- model cards
def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f}%" if isinstance(x, (int, float)) else "-"


def _card_section(card: dict[str, Any], path: Path) -> str:
    m = card.get("metrics", {})
    tr = card.get("training", {})
    size = (path.parent / card.get("model_file", path.name.replace(".card.json", ".tflite")))
    out = [f"## {card['name']} {{ #{card['task']} }}\n\n",
           f"`{path.name}` · task **{card['task']}** · version {card.get('version', '-')} · "
           f"model file `{size.name}` ({size.stat().st_size:,} bytes) · sha256 "
           f"`{str(card.get('model_sha256', '-'))[:16]}…`\n\n",
           "Labels (output order): " + ", ".join(f"`{lab}`" for lab in card.get("labels", [])) + "\n\n"]
    rows = [("data", tr.get("data")), ("terms", tr.get("terms")), ("split", tr.get("split")),
            ("method", tr.get("method")), ("recipe", f"`{tr['recipe']}`" if tr.get("recipe") else None),
            ("metrics split", m.get("split"))]
    out.append("| | |\n|---|---|\n")
    out += [f"| {k} | {str(v).replace('|', '/')} |\n" for k, v in rows if v]
    out.append("\n")
    head = []
    for which in ("float", "int8"):
        mm = m.get(which) or {}
        figs = [f"{k.replace('_', ' ')} {_pct(mm[k]) if k != 'macro_f1' else format(mm[k], '.3f')}"
                for k in ("accuracy", "macro_f1", "uar") if isinstance(mm.get(k), (int, float))]
        if "agreement_with_float" in mm:
            figs.append(f"agreement with float {_pct(mm['agreement_with_float'])}")
        if figs:
            head.append(f"| {which} | {', '.join(figs)} | {mm.get('note', mm.get('n', ''))} |\n")
    if head:
        out += ["| model | figures | n / note |\n|---|---|---|\n", *head, "\n"]
    per = (m.get("int8") or {}).get("per_class_accuracy")
    if isinstance(per, dict):
        out.append("Per-class accuracy (int8): " + ", ".join(f"{k} {_pct(v)}" for k, v in per.items()) + "\n\n")
    if isinstance(m.get("table_markdown"), str):
        out += [m["table_markdown"].strip(), "\n\n"]
    q = card.get("quantization") or {}
    if q:
        out.append(f"Quantisation: {q.get('mode', '-')}, {q.get('io_dtype', '-')} input/output, float ops: "
                   f"{', '.join(q.get('float_ops') or []) or 'none'}.\n\n")
    lim = card.get("limitations") or []
    if lim:
        out.append("**Limitations**\n\n" + "".join(f"- {x}\n" for x in lim) + "\n")
    return "".join(out)


def cards_markdown() -> str:
    """The shipped model cards, rendered."""
    models = REPO / "sdk" / "affectlite" / "models"
    order = {"face": 0, "voice": 1, "text": 2, "fusion": 3}
    cards = sorted(((json.loads(p.read_text(encoding="utf-8")), p) for p in models.glob("*.card.json")),
                   key=lambda cp: order.get(cp[0].get("task", ""), 9))
    out = [NOTE, "# Model cards\n\n",
           "Rendered from the cards shipped next to each model (`affectlite/models/*.card.json`; "
           "`affectlite.load_card(path)` reads one). Figures are our validation figures; held-back test "
           "splits were not used. Summary and method: [Models](index.md); what was tried on the way: "
           "[research notes](../research/index.md).\n\n"]
    out += [_card_section(c, p) for c, p in cards]
    return "".join(out)


# ----------------------------------------------------------------------------------------------- hooks
def on_files(files: Files, config: MkDocsConfig) -> Files:
    makers = {"reference/cli.md": cli_markdown, "reference/options.md": options_markdown,
              "reference/api.md": api_markdown, "reference/errors.md": errors_markdown,
              "models/cards.md": cards_markdown}
    for uri, make in makers.items():
        old = files.get_file_from_path(uri)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, uri, content=make()))
    _complete_nav(files, config)
    return files


def _nav_uris(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_uris(x) for x in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(_nav_uris(v) for v in nav.values())) if nav else set()
    return set()


#: Pages the nav places that are being written elsewhere; left out of the nav (not an error) while absent. Empty
#: once they are all in the tree, so that a page removed from docs/ but still in the nav fails the strict build.
OPTIONAL_PAGES: set[str] = set()


def _drop_absent(nav: Any, present: set[str]) -> Any:
    if isinstance(nav, list):
        kept = [_drop_absent(x, present) for x in nav]
        return [x for x in kept if x is not None]
    if isinstance(nav, dict):
        out = {k: _drop_absent(v, present) for k, v in nav.items()}
        return {k: v for k, v in out.items() if v is not None and v != []} or None
    if isinstance(nav, str) and nav in OPTIONAL_PAGES and nav not in present:
        log.info("nav: %s is not there yet; left out", nav)
        return None
    return nav


def _complete_nav(files: Files, config: MkDocsConfig) -> None:
    nav = config.nav
    if not nav:
        return
    nav[:] = _drop_absent(nav, {f.src_uri for f in files.documentation_pages()})
    listed = _nav_uris(nav)
    missing = sorted(f.src_uri for f in files.documentation_pages() if f.src_uri not in listed)
    research = [u for u in missing if u.startswith("research/")]
    other = [u for u in missing if not u.startswith("research/")]
    for title, uris in (("Research notes", research), ("More", other)):
        if not uris:
            continue
        log.info("pages not listed in mkdocs.yml nav, added under %r: %s", title, ", ".join(uris))
        section = next((x for x in nav if isinstance(x, dict) and title in x), None)
        if section is None:
            nav.append({title: list(uris)})
        else:
            section[title] = list(section[title]) + list(uris)


LINK = re.compile(r"(?<!!)\[([^\]\n]*)\]\((?!https?:|mailto:|#)([^)\s]+)\)")


def research_list(docs_dir: Path) -> str:
    """The research notes, newest first, each with its title (first heading) and a link."""
    rows = []
    for p in sorted((docs_dir / "research").glob("*.md"), reverse=True):
        if p.name == "index.md":
            continue
        first = next((ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")), p.stem)
        rows.append(f"- [{first[2:].strip()}]({p.name})\n")
    return "\n" + "".join(rows) if rows else "\n(none yet)\n"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    docs_dir = Path(config.docs_dir).resolve()
    if page.file.src_uri == "research/index.md":
        markdown = re.sub(r"<!-- research-pages:.*?-->\n?", lambda _: research_list(docs_dir), markdown)
    src = (docs_dir / page.file.src_uri).parent
    repo_url = (config.repo_url or "").rstrip("/")

    def fix(m: re.Match[str]) -> str:
        text, target = m.group(1), m.group(2)
        path = target.split("#", 1)[0]
        if not path:
            return m.group(0)
        full = (src / path).resolve()
        try:
            full.relative_to(docs_dir)
            return m.group(0)  # inside docs/: MkDocs checks it
        except ValueError:
            pass
        try:
            rel = full.relative_to(REPO).as_posix()
        except ValueError:
            log.warning("%s: link to %r points outside the repository", page.file.src_uri, target)
            return m.group(0)
        if not full.exists():
            log.warning("%s: link to %r: repository file %s does not exist", page.file.src_uri, target, rel)
            return m.group(0)
        if repo_url:
            return f"[{text}]({repo_url}/{'tree' if full.is_dir() else 'blob'}/main/{rel})"
        return text if text.startswith("`") else f"{text} (`{rel}`)" if text != rel else f"`{rel}`"

    out: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        out.append(line if fenced or line.lstrip().startswith(("```", "~~~")) else LINK.sub(fix, line))
    return "\n".join(out)


ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj):<code>~?([\w.]+)</code>")


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Docstrings use Sphinx roles (:class:`X`); show them as code, linked when the target is on the page."""
    if not page.file.src_uri.startswith("reference/"):
        return html
    ids = set(re.findall(r'id="([^"]+)"', html))

    def fix(m: re.Match[str]) -> str:
        name = m.group(1)
        short = name.rsplit(".", 1)[-1] if name.startswith("affectlite.") and name.count(".") == 1 else name
        for cand in (name, f"affectlite.{name}", f"affectlite.{short}"):
            if cand in ids:
                return f'<a href="#{cand}"><code>{short}</code></a>'
        return f"<code>{short}</code>"

    return ROLE.sub(fix, html).replace("::</p>", ":</p>")  # reST's "text::" before a literal block
