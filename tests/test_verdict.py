import json
import math

import pytest
from scipy import stats

from lossdecay_lib.provenance import start_chapter
from lossdecay_lib.runs import RunStore
from lossdecay_lib.statistics import late_rise
from lossdecay_lib.verdict import (Precondition, adjust_claims, chapter_titles, claim_from_comparison, claim_path,
                                   claims_summary, load_claims, runs_against, runs_compared, runs_contrast,
                                   stated_claim, verdict_counts, verdict_table)


def rec(label, seed, acc, status="finished", profile="cpu", negative=False, wall=10.0, curve=None):
    return {"label": label, "status": status, "final_test_acc": acc, "negative_weights": negative,
            "config": {"seed": seed}, "key": f"{label}-{seed}", "wall_seconds": wall,
            "epochs": [{"test_acc": v} for v in (curve or [acc])],
            "provenance": {"profile": profile, "seed": seed, "device_name": "CPU (test)",
                           "date": f"2026-11-2{seed} 10:00:00 UTC"}}


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "records")


BASE = [rec("base", s, a) for s, a in enumerate([0.40, 0.41, 0.42])]
BETTER = [rec("decay", s, a) for s, a in enumerate([0.45, 0.46, 0.47])]
WORSE = [rec("decay", s, a) for s, a in enumerate([0.30, 0.31, 0.32])]
SAME = [rec("decay", s, a) for s, a in enumerate([0.39, 0.42, 0.43])]


def claim(store, treatment=BETTER, baseline=BASE, **kw):
    return claim_from_comparison("ch", "gain", "decay helps", "+1.0 points", runs_compared(baseline, treatment),
                                 store=store, **kw)


@pytest.mark.parametrize("treatment, direction, verdict", [
    (BETTER, "greater", "supported"), (WORSE, "greater", "contradicted"), (SAME, "greater", "inconclusive"),
    (WORSE, "less", "supported"), (WORSE, "different", "supported"), (SAME, "different", "inconclusive"),
])
def test_each_verdict_rule_on_hand_made_records(store, treatment, direction, verdict):
    c = claim(store, treatment, direction=direction)
    assert c["verdict"] == verdict and c["kind"] == "comparison" and c["source"] == "paper"
    ref = stats.ttest_ind([r["final_test_acc"] for r in treatment], [r["final_test_acc"] for r in BASE],
                          equal_var=False)
    assert c["test"]["p"] == pytest.approx(ref.pvalue) and c["test"]["df"] == pytest.approx(ref.df)
    assert c["test"]["statistic"] == pytest.approx(ref.statistic) and c["test"]["test"] == "Welch's t-test"
    assert json.loads(claim_path("ch", "gain", "cpu", store).read_text()) == c


def test_an_unmet_precondition_makes_a_claim_untestable_whatever_the_test_says(store):
    pre = Precondition.count("the control runs plateau", [False, True, False], at_least=2)
    c = claim(store, precondition=pre)
    assert not pre.held and c["verdict"] == "untestable at this scale"
    assert c["test"]["p"] < 0.05  # the test is kept and shown, but decides nothing
    assert "precondition not met: the control runs plateau (1 of 3 runs, at least 2 needed)" in c["ours"]
    assert claim(store, precondition=Precondition.count("x", [True, True, False], 2))["verdict"] == "supported"


def test_stored_fields_of_a_comparison(store):
    c = claim(store)
    cmp = c["comparison"]
    assert cmp["diff"] == pytest.approx(5.0) and cmp["direction"] == "greater" and cmp["unit"] == "points"
    base, treat = cmp["sides"]
    assert (base["mean"], base["std"], base["n"]) == (pytest.approx(41.0), pytest.approx(1.0), 3)
    assert treat["values"] == pytest.approx([45.0, 46.0, 47.0]) and treat["seeds"] == [0, 1, 2]
    lo, hi = cmp["ci95"]
    assert lo < 5.0 < hi and lo > 0
    assert c["ours"] == ("+5.0 points (95% CI +2.7 to +7.3) by final test accuracy; base: 41.0 ± 1.0 (n=3); "
                         "decay: 46.0 ± 1.0 (n=3)")
    assert c["provenance"]["seeds"] == [0, 1, 2] and c["provenance"]["wall_seconds"] == pytest.approx(60.0)
    assert c["provenance"]["dates"] == ["2026-11-20 10:00:00 UTC", "2026-11-22 10:00:00 UTC"]
    assert c["provenance"]["run_seconds"] == {f"{r['label']}-{r['config']['seed']}": 10.0 for r in BASE + BETTER}


def test_diverged_negative_weight_and_unmeasurable_runs_are_counted_and_shown(store):
    treat = BETTER[:2] + [rec("decay", 2, float("nan"), status="diverged")]
    treat[0]["negative_weights"] = True
    c = claim(store, treat)
    assert "1 run(s) of decay diverged (seeds [2]), left out" in c["ours"]
    assert "1 run(s) of decay trained with negative loss weights (seeds [0])" in c["ours"]
    row = verdict_table([c]).splitlines()[2]  # the table's short form keeps both counts
    assert row.endswith("; 1 run(s) diverged; 1 run(s) with negative loss weights |")
    assert c["comparison"]["sides"][1]["n"] == 2 and c["test"]["n"] == [3, 2]
    assert c["provenance"]["diverged"] == [{"label": "decay", "seed": 2}]
    measurable = lambda r: None if r["config"]["seed"] == 0 else r["final_test_acc"]  # noqa: E731
    c = claim_from_comparison("ch", "m", "c", "p", runs_against(BASE, measurable, 0.5), store=store, scale=1.0,
                              unit="")
    assert c["comparison"]["sides"][0]["left_out"] == [{"label": "base", "seed": 0}]
    assert "not measurable, left out: base seed 0" in c["ours"]


def test_late_jump_compared_with_a_control_through_one_metric(store):
    jump = [rec("decay", s, 0.5, curve=[0.1] * 18 + [0.3 + 0.01 * s, 0.5]) for s in range(3)]
    control = [rec("constant", s, 0.3, curve=[0.1 + 0.01 * i for i in range(20)]) for s in range(3)]
    ev = runs_compared(control, jump, metric=late_rise)
    assert ev["metric"].startswith("largest one-epoch rise")
    c = claim_from_comparison("ch", "late", "a late jump", "Fig. 2b", ev, store=store)
    assert c["verdict"] == "supported" and c["comparison"]["sides"][0]["mean"] == pytest.approx(1.0)
    same = runs_compared(control, control, metric=late_rise)  # the control against itself jumps no more
    assert claim_from_comparison("ch", "late2", "c", "p", same, store=store)["verdict"] == "inconclusive"


def test_one_sample_and_contrast_evidence(store):
    c = claim_from_comparison("ch", "one", "acc above 0.3", "p", runs_against(BASE, "final_test_acc", 0.3),
                              store=store)
    assert c["test"]["test"] == "one-sample t-test" and c["verdict"] == "supported"
    assert c["comparison"]["reference"] == pytest.approx(30.0)
    assert c["ours"].startswith("base: 41.0 ± 1.0 (n=3) points by final test accuracy, against 30.0: +11.0 (95% CI")
    ev = runs_contrast([("a", BASE, -1.0), ("b", BETTER, 1.0), ("c", BASE, 1.0), ("d", WORSE, -1.0)])
    c = claim_from_comparison("ch", "grows", "gain grows", "p", ev, store=store)
    assert c["comparison"]["diff"] == pytest.approx(5.0 + 10.0) and c["test"]["test"] == "Welch contrast t-test"
    assert [s["weight"] for s in c["comparison"]["sides"]] == [-1.0, 1.0, 1.0, -1.0]


def test_stated_claim_keeps_fields_and_rule_and_needs_provenance(store):
    with pytest.raises(ValueError, match="run="):
        stated_claim("ch", "id", "c", "p", finding={"gap": 1e-16}, verdict="supported", rule="r", store=store)
    run = start_chapter(profile="smoke", seed=4, quiet=True)
    c = stated_claim("ch", "id", "an identity", "p", finding={"identical": True, "gap": 1.5e-16, "rows": ["a", "b"]},
                     verdict="supported", rule="supported when the gap is below 1e-9", run=run, store=store)
    assert c["ours"] == "identical: yes; gap: 1.5e-16; rows: [a; b]" and c["test"] is None and c["kind"] == "stated"
    assert c["profile"] == "smoke" and c["provenance"]["runs"] == 0 and c["provenance"]["seeds"] == [4]
    adjusted = adjust_claims([c])
    assert "| identical: yes |" in verdict_table(adjusted)  # the table: the first finding only
    full = claims_summary(adjusted, details=True)
    assert "*smoke profile, no training runs*" in full and "none: supported when the gap is below 1e-9" in full
    assert "rows: [a; b]" in full and "rows" not in verdict_table(adjusted)
    with pytest.raises(ValueError, match="the verdict is 'untestable at this scale'"):
        stated_claim("ch", "id", "c", "p", finding={"x": 1}, verdict="supported", rule="r", run=run, store=store,
                     precondition=Precondition("a plateau", False, "0 of 3 runs"))


def test_a_claim_belongs_to_the_chapters_profile_and_lists_the_profiles_that_trained_its_runs(store):
    mixed = BASE + [rec("decay", s, a, profile="quick") for s, a in enumerate([0.45, 0.46, 0.47])]
    with pytest.raises(ValueError, match="pass run="):
        claim_from_comparison("ch", "g", "c", "p", runs_compared(BASE, mixed[3:]), store=store)
    run = start_chapter(profile="quick", quiet=True)
    c = claim_from_comparison("ch", "g", "c", "p", runs_compared(BASE, mixed[3:]), store=store, run=run)
    assert c["profile"] == "quick" and c["provenance"]["trained_under"] == ["cpu", "quick"]
    assert "quick profile (trained under cpu, quick), 6 runs" in claims_summary([c], details=True)


def test_a_claim_is_rewritten_only_when_more_than_its_dates_and_devices_changed(store):
    claim(store)
    path = claim_path("ch", "gain", "cpu", store)
    before = path.read_text()
    later = [dict(r, provenance=dict(r["provenance"], date="2027-01-01 00:00:00 UTC")) for r in BETTER]
    claim(store, later)
    assert path.read_text() == before  # same content, other dates: the file is untouched
    elsewhere = [dict(r, provenance=dict(r["provenance"], device_name="CPU (other, 2 threads)")) for r in BETTER]
    claim(store, elsewhere)
    assert path.read_text() == before  # same content from another machine: untouched too
    claim(store, WORSE)
    assert json.loads(path.read_text())["verdict"] == "contradicted"


@pytest.mark.parametrize("kwargs, match", [
    (dict(direction="better"), "direction must be one of"),
    (dict(scale=0), "scale must be a positive"),
    (dict(source="mine"), "source must be one of"),
    (dict(precondition="a plateau"), "precondition must be a Precondition"),
])
def test_bad_comparison_inputs_are_clear_errors(store, kwargs, match):
    with pytest.raises(ValueError, match=match):
        claim(store, **kwargs)
    assert not (store.root / "claims").exists()


def test_bad_evidence_and_records_are_clear_errors(store):
    with pytest.raises(ValueError, match="at least one run record"):
        runs_compared([], BETTER)
    with pytest.raises(ValueError, match="no metric 'nope'"):
        runs_compared(BASE, BETTER, metric="nope")
    with pytest.raises(ValueError, match="evidence must come from"):
        claim_from_comparison("ch", "id", "c", "p", {"test": {}}, store=store)
    with pytest.raises(ValueError, match="run record"):
        stated_claim("ch", "id", "c", "p", finding={"x": 1}, verdict="supported", rule="r", records=[{"a": 1}],
                     store=store)
    with pytest.raises(ValueError, match="verdict must be one of"):
        stated_claim("ch", "id", "c", "p", finding={"x": 1}, verdict="not supported", rule="r", records=BASE,
                     store=store)
    for chapter, claim_id in (("../x", "id"), ("ch", "a--b"), ("ch", ""), ("ch", "a b")):
        with pytest.raises(ValueError, match="short name"):
            claim_from_comparison(chapter, claim_id, "c", "p", runs_compared(BASE, BETTER), store=store)


def test_adjusted_p_across_claims_and_the_verdict_table(store):
    claim(store)  # p 0.0036
    claim_from_comparison("ch", "same", "c", "p", runs_compared(BASE, SAME), store=store)
    claim_from_comparison("ch", "untestable", "c", "p", runs_compared(BASE, BETTER), store=store,
                          precondition=Precondition("x", False, "none"))
    run = start_chapter(profile="cpu", quiet=True)
    stated_claim("b_ch", "id", "identity", "p | q", finding={"gap": 1e-16}, verdict="supported", rule="r", run=run,
                 store=store)
    claims = adjust_claims(load_claims("cpu", store))
    by_id = {c["claim_id"]: c for c in claims}
    raw = [by_id["gain"]["test"]["p"], by_id["same"]["test"]["p"]]
    assert [by_id["gain"]["p_adjusted"], by_id["same"]["p_adjusted"]] == pytest.approx(
        list(stats.false_discovery_control(raw)))
    assert by_id["untestable"]["p_adjusted"] is None and by_id["id"]["p_adjusted"] is None
    assert by_id["untestable"]["verdict_adjusted"] == "untestable at this scale"
    assert verdict_counts(claims, "verdict_adjusted") == {"supported": 2, "contradicted": 0, "inconclusive": 1,
                                                          "untestable at this scale": 1}
    lines = verdict_table(load_claims("cpu", store)).splitlines()
    assert lines[0] == "| chapter | claim | verdict | p (adjusted) | paper | ours |"
    assert len(lines) == 6 and "[b ch](b_ch)" in lines[2] and "p \\| q" in lines[2]
    gain = next(line for line in lines if "decay helps" in line)
    assert gain.endswith("| +5.0 points (95% CI +2.7 to +7.3) by final test accuracy: 46.0 ± 1.0 against 41.0 ± 1.0; "
                         "1 run(s) with negative loss weights |")
    assert "test:" not in gain  # the table keeps the headline; the test and the runs are in the details
    untestable = next(line for line in lines if "| untestable" in line or "**untestable" in line)
    assert untestable.endswith("; precondition not met |")
    full = claims_summary(claims, key="verdict_adjusted", details=True)
    assert "test: Welch's t-test, t = 6.12, df = 4.0; exact permutation p 0.1; claimed: greater; *cpu profile" in full
    assert f"| **supported** | 0.0036 (BH {by_id['gain']['p_adjusted']:.3g}) |" in gain


def test_adjustment_can_turn_a_verdict_inconclusive(store):
    close = [rec("decay", s, a) for s, a in enumerate([0.43, 0.45, 0.44])]  # p just below 0.05 alone
    c = claim(store, close)
    assert c["verdict"] == "supported" and 0.01 < c["test"]["p"] < 0.05
    for i in range(4):
        claim_from_comparison("ch", f"null{i}", "c", "p", runs_compared(BASE, SAME), store=store)
    gain = next(c for c in adjust_claims(load_claims("cpu", store)) if c["claim_id"] == "gain")
    assert gain["p_adjusted"] > 0.05 and gain["verdict_adjusted"] == "inconclusive"
    row = next(line for line in verdict_table([gain]).splitlines() if "decay helps" in line)
    assert "| **inconclusive** at the adjusted p (supported at p) |" in row


def test_summary_is_generated_from_the_claims(store):
    claim(store)
    claim_from_comparison("ch", "worse", "decay hurts", "p", runs_compared(BASE, WORSE), store=store)
    text = claims_summary(load_claims("cpu", store), link=lambda c: c["chapter"])
    assert text.startswith("- **supported**: 1 of 2\n  - [ch](ch): decay helps (p 0.0036): +5.0 points")
    assert "- **contradicted**: 1 of 2" in text and "inconclusive" not in text
    assert claims_summary([]) == "No claims are stored for this profile yet."


def test_load_claims_by_profile_and_chapter(store, tmp_path, monkeypatch):
    claim(store)
    claim_from_comparison("a_ch", "x", "c", "p", runs_compared(BASE, BETTER), store=store)
    claim_from_comparison("a_ch", "x", "c", "p", runs_compared([rec("b", 0, 0.1, profile="smoke")],
                                                               [rec("t", 0, 0.2, profile="smoke")]), store=store)
    assert [(c["chapter"], c["claim_id"]) for c in load_claims("cpu", store)] == [("a_ch", "x"), ("ch", "gain")]
    assert [c["chapter"] for c in load_claims("cpu", store, chapter="ch")] == ["ch"]
    smoke = load_claims("smoke", store)
    assert len(smoke) == 1 and smoke[0]["test"]["untested"] == "fewer than 2 runs on a side"
    assert smoke[0]["verdict"] == "inconclusive" and math.isnan(smoke[0]["test"]["p"])
    assert load_claims("gpu", store) == []
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "env-records"))
    claim(None)
    assert (tmp_path / "env-records" / "claims" / "ch--gain--cpu.json").is_file()


def test_chapter_titles(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "a.py").write_text("# ---\n# %% [markdown]\n# # Deep plain networks (Fig. 1)\n#\n# ## x\n")
    (tmp_path / "book" / "b.py").write_text("x = 1\n")
    assert chapter_titles(tmp_path) == {"a": "Deep plain networks (Fig. 1)", "b": "b"}
    assert chapter_titles(tmp_path, short=True) == {"a": "Deep plain networks", "b": "b"}
