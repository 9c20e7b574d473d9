"""Tables, summaries and the record store (lossdecay_lib.tables, .statistics, .runs):
summary_table, finished, load_existing, scales_table, jump_table (fake records; nothing trains)."""

from dataclasses import dataclass, replace

from lossdecay_lib import runs, statistics, tables
from lossdecay_lib.runs import RunStore, run_key


@dataclass(frozen=True)
class FakeConfig:
    label: str
    width: int = 8
    seed: int = 0
    profile: str = "quick"
    train_per_class: int = 200
    image_size: int = 32
    epochs: int = 4

    def with_(self, **changes):
        return replace(self, **changes)

    def describe(self):
        return {"label": "-", "width": self.width, "seed": self.seed, "profile": self.profile,
                "epochs": self.epochs}


def record(label, seed, acc, status="finished", epochs=(0.1, 0.2, 0.5, 0.55)):
    return {"label": label, "status": status, "config": {"seed": seed}, "final_test_acc": acc,
            "best_test_acc_over_epochs": max(acc, max(epochs)), "wall_seconds": 60.0,
            "provenance": {"profile": "quick", "device_name": "cpu"},
            "epochs": [{"test_acc": a, "weight_mean": 1.0, "lr_mean": 0.1} for a in epochs]}


def test_finished_keeps_only_finished_runs():
    recs = [record("a", 0, 0.5), record("a", 1, 0.1, status="diverged"), record("a", 2, 0.4)]
    assert [r["config"]["seed"] for r in statistics.finished(recs)] == [0, 2]


def test_summary_table_rows_columns_and_order():
    groups = {"low": [record("low", 0, 0.2), record("low", 1, 0.4)],
              "high": [record("high", 0, 0.6), record("high", 1, 0.6, status="diverged")]}
    columns = ("final", "best", "seeds", "diverged", ("note", lambda label, recs: label.upper()))
    table = tables.summary_table(groups, columns, by_final=True)
    lines = table.splitlines()
    assert lines[0] == ("| setting | final test acc. (%) | best over epochs (%, selects on test) | seeds | "
                        "diverged | note |")
    assert lines[2].startswith("| high | 60.00 ± 0.00 |") and lines[2].endswith("| 1 | 1 | HIGH |")
    assert lines[3].startswith("| low | 30.00 ± 14.14 |")


def test_summary_table_rejects_unknown_columns():
    try:
        tables.summary_table({"a": [record("a", 0, 0.5)]}, columns=("final", "nosuch"))
    except ValueError as e:
        assert "nosuch" in str(e)
    else:
        raise AssertionError("an unknown column must raise")


def test_load_existing_groups_by_config_label_and_trains_nothing(tmp_path):
    store = RunStore(tmp_path)
    a, b = FakeConfig("a"), FakeConfig("b", width=16)
    for seed in (0, 1):
        store.save(run_key(a.with_(seed=seed)), record("trained as x", seed, 0.3 + seed / 10))
    groups = runs.load_existing({"depth": {"a": a, "b": b}}, seeds=[0, 1, 2], store=store)
    assert list(groups) == ["a"] and [r["config"]["seed"] for r in groups["a"]] == [0, 1]


def test_scales_table_side_by_side_and_a_line_for_profiles_without_records(tmp_path):
    store = RunStore(tmp_path)

    def experiment(profile):
        width = {"quick": 8, "cpu": 16}.get(profile, 32)
        size = 16 if profile == "cpu" else 32
        return {"a": FakeConfig("a", width=width, image_size=size), "b": FakeConfig("b", width=width + 1)}

    for seed in (0, 1, 2):
        store.save(run_key(experiment("quick")["a"].with_(seed=seed)), record("a", seed, 0.2 + seed / 10))
    store.save(run_key(experiment("cpu")["a"]), record("a", 0, 0.5))
    text = tables.scales_table(experiment, store=store)
    assert "| setting | quick (2,000 images, 32x32, 4 epochs) | cpu (2,000 images, 16x16, 4 epochs) |" in text
    assert "| a | 30.0 ± 10.0 (n=3) | 50.0 (n=1) |" in text
    assert "| b | not trained yet | not trained yet |" in text
    assert "- `gpu`: no records yet." in text and "- `paper`: no records yet." in text
    assert "gpu (" not in text


def test_jump_table_says_where_the_largest_rise_came():
    groups = {"a": [record("a", 0, 0.55), record("a", 1, 0.55)]}
    line = tables.jump_table(groups, epochs=4).splitlines()[2]
    # largest rise 0.2 -> 0.5 into epoch 3 of 4
    assert line == "| a | 55.00 ± 0.00 | 55.00 ± 0.00 | 3.0 ± 0.0 | 75% | +30.0 | 1.00 | 0.1000 |"


def test_claims_at_a_glance_one_line_per_claim_verdict_first():
    from lossdecay_lib.verdict import claims_at_a_glance

    claims = [{"claim": "B holds", "verdict": "inconclusive", "test": {"p": 0.31}},
              {"claim": "A holds", "verdict": "supported", "test": {"p": 0.0004}},
              {"claim": "C holds", "verdict": "untestable at this scale", "test": {"untested": True, "p": None}}]
    assert claims_at_a_glance(claims).splitlines() == [
        "- **supported**: A holds (p <0.001)", "- **inconclusive**: B holds (p 0.31)",
        "- **untestable at this scale**: C holds"]
    assert claims_at_a_glance([]) == "No claims are stored for this profile yet."


def test_markdown_table_escapes_a_bar_and_a_newline_in_a_cell():
    assert tables.markdown_table(["a|b", "c"], [["x|y", "1\n2"]]).splitlines() == [
        "| a\\|b | c |", "|---|---|", "| x\\|y | 1 2 |"]


def test_settings_table_is_one_row_per_setting():
    assert tables.settings_table({"epochs": 8, "seeds": "0, 1"}).splitlines()[2:] == [
        "| epochs | 8 |", "| seeds | 0, 1 |"]


def test_values_table_formats_each_column_and_spreads_tuples():
    text = tables.values_table({"a": {"x": 1.234, "y": (2.0, 0.5)}, "b": {"x": None, "y": "never"}},
                               formats={"x": "{:.1f}", "y": "{:.1f} ± {:.1f}"})
    assert text.splitlines() == ["| setting | x | y |", "|---|---|---|", "| a | 1.2 | 2.0 ± 0.5 |",
                                 "| b | - | never |"]


def test_summary_table_mixes_named_columns_metric_cells_and_comparisons():
    groups = {"base": [record("base", 0, 0.2), record("base", 1, 0.4)],
              "new": [record("new", 0, 0.5), record("new", 1, 0.7), record("new", 2, 0.1, status="diverged")]}
    diffs = {"new": {"diff": 0.3, "ci95": [0.05, 0.55], "p": 0.04, "verdict": "supported"}}
    text = tables.summary_table(groups, [
        ("acc", tables.mean_pm("final_test_acc", digits=1)),
        ("first epoch", tables.mean_pm(lambda r: r["epochs"][0]["test_acc"], scale=1, digits=3)),
        ("constant", lambda label, recs: 0.5), *tables.comparison_columns(diffs, digits=1), "seeds"],
        first="protocol")
    assert text.splitlines() == [
        "| protocol | acc | first epoch | constant | difference (points, 95% CI) | Welch p | verdict | seeds |",
        "|---|---|---|---|---|---|---|---|",
        "| base | 30.0 ± 14.1 | 0.100 ± 0.000 | 0.50 | - | - | - | 2 |",
        "| new | 60.0 ± 14.1 | 0.100 ± 0.000 | 0.50 | +30.0 (+5.0 to +55.0) | 0.04 | supported | 2 |"]


def test_comparison_table_one_row_per_comparison():
    c = {"diff": -0.012, "ci95": [-0.03, 0.006], "p": 0.2, "verdict": "inconclusive"}
    assert tables.comparison_table({("decay", "final"): c}, ["treatment", "evaluation"]).splitlines()[2] == \
        "| decay | final | -1.20 (-3.00 to +0.60) | 0.2 | inconclusive |"


def test_default_store_is_the_checkouts_records_from_any_folder_in_it(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSDECAY_RECORDS", raising=False)
    checkout, outside = tmp_path / "checkout", tmp_path / "outside"
    (checkout / "book").mkdir(parents=True)
    (checkout / "_toc.yml").write_text("root: book/intro\n")
    outside.mkdir()
    monkeypatch.chdir(checkout / "book")  # where papermill runs a chapter
    assert RunStore.default().root == checkout.resolve() / "records"
    monkeypatch.chdir(outside)  # e.g. Colab, the library installed without a checkout
    assert RunStore.default().root == outside.resolve() / "records"
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path / "env"))
    assert RunStore.default().root == tmp_path / "env"


def test_epoch_tests_table_writes_differences_and_ratios_up_to_the_shortest_series():
    diffs = [dict(diff=0.012, se=0.004, p=0.03), dict(diff=-0.05, se=0.01, p=0.001)]
    ratios = [dict(ratio=0.8, p=0.2, diff=-0.2, se=0.1)]  # a ratio test's row: the ratio is shown
    lines = tables.epoch_tests_table({"acc. (points)": diffs, "norm 1 / 2": ratios}).splitlines()
    assert lines[0] == "| epoch | acc. (points) | norm 1 / 2 |"
    assert len(lines) == 3  # header, rule, one epoch: the ratio series has one
    assert lines[2] == "| 1 | +1.2 ± 0.4 (p 0.03) | 0.80 (p 0.2) |"
    assert tables.epoch_tests_table({"acc.": diffs, "none": []}) == ""
