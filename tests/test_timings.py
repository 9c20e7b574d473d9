"""The chapter runner keeps each profile's measured chapter times in the record store, but changes them
only for a chapter that trained a run (or when asked): a render-only pass rewrites no committed file."""

import json
import os

from lossdecay_lib.chapters import _merge_timing, load_timings, timings_path


def test_timings_live_in_the_record_store_per_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "store"))
    assert timings_path("cpu") == tmp_path / "store" / "timings" / "cpu.json"
    assert load_timings("cpu") == {}
    _merge_timing(timings_path("cpu"), "a", {"seconds": 1.0, "date": "d1"})
    _merge_timing(timings_path("cpu"), "b", {"seconds": 2.0, "date": "d2"})
    _merge_timing(timings_path("cpu"), "a", {"seconds": 3.0, "date": "d3"})  # a later run replaces it
    assert load_timings("cpu") == {"a": {"seconds": 3.0, "date": "d3"}, "b": {"seconds": 2.0, "date": "d2"}}
    assert load_timings("gpu") == {}
    assert json.loads((tmp_path / "store" / "timings" / "cpu.json").read_text())["b"]["seconds"] == 2.0
    assert not list((tmp_path / "store" / "timings").glob(".partial-*")), "written atomically, no leftovers"


def _fake_chapters(monkeypatch, trains):
    """run_chapters over two stand-in chapters; ``trains[name]`` records a run while it "executes"."""
    from lossdecay_lib import chapters
    from lossdecay_lib.runs import RunStore

    def execute(root, name, out_dir, parameters):
        for key in trains.get(name, ()):
            RunStore.default().save(key, {"key": key, "status": "finished"})
        return 1.0

    monkeypatch.setattr(chapters, "list_chapters", lambda root: ["a", "b"])
    monkeypatch.setattr(chapters, "check_parameter_names", lambda root, names, parameters: None)
    monkeypatch.setattr(chapters, "execute_chapter", execute)
    return chapters


def test_a_render_only_pass_keeps_its_times_under_build_only(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "store"))
    chapters = _fake_chapters(monkeypatch, trains={})
    chapters.run_chapters(tmp_path, tmp_path / "out", {"profile": "quick"})
    assert not timings_path("quick").exists(), "nothing trained: the kept times must not change"
    this = json.loads((tmp_path / "out" / "timings.json").read_text())
    assert {k: (v["seconds"], v["trained_runs"]) for k, v in this.items()} == {"a": (1.0, 0), "b": (1.0, 0)}
    assert not list((tmp_path / "out").glob(".trained-*")), "no leftover logs"
    assert "LOSSDECAY_TRAINED_LOG" not in os.environ


def test_a_chapter_that_trained_updates_its_kept_time_only(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "store"))
    chapters = _fake_chapters(monkeypatch, trains={"b": ["k1", "k2", "k1"]})  # k1 saved twice: one run
    chapters.run_chapters(tmp_path, tmp_path / "out", {"profile": "quick"})
    kept = load_timings("quick")
    assert list(kept) == ["b"] and kept["b"]["trained_runs"] == 2 and kept["b"]["profile"] == "quick"


def test_record_times_keeps_every_chapters_time(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "store"))
    chapters = _fake_chapters(monkeypatch, trains={})
    chapters.run_chapters(tmp_path, tmp_path / "out", {"profile": "quick"}, record_times=True)
    assert sorted(load_timings("quick")) == ["a", "b"]


def test_a_chapter_sees_the_times_of_the_execution_in_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "store"))
    chapters = _fake_chapters(monkeypatch, trains={})
    seen = {}
    inner = chapters.execute_chapter

    def execute(root, name, out_dir, parameters):
        seen[name] = sorted(chapters.execution_timings())
        return inner(root, name, out_dir, parameters)

    monkeypatch.setattr(chapters, "execute_chapter", execute)
    chapters.run_chapters(tmp_path, tmp_path / "out", {"profile": "quick"})
    assert seen == {"a": [], "b": ["a"]}
    assert chapters.execution_timings() == {}, "outside the runner there is no execution in progress"
