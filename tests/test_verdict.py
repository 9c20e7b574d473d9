import json

import pytest

from lossdecay_lib.runs import RunStore
from lossdecay_lib.records import start_chapter
from lossdecay_lib.verdict import (chapter_titles, claim_path, load_claims, record_claim, verdict_from_count,
                                   verdict_table)


def rec(label, seed, acc, status="finished", profile="cpu", negative=False, wall=10.0):
    return {"label": label, "status": status, "final_test_acc": acc, "negative_weights": negative,
            "config": {"seed": seed}, "key": f"{label}-{seed}", "wall_seconds": wall,
            "provenance": {"profile": profile, "seed": seed, "device_name": "CPU (test)",
                           "date": f"2026-11-2{seed} 10:00:00 UTC"}}


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "records")


BASE = [rec("base", s, a) for s, a in enumerate([0.40, 0.41, 0.42])]
BETTER = [rec("decay", s, a) for s, a in enumerate([0.45, 0.46, 0.47])]
WORSE = [rec("decay", s, a) for s, a in enumerate([0.30, 0.31, 0.32])]
SAME = [rec("decay", s, a) for s, a in enumerate([0.39, 0.42, 0.43])]


@pytest.mark.parametrize("treatment, verdict", [(BETTER, "supported"), (WORSE, "not supported"),
                                                (SAME, "inconclusive")])
def test_comparison_maps_to_the_books_verdicts(store, treatment, verdict):
    c = record_claim("ch", "gain", "decay helps", "+1.0 points", baseline=BASE, treatment=treatment, store=store)
    assert c["verdict"] == verdict
    assert c["profile"] == "cpu" and c["provenance"]["seeds"] == [0, 1, 2]
    assert c["provenance"]["wall_seconds"] == pytest.approx(60.0)
    assert c["provenance"]["devices"] == ["CPU (test)"]
    assert c["provenance"]["dates"] == ["2026-11-20 10:00:00 UTC", "2026-11-22 10:00:00 UTC"]
    stored = json.loads(claim_path("ch", "gain", "cpu", store).read_text())
    assert stored == c


def test_ours_text_states_difference_both_sides_and_seeds(store):
    c = record_claim("ch", "gain", "decay helps", "+1.0", baseline=BASE, treatment=BETTER, store=store)
    assert c["ours"] == "+5.0 ± 0.8 points (treatment 46.0 ± 1.0 vs baseline 41.0 ± 1.0; 3 seeds each)"
    assert c["comparison"]["diff"] == pytest.approx(5.0)
    assert c["comparison"]["baseline"]["n"] == 3


def test_diverged_and_negative_weight_runs_are_counted_and_shown(store):
    treat = BETTER[:2] + [rec("decay", 2, float("nan"), status="diverged")]
    treat[0]["negative_weights"] = True
    c = record_claim("ch", "gain", "decay helps", "+1", baseline=BASE, treatment=treat, store=store)
    assert "1 treatment run(s) diverged (seeds [2])" in c["ours"]
    assert "1 treatment run(s) trained with negative loss weights (seeds [0])" in c["ours"]
    assert "2 vs 3 seeds" in c["ours"]
    assert c["provenance"]["diverged"] == [{"label": "decay", "seed": 2}]
    assert c["provenance"]["negative_weights"] == [{"label": "decay", "seed": 0}]
    assert c["comparison"]["treatment"]["diverged"] == [2]


def test_given_ours_and_verdict_with_records(store):
    recs = BASE + [rec("x", 5, 0.1, status="diverged")]
    c = record_claim("ch", "jump", "a late jump", "epoch 70", ours="jump at epoch 12 ± 1",
                     verdict="not supported", records=recs, store=store)
    assert c["verdict"] == "not supported" and c["comparison"] is None
    assert "1 of 4 runs diverged" in c["ours"]
    assert c["provenance"]["seeds"] == [0, 1, 2, 5]


def test_check_without_runs_needs_the_chapter_run(store):
    with pytest.raises(ValueError, match="run="):
        record_claim("ch", "id", "c", "p", ours="exact", verdict="supported", store=store)
    run = start_chapter(profile="smoke", seed=4, quiet=True)
    c = record_claim("ch", "id", "c", "p", ours="exact", verdict="supported", run=run, store=store)
    assert c["profile"] == "smoke" and c["provenance"]["runs"] == 0 and c["provenance"]["seeds"] == [4]
    assert c["provenance"]["devices"] == [run.info["device_name"]]
    assert "*smoke profile, no training runs*" in verdict_table([c])


def test_a_claim_of_difference_counts_either_sign(store):
    assert record_claim("ch", "d", "differ", "p", baseline=BASE, treatment=WORSE, direction="different",
                        store=store)["verdict"] == "supported"
    assert record_claim("ch", "d", "differ", "p", baseline=BASE, treatment=SAME, direction="different",
                        store=store)["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="direction must be one of"):
        record_claim("ch", "d", "differ", "p", baseline=BASE, treatment=SAME, direction="worse", store=store)


def test_verdict_from_count():
    assert [verdict_from_count(k, 3) for k in (3, 0, 1, 2)] == ["supported", "not supported", "not supported",
                                                                 "inconclusive"]
    assert verdict_from_count(2, 4) == "inconclusive" and verdict_from_count(1, 1) == "supported"
    for bad in ((1, 0), (4, 3), (-1, 3), (1.0, 3)):
        with pytest.raises(ValueError):
            verdict_from_count(*bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(ours="x", verdict="contradicted", records=BASE), "verdict must be one of"),
    (dict(ours="x", records=BASE), "needs either baseline"),
    (dict(verdict="supported", records=BASE), "needs either baseline"),
    (dict(baseline=BASE), "both baseline and treatment"),
    (dict(baseline=[], treatment=BETTER), "at least one run record"),
    (dict(baseline=BASE, treatment=BETTER, metric="nope"), "no metric 'nope'"),
    (dict(baseline=BASE, treatment=BETTER, scale=0), "scale must be a positive"),
    (dict(baseline=BASE, treatment=BETTER, verdict="not supported"), "differs from the comparison"),
    (dict(baseline=BASE, treatment=[rec("decay", 0, 0.5, profile="gpu")]), "one profile"),
    (dict(ours="x", verdict="supported", records=[{"a": 1}]), "run record"),
    (dict(ours="x", verdict="supported", records=BASE, run=start_chapter("smoke", quiet=True)),
     "differs from the records"),
])
def test_bad_inputs_are_clear_errors(store, kwargs, match):
    with pytest.raises(ValueError, match=match):
        record_claim("ch", "id", "claim", "paper", store=store, **kwargs)
    assert not (store.root / "claims").exists()


def test_bad_names_are_refused(store):
    for chapter, claim_id in (("../x", "id"), ("ch", "a--b"), ("ch", ""), ("ch", "a b")):
        with pytest.raises(ValueError, match="short name"):
            record_claim(chapter, claim_id, "c", "p", ours="o", verdict="supported", records=BASE, store=store)


def test_load_claims_by_profile_and_table(store):
    record_claim("b_ch", "gain", "decay helps", "+1 | more", baseline=BASE, treatment=BETTER, store=store)
    record_claim("a_ch", "jump", "a jump", "epoch 70", ours="none", verdict="inconclusive", records=BASE,
                 store=store)
    record_claim("a_ch", "jump", "a jump", "epoch 70", ours="n", verdict="supported",
                 records=[rec("x", 0, 0.1, profile="smoke")], store=store)
    claims = load_claims("cpu", store)
    assert [(c["chapter"], c["claim_id"]) for c in claims] == [("a_ch", "jump"), ("b_ch", "gain")]
    assert [c["verdict"] for c in load_claims("smoke", store)] == ["supported"]
    assert load_claims("gpu", store) == []
    table = verdict_table(claims)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| chapter | claim | paper | ours | verdict |")
    assert "[a ch](a_ch)" in lines[2] and "**inconclusive**" in lines[2]
    assert "+1 \\| more" in lines[3] and "*cpu profile, 6 runs, seeds 0-2, 1 min*" in lines[3]
    # rewriting a claim replaces it
    record_claim("a_ch", "jump", "a jump", "epoch 70", ours="none", verdict="not supported", records=BASE,
                 store=store)
    assert load_claims("cpu", store)[0]["verdict"] == "not supported"


def test_default_store_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "env-records"))
    record_claim("ch", "id", "c", "p", ours="o", verdict="supported", records=BASE)
    assert (tmp_path / "env-records" / "claims" / "ch--id--cpu.json").is_file()
    assert len(load_claims("cpu")) == 1


def test_provenance_keeps_each_runs_time_by_key(store):
    c = record_claim("ch", "gain", "decay helps", "+1", baseline=BASE, treatment=BETTER, store=store)
    assert c["provenance"]["run_seconds"] == {f"{r['label']}-{r['config']['seed']}": 10.0 for r in BASE + BETTER}


def test_chapter_titles(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "a.py").write_text("# ---\n# %% [markdown]\n# # Deep plain networks (Fig. 1)\n#\n# ## x\n")
    (tmp_path / "book" / "b.py").write_text("x = 1\n")
    assert chapter_titles(tmp_path) == {"a": "Deep plain networks (Fig. 1)", "b": "b"}
