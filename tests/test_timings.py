"""The chapter runner keeps each profile's measured chapter times in the record store."""

import json

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
