"""The book's verdicts: one stored claim per paper claim (or per comparison the book adds) a chapter tests.

A chapter stores each claim in one of two ways:

- :func:`claim_from_comparison`: the evidence is a test from :mod:`lossdecay_lib.statistics` on per-run
  values of one metric: baseline runs against treatment runs (:func:`runs_compared`, Welch's t-test),
  runs against a reference value (:func:`runs_against`), or a contrast of several settings
  (:func:`runs_contrast`). The claim stores the means, standard deviations and counts of each side, the
  difference with its 95% confidence interval, the test's name, statistic, degrees of freedom and p,
  and the verdict.
- :func:`stated_claim`: a claim that no test between runs decides (an identity of the update rule, a
  deterministic model), with its finding as explicit fields and the rule its verdict follows.

Verdicts (:data:`VERDICTS`): **supported** (p < 0.05, two-sided, in the claimed direction),
**contradicted** (p < 0.05 the other way), **inconclusive** (otherwise), and **untestable at this scale**
when the claim's :class:`Precondition` (stated in the chapter, checked from the records) did not occur
in the runs. A chapter's verdict uses its own p; the Verdict chapter adds the p values adjusted across
all the book's claims (Benjamini-Hochberg, :func:`adjust_claims`) and the verdicts they give.

Every claim carries the provenance of the runs behind it (seeds, devices, dates, wall time, and the
profiles that trained them) and the runs that diverged or trained with negative loss weights, never
dropped silently. The "ours" text is formatted here from the stored fields, never by a chapter.

Claims are JSON files ``<store root>/claims/<chapter>--<claim id>--<profile>.json``, written atomically
and only when their content (apart from dates) changed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .atomic import read_json, write_json_atomic
from .checks import check_one_of
from .runs import RunStore
from .tables import markdown_table
from .statistics import (DIRECTIONS, adjust_p, finished, format_p, mean_std, metric_value,
                         one_sample_test, verdict_of, welch_contrast, welch_test)

__all__ = ["VERDICTS", "SOURCES", "CLAIMS_DIR", "Precondition", "runs_compared", "runs_against",
           "runs_contrast", "claim_from_comparison", "stated_claim", "claims_dir", "claim_path",
           "load_claims", "adjust_claims", "verdict_table", "verdict_counts", "claims_summary",
           "claims_at_a_glance", "verdict_sentences", "chapters_with_claims", "runs_provenance",
           "chapter_titles"]

VERDICTS = ("supported", "contradicted", "inconclusive", "untestable at this scale")
#: Whose claim a row is: the paper's, or a comparison the book adds (today's baselines, our own schedule).
SOURCES = ("paper", "book")
CLAIMS_DIR = "claims"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Precondition:
    """What must have happened in the runs for a claim to be testable at all, e.g. "the constant-weight
    runs reach a plateau" for death convergence (Sec. III.A), and whether it did (checked from the
    records; ``detail`` says what they showed)."""

    text: str
    held: bool
    detail: str

    @classmethod
    def count(cls, text: str, flags: Sequence[bool], at_least: int = 1, what: str = "runs") -> "Precondition":
        """Held when at least ``at_least`` of ``flags`` (one per run) are true."""
        n = sum(bool(f) for f in flags)
        return cls(text, n >= at_least, f"{n} of {len(flags)} {what}, at least {at_least} needed")


# -- evidence: per-run values of one metric and a test on them --------------------------------------


def _seed(record: Dict):
    return record.get("config", {}).get("seed", record.get("provenance", {}).get("seed"))


#: How the run-level values of the records are named in the claims' texts.
METRIC_NAMES = {"final_test_acc": "final test accuracy", "best_test_acc_over_epochs": "best test accuracy over epochs",
                "final_val_miou": "final val mean IoU", "best_val_miou_over_epochs": "best val mean IoU over epochs",
                "final_test_psnr": "final test PSNR", "final_test_ssim": "final test SSIM",
                "final_test_l1": "final test L1"}


def _metric_name(metric) -> str:
    if isinstance(metric, str):
        return METRIC_NAMES.get(metric, metric)
    return getattr(metric, "name", None) or metric.__name__


def _side(role: str, records: Sequence[Dict], metric, weight: Optional[float] = None) -> Dict:
    """The finished runs' values of ``metric`` (a record key or a function of a record; a function may
    return ``None`` for a run it cannot measure: that run is left out and counted)."""
    records = list(records)
    if not records:
        raise ValueError(f"the {role} needs at least one run record")
    values, seeds, left_out = [], [], []
    for r in finished(records):
        v = metric_value(r, metric)
        if v is None:
            left_out.append({"label": r.get("label"), "seed": _seed(r)})
        else:
            values.append(v)
            seeds.append(_seed(r))
    m, s = mean_std(values)
    side = {"role": role, "labels": sorted({str(r.get("label")) for r in records}), "mean": m, "std": s,
            "n": len(values), "values": values, "seeds": seeds, "left_out": left_out,
            "diverged": sorted(_seed(r) for r in records if r["status"] == "diverged"),
            "negative_weights": sorted(_seed(r) for r in records if r.get("negative_weights"))}
    return side if weight is None else dict(side, weight=weight)


def runs_compared(baseline: Sequence[Dict], treatment: Sequence[Dict], metric="final_test_acc") -> Dict:
    """Evidence for "the treatment differs from the baseline": Welch's t-test of ``metric`` over their
    finished runs (:func:`lossdecay_lib.statistics.welch_test`)."""
    sides = [_side("baseline", baseline, metric), _side("treatment", treatment, metric)]
    return {"metric": _metric_name(metric), "sides": sides, "records": list(baseline) + list(treatment),
            "test": welch_test(sides[0]["values"], sides[1]["values"])}


def runs_against(records: Sequence[Dict], metric, reference: float) -> Dict:
    """Evidence for "the runs' mean of ``metric`` differs from ``reference``": a one-sample t-test."""
    side = _side("runs", records, metric)
    return {"metric": _metric_name(metric), "sides": [side], "records": list(records), "reference": reference,
            "test": one_sample_test(side["values"], reference)}


def runs_contrast(groups: Sequence[Tuple[str, Sequence[Dict], float]], metric="final_test_acc") -> Dict:
    """Evidence for a contrast of settings, ``sum weight * mean(metric)``; ``groups`` is a list of
    ``(role, records, weight)`` (Fig. 1: a gain that grows with depth is the contrast of four settings)."""
    sides = [_side(role, recs, metric, weight) for role, recs, weight in groups]
    return {"metric": _metric_name(metric), "sides": sides, "records": [r for _, recs, _ in groups for r in recs],
            "test": welch_contrast([s["values"] for s in sides], [s["weight"] for s in sides])}


# -- provenance and storage --------------------------------------------------------------------------


def runs_provenance(records: Sequence[Dict], profile: Optional[str] = None) -> Dict:
    """Seeds, devices, dates, wall time, the diverged / negative-weight runs of ``records``, and the
    profiles that trained them. The claim's ``profile`` is the chapter's (``profile``), or the records'
    single profile when none is given."""
    if not records:
        raise ValueError("runs_provenance needs at least one run record")
    for r in records:
        if not isinstance(r, dict) or "provenance" not in r or "status" not in r:
            raise ValueError("every record must be a run record (a dict with 'provenance' and 'status'), "
                             f"got {type(r).__name__} with keys {sorted(r) if isinstance(r, dict) else '-'}")
    trained = sorted({r["provenance"]["profile"] for r in records})
    if profile is None and len(trained) != 1:
        raise ValueError(f"the records come from profiles {trained}: pass run= (the chapter's ChapterRun) to say "
                         "which profile the claim belongs to")
    dates = sorted(r["provenance"].get("date", "") for r in records)
    return {
        "profile": profile or trained[0], "trained_under": trained, "runs": len(records),
        "seeds": sorted({s for s in (_seed(r) for r in records) if s is not None}),
        "devices": sorted({r["provenance"].get("device_name", "?") for r in records}),
        "dates": [dates[0], dates[-1]],
        "wall_seconds": float(sum(r.get("wall_seconds", 0.0) or 0.0 for r in records)),
        "run_seconds": {str(r.get("key", i)): float(r.get("wall_seconds", 0.0) or 0.0) for i, r in enumerate(records)},
        "finished": sum(r["status"] == "finished" for r in records),
        "diverged": [{"label": r.get("label"), "seed": _seed(r)} for r in records if r["status"] == "diverged"],
        "negative_weights": [{"label": r.get("label"), "seed": _seed(r)} for r in records if r.get("negative_weights")],
        "other_status": sorted({r["status"] for r in records} - {"finished", "diverged"}),
    }


def _provenance(records: Sequence[Dict], run) -> Dict:
    if records:
        return runs_provenance(records, run.profile.name if run is not None else None)
    if run is None:
        raise ValueError("a claim needs run records (for provenance) or, for a check without training runs, "
                         "run= (the chapter's ChapterRun)")
    return {"profile": run.profile.name, "trained_under": [], "runs": 0, "seeds": [run.seed],
            "devices": [run.info["device_name"]], "dates": [run.info["date"]] * 2, "wall_seconds": 0.0,
            "run_seconds": {}, "finished": 0, "diverged": [], "negative_weights": [], "other_status": []}


def claims_dir(store: Optional[RunStore] = None) -> Path:
    """The folder of stored claims: ``<store root>/claims``."""
    return (store or RunStore.default()).root / CLAIMS_DIR


def _check_name(what: str, value) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or "--" in value:
        raise ValueError(f"{what} must be a short name of letters, digits, '_', '.', '-' (no '--'), got {value!r}")
    return value


def claim_path(chapter: str, claim_id: str, profile: str, store: Optional[RunStore] = None) -> Path:
    """Where the claim ``claim_id`` of ``chapter`` under ``profile`` is stored."""
    names = [_check_name(w, v) for w, v in (("chapter", chapter), ("claim_id", claim_id), ("profile", profile))]
    return claims_dir(store) / ("--".join(names) + ".json")


def _without_dates(entry: Dict) -> str:
    prov = dict(entry.get("provenance") or {}, dates=None, devices=None)
    return json.dumps(dict(entry, provenance=prov), sort_keys=True)


def _store(entry: Dict, store: Optional[RunStore]) -> Dict:
    """Write ``entry`` unless the stored claim says the same apart from when and on what it was computed
    (its dates and devices: so re-rendering the book from the same records, on any machine, leaves the
    checkout unchanged; a claim whose numbers changed is written with its new provenance)."""
    entry = json.loads(json.dumps(entry))  # what will be read back: tuples as lists
    path = claim_path(entry["chapter"], entry["claim_id"], entry["profile"], store)
    if path.is_file() and _without_dates(read_json(path)) == _without_dates(entry):
        return entry
    write_json_atomic(path, entry)
    return entry


def _check_texts(**texts) -> None:
    for what, value in texts.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what} must be a non-empty text, got {value!r}")


def _head(chapter, claim_id, claim, paper, source, precondition, kind) -> Dict:
    _check_texts(claim=claim, paper=paper)
    check_one_of("source", source, SOURCES)
    if precondition is not None and not isinstance(precondition, Precondition):
        raise ValueError(f"precondition must be a Precondition, got {type(precondition).__name__}")
    return {"chapter": _check_name("chapter", chapter), "claim_id": _check_name("claim_id", claim_id),
            "claim": claim.strip(), "paper": paper.strip(), "source": source, "kind": kind,
            "precondition": asdict(precondition) if precondition is not None else None}


# -- the two kinds of claim --------------------------------------------------------------------------


def _scaled(evidence: Dict, scale: float) -> Dict:
    test = evidence["test"]
    sides = [dict(s, mean=s["mean"] * scale, std=s["std"] * scale, values=[v * scale for v in s["values"]])
             for s in evidence["sides"]]
    out = {"metric": evidence["metric"], "diff": test["diff"] * scale, "se": test["se"] * scale,
           "ci95": [c * scale for c in test["ci95"]], "sides": sides}
    if "reference" in evidence:
        out["reference"] = evidence["reference"] * scale
    return out


def claim_from_comparison(chapter: str, claim_id: str, claim: str, paper: str, evidence: Dict, *,
                          direction: str = "greater", precondition: Optional[Precondition] = None,
                          scale: float = 100.0, unit: str = "points", source: str = "paper", run=None,
                          store: Optional[RunStore] = None) -> Dict:
    """Store (and return) a claim decided by a test: ``evidence`` from :func:`runs_compared`,
    :func:`runs_against` or :func:`runs_contrast`; ``direction`` what the claim predicts for the
    difference (``greater``, ``less`` or ``different``). ``scale`` and ``unit`` say how the metric is
    shown (100 and "points" for accuracies stored in [0, 1]). ``precondition``: the claim is
    "untestable at this scale" when it did not hold. ``run``: the chapter's ChapterRun, whose profile
    the claim belongs to (else the records' own profile)."""
    check_one_of("direction", direction, DIRECTIONS)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if not isinstance(evidence, dict) or not {"test", "sides", "records"} <= set(evidence):
        raise ValueError("evidence must come from runs_compared, runs_against or runs_contrast")
    entry = _head(chapter, claim_id, claim, paper, source, precondition, "comparison")
    test = {k: v for k, v in evidence["test"].items() if k not in ("diff", "se", "ci95")}
    comparison = dict(_scaled(evidence, scale), direction=direction, scale=scale, unit=unit)
    verdict = verdict_of(evidence["test"], direction)
    if precondition is not None and not precondition.held:
        verdict = VERDICTS[3]
    prov = _provenance(evidence["records"], run)
    entry.update(comparison=comparison, test=test, verdict=verdict, profile=prov["profile"], provenance=prov)
    entry["ours"] = _comparison_text(entry)
    return _store(entry, store)


def stated_claim(chapter: str, claim_id: str, claim: str, paper: str, *, finding: Dict, verdict: str, rule: str,
                 records: Sequence[Dict] = (), precondition: Optional[Precondition] = None, source: str = "paper",
                 run=None, store: Optional[RunStore] = None) -> Dict:
    """Store (and return) a claim that no test between runs decides (an identity of the update rule,
    checked in float64; a deterministic model): ``finding`` holds its result as fields (JSON-ready,
    shown as "field: value"), ``rule`` says how ``verdict`` follows from them. ``records`` (or ``run``
    for a check without training runs) give the provenance."""
    check_one_of("verdict", verdict, VERDICTS)
    _check_texts(rule=rule)
    if not isinstance(finding, dict) or not finding:
        raise ValueError(f"finding must be a non-empty dict of fields, got {finding!r}")
    entry = _head(chapter, claim_id, claim, paper, source, precondition, "stated")
    if precondition is not None and not precondition.held and verdict != VERDICTS[3]:
        raise ValueError(f"the precondition did not hold ({precondition.detail}): the verdict is {VERDICTS[3]!r}")
    prov = _provenance(list(records), run)
    entry.update(finding=finding, rule=rule.strip(), comparison=None, test=None, verdict=verdict,
                 profile=prov["profile"], provenance=prov)
    entry["ours"] = _stated_text(entry)
    return _store(entry, store)


# -- the texts, from the stored fields ---------------------------------------------------------------


def _num(x, digits: int) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _digits(c: Dict) -> int:
    """Decimals that show the smallest spread over seeds (else the difference) with two significant digits."""
    spreads = [s["std"] for s in c["sides"] if s["n"] > 1 and math.isfinite(s["std"]) and s["std"] > 0]
    sizes = spreads or [abs(c["diff"])] if math.isfinite(c["diff"]) and c["diff"] else spreads
    return max(1, min(4, 1 - math.floor(math.log10(min(sizes)) + 1e-9))) if sizes else 2


def _side_name(side: Dict) -> str:
    labels = side["labels"]
    return ", ".join(labels) if len(labels) <= 2 else f"{len(labels)} settings"


def _run_notes(sides: Sequence[Dict]) -> List[str]:
    notes = []
    for s in sides:
        name = _side_name(s)
        if s["diverged"]:
            notes.append(f"{len(s['diverged'])} run(s) of {name} diverged (seeds {s['diverged']}), left out")
        if s["left_out"]:
            which = ", ".join(f"{x['label']} seed {x['seed']}" for x in s["left_out"]) \
                if len(s["left_out"]) <= 3 else f"{len(s['left_out'])} runs"
            notes.append(f"not measurable, left out: {which}")
        if s["negative_weights"]:
            notes.append(f"{len(s['negative_weights'])} run(s) of {name} trained with negative loss weights "
                         f"(seeds {s['negative_weights']})")
    return notes


def _mean_sd(side: Dict, d: int) -> str:
    return f"{_num(side['mean'], d)} ± {_num(side['std'], d)}"


def _diff_ci(c: Dict, d: int, unit: str = "") -> str:
    """"+5.0 points (95% CI +2.7 to +7.3)": a comparison's difference, ``unit`` and its interval at ``d``
    decimals."""
    lo, hi = c["ci95"]
    diff = f"{c['diff']:+.{d}f}" if math.isfinite(c["diff"]) else "n/a"
    return diff + (f" {unit}" if unit else "") + (f" (95% CI {lo:+.{d}f} to {hi:+.{d}f})" if math.isfinite(lo) else "")


def _comparison_text(entry: Dict) -> str:
    """"+5.0 points (95% CI +2.7 to +7.3) by <metric>: treatment 46.0 ± 1.0 (n=3) vs baseline ...";
    then the runs left out, and the unmet precondition."""
    c, d = entry["comparison"], _digits(entry["comparison"])
    sides = "; ".join(f"{_side_name(s)}: {_mean_sd(s, d)} (n={s['n']}"
                      + (f", weight {s['weight']:+g}" if "weight" in s else "") + ")" for s in c["sides"])
    if "reference" in c:
        text = f"{sides} {c['unit']} by {c['metric']}, against {c['reference']:.{d}f}: {_diff_ci(c, d)}"
    else:
        text = f"{_diff_ci(c, d, c['unit'])} by {c['metric']}; {sides}"
    notes = _run_notes(c["sides"])
    if entry["test"].get("untested"):
        notes.append(f"not tested: {entry['test']['untested']}")
    pre = entry["precondition"]
    if pre and not pre["held"]:
        notes.append(f"precondition not met: {pre['text']} ({pre['detail']})")
    return text + "".join(f"; {n}" for n in notes)


def _first_part(text: str) -> str:
    """``text`` up to its first "; " outside brackets (a stated claim's first finding, in the chapter's order)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if depth == 0 and text.startswith("; ", i):
            return text[:i]
    return text


def _headline(c: Dict) -> str:
    """The short "ours" of the Verdict table: the difference with its 95% interval, the metric and the
    two sides' means, the paper's setting first (a contrast: the difference only; runs against a
    reference: their mean first), or a stated claim's first finding; then the runs that diverged or
    trained with negative weights, and an unmet precondition. :func:`claims_summary` with
    ``details=True`` gives the whole text."""
    if not c.get("comparison"):
        head = _first_part(c["ours"])
    else:
        comp, d = c["comparison"], _digits(c["comparison"])
        sides, unit, metric = comp["sides"], comp["unit"], comp["metric"]
        if "reference" in comp:
            head = f"{_mean_sd(sides[0], d)} {unit} by {metric}, against {comp['reference']:.{d}f}: {_diff_ci(comp, d)}"
        else:
            head = f"{_diff_ci(comp, d, unit)} by {metric}"
            head += f": {_mean_sd(sides[1], d)} against {_mean_sd(sides[0], d)}" if len(sides) == 2 else ""
    for key, what in (("diverged", "diverged"), ("negative_weights", "with negative loss weights")):
        n = len(c["provenance"][key])
        head += f"; {n} run(s) {what}" if n else ""
    pre = c["precondition"]
    return head + ("; precondition not met" if pre and not pre["held"] else "")


def _field(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return f"[{'; '.join(_field(v) for v in value)}]" if value else "none"
    return str(value)


def _stated_text(entry: Dict) -> str:
    text = "; ".join(f"{k}: {_field(v)}" for k, v in entry["finding"].items())
    pre = entry["precondition"]
    if pre and not pre["held"]:
        text += f"; precondition not met: {pre['text']} ({pre['detail']})"
    prov = entry["provenance"]
    extra = [f"{len(prov[k])} of {prov['runs']} runs {w}" for k, w in
             (("diverged", "diverged"), ("negative_weights", "trained with negative loss weights")) if prov[k]]
    return text + (f" ({'; '.join(extra)})" if extra else "")


# -- reading and showing claims ------------------------------------------------------------------------


def load_claims(profile: str, store: Optional[RunStore] = None, chapter: Optional[str] = None) -> List[Dict]:
    """The stored claims of one profile (of one ``chapter``, if given), sorted by chapter then claim id."""
    _check_name("profile", profile)
    folder = claims_dir(store)
    if not folder.is_dir():
        return []
    pattern = f"{_check_name('chapter', chapter) if chapter else '*'}--*--{profile}.json"
    claims = [c for c in (read_json(p) for p in sorted(folder.glob(pattern))) if c.get("profile") == profile]
    return sorted(claims, key=lambda c: (c["chapter"], c["claim_id"]))


def adjust_claims(claims: Sequence[Dict]) -> List[Dict]:
    """Copies of ``claims`` with ``p_adjusted`` (Benjamini-Hochberg across every tested claim whose
    precondition held) and ``verdict_adjusted`` (the verdict at that p; stated and untestable claims
    keep theirs)."""
    tested = [c for c in claims if c.get("test") and c["verdict"] != VERDICTS[3]]
    adjusted = adjust_p([c["test"]["p"] for c in tested])
    by_id = {id(c): q for c, q in zip(tested, adjusted)}
    out = []
    for c in claims:
        q = by_id.get(id(c))
        verdict = c["verdict"] if id(c) not in by_id else verdict_of(
            {"p": q, "diff": c["comparison"]["diff"]}, c["comparison"]["direction"], p=q)
        out.append(dict(c, p_adjusted=q, verdict_adjusted=verdict))
    return out


def _provenance_text(prov: Dict) -> str:
    """Short: profile (and the profiles that trained the runs, where others), runs, seeds, minutes."""
    if not prov.get("runs"):
        return f"{prov['profile']} profile, no training runs"
    seeds = prov["seeds"]
    seed_text = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else f"seeds {', '.join(map(str, seeds))}"
    other = [p for p in prov.get("trained_under", []) if p != prov["profile"]]
    trained = f" (trained under {', '.join(prov['trained_under'])})" if other else ""
    return f"{prov['profile']} profile{trained}, {prov['runs']} runs, {seed_text}, {prov['wall_seconds'] / 60:.0f} min"


def _test_text(c: Dict) -> str:
    t = c.get("test")
    if not t:
        return f"none: {c['rule']}" if c.get("rule") else "none"
    if t.get("untested"):
        return f"{t['test']}: not run ({t['untested']})"
    perm = f"; exact permutation p {format_p(t['permutation_p'])}" if t.get("permutation_p") is not None else ""
    return f"{t['test']}, t = {t['statistic']:.2f}, df = {t['df']:.1f}{perm}"


def _p_text(c: Dict) -> str:
    p = (c.get("test") or {}).get("p")
    return format_p(p) if c["p_adjusted"] is None else f"{format_p(p)} (BH {format_p(c['p_adjusted'])})"


def _verdict_text(c: Dict) -> str:
    if c["verdict"] == c["verdict_adjusted"]:
        return f"**{c['verdict']}**"
    return f"**{c['verdict_adjusted']}** at the adjusted p ({c['verdict']} at p)"


def verdict_table(claims: Iterable[Dict], link: Callable[[str], str] = lambda chapter: chapter,
                  title: Callable[[str], str] = lambda chapter: chapter.replace("_", " ")) -> str:
    """A Markdown table of claims, six columns: chapter (linked), claim, the verdict at the adjusted p
    (with the claim's own verdict where the adjustment changed it), p and the p adjusted
    (Benjamini-Hochberg, across ``claims`` unless they come from :func:`adjust_claims` already), paper,
    and ours: the headline number (:func:`_headline`); the whole evidence, its test and its runs are in
    :func:`claims_summary` with ``details=True``. The verdict comes before the long columns."""
    claims = list(claims)
    if not all("p_adjusted" in c for c in claims):
        claims = adjust_claims(claims)
    rows = [[f"[{title(c['chapter'])}]({link(c['chapter'])})", c["claim"], _verdict_text(c), _p_text(c),
             c["paper"], _headline(c)] for c in claims]
    return markdown_table(["chapter", "claim", "verdict", "p (adjusted)", "paper", "ours"], rows)


def _details(c: Dict) -> str:
    """The test (with the claimed direction) and the provenance of a claim's runs."""
    direction = c["comparison"]["direction"] if c.get("comparison") else None
    test = _test_text(c) + (f"; claimed: {direction}" if direction else "")
    return f"; test: {test}; *{_provenance_text(c['provenance'])}*"


def verdict_counts(claims: Sequence[Dict], key: str = "verdict") -> Dict[str, int]:
    """How many ``claims`` have each verdict (``key="verdict_adjusted"`` after :func:`adjust_claims`)."""
    return {v: sum(c[key] == v for c in claims) for v in VERDICTS}


def claims_summary(claims: Sequence[Dict], key: str = "verdict",
                   link: Optional[Callable[[Dict], str]] = None, details: bool = False) -> str:
    """Markdown: for each verdict that occurs, how many of ``claims`` have it and which (with their
    "ours" text, and with ``details`` the test and the provenance of the runs), generated from the
    stored claims so that no prose can go stale."""
    lines = []
    for verdict in VERDICTS:
        these = [c for c in claims if c[key] == verdict]
        if not these:
            continue
        lines.append(f"- **{verdict}**: {len(these)} of {len(claims)}")
        for c in these:
            where = f"[{c['chapter'].replace('_', ' ')}]({link(c)}): " if link else ""
            p = f" (p {format_p(c['test']['p'])})" if c.get("test") and not c["test"].get("untested") else ""
            lines.append(f"  - {where}{c['claim']}{p}: {c['ours']}" + (_details(c) if details else ""))
    return "\n".join(lines) if lines else "No claims are stored for this profile yet."


def claims_at_a_glance(claims: Sequence[Dict], key: str = "verdict") -> str:
    """Markdown, short enough for a chapter's "at a glance" box: one line per claim, its verdict first,
    then the claim and its p (the full "ours" text is in :func:`claims_summary`)."""
    lines = []
    for c in sorted(claims, key=lambda c: VERDICTS.index(c[key])):
        p = f" (p {format_p(c['test']['p'])})" if c.get("test") and not c["test"].get("untested") else ""
        lines.append(f"- **{c[key]}**: {c['claim']}{p}")
    return "\n".join(lines) if lines else "No claims are stored for this profile yet."


def verdict_sentences(claims: Sequence[Dict]) -> str:
    """The Verdict chapter's summary in words, from claims that went through :func:`adjust_claims`:
    how many of the paper's claims and of the book's own comparisons have each verdict at the adjusted
    p, and which verdicts the adjustment changed."""
    tested = sum(c["p_adjusted"] is not None for c in claims)
    out = []
    for source, what in (("paper", "claims of the paper"), ("book", "comparisons the book adds")):
        these = [c for c in claims if c["source"] == source]
        if these:
            n = verdict_counts(these, "verdict_adjusted")
            out.append(f"Of the {len(these)} {what}, " + ", ".join(f"{k} {v}" for v, k in n.items() if k) + ".")
    if not out:
        return "No claims are stored for this profile yet."
    out.append(f"These verdicts use p values adjusted for testing {tested} claims at once (Benjamini-Hochberg, "
               "5%); stated claims (identities, deterministic models) and untestable ones are not in that count.")
    changed = [c for c in claims if c["verdict"] != c["verdict_adjusted"]]
    if changed:
        out.append("The adjustment changes " + "; ".join(
            f"\"{c['claim']}\" from {c['verdict']} to {c['verdict_adjusted']} (p {format_p(c['test']['p'])}, "
            f"adjusted {format_p(c['p_adjusted'])})" for c in changed) + ".")
    else:
        out.append("The adjustment changes no verdict.")
    return " ".join(out)


def chapters_with_claims(root: Path, chapters: Sequence[str]) -> List[str]:
    """Those of ``chapters`` whose source in ``root/book`` stores claims (calls
    :func:`claim_from_comparison` or :func:`stated_claim`), in the order given."""
    return [n for n in chapters if re.search(r"\b(claim_from_comparison|stated_claim)\(",
                                             Path(root, "book", f"{n}.py").read_text())]


def chapter_titles(root: Path, short: bool = False) -> Dict[str, str]:
    """The title (first Markdown heading) of each chapter in ``root/book``, by chapter name; ``short``:
    without the paper reference in parentheses that ends some headings ("Deep plain networks")."""
    pattern = r"^# # (.+?)(?: \([^()]*\))?$" if short else r"^# # (.+)$"
    titles = {}
    for p in sorted(Path(root, "book").glob("*.py")):
        heading = re.search(pattern, p.read_text(), re.M)
        titles[p.stem] = heading.group(1).strip() if heading else p.stem
    return titles
