"""Shared pytest fixtures and markers."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for sub in ("sdk", "converters"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)

# Property tests are repeatable by default (the same examples on every run, so CI cannot flake on a new
# random draw); explore new ones locally with `pytest --hypothesis-profile=explore`.
try:
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("repeatable", derandomize=True, print_blob=True)
    _hyp_settings.register_profile("explore", derandomize=False)
    # the fuzzing harness (docs/reliability.md): "ci" is repeatable with bounded examples; "long" for local runs
    _hyp_settings.register_profile("ci", derandomize=True, print_blob=True)
    _hyp_settings.register_profile("long", derandomize=False, max_examples=1000, deadline=None)
    _hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
except ImportError:  # hypothesis is a dev extra
    pass

SHARED = Path(os.environ.get("AFFECTLITE_DATASETS", ROOT.parent / "shared" / "datasets"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("AFFECTLITE_HARDWARE") == "1":
        return
    skip = pytest.mark.skip(reason="needs real hardware; set AFFECTLITE_HARDWARE=1 on a device to run")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_datasets() -> Path:
    """The shared datasets folder, or skip with the reason."""
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set AFFECTLITE_DATASETS)")
    return SHARED


@pytest.fixture
def no_leaked_threads():
    """Fail when a test leaves affectlite threads running."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("affectlite")]
    assert not leaked, f"leaked threads: {leaked}"
