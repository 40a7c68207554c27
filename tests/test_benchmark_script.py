"""The benchmark report renders from saved figures (the measuring itself is not a test: no timings here)."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_renders_every_section_from_the_saved_figures(tmp_path):
    figures = ROOT / "benchmarks" / "performance.json"
    out = tmp_path / "performance.md"
    assert _script().main(["--from-json", str(figures), "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("## Targets", "## Build throughput", "## Incremental update", "## Related-list latency",
                    "## Scaling", "### Memory", "## Whole index served", "## What limits one machine"):
        assert heading in text
    results = json.loads(figures.read_text())
    assert f"{results['build']['trials']:,} trials" in text
    # a section re-run alone (--only-quality / --only-served) says so next to its figures
    if results.get("quality_note"):
        assert f"this section was {results['quality_note']}" in text
    for served in results.get("served", []):
        if served.get("note"):
            assert served["note"] in text


def test_one_section_rerun_without_saved_figures_is_a_clear_error(tmp_path, monkeypatch):
    import logging

    import pytest

    # the script configures logging for its own process; keep it from leaking into later tests
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    package_logger = logging.getLogger("similarity")
    level = package_logger.level
    try:
        with pytest.raises(SystemExit, match="needs the saved figures of a full run"):
            _script().main(["--only-quality", "--out", str(tmp_path / "missing.md")])
    finally:
        package_logger.setLevel(level)  # setLevel also clears the loggers' cached levels
    assert not (tmp_path / "missing.md").exists()
