"""The book's verdicts: one stored claim per paper claim a chapter tests, gathered by the Verdict chapter.

A chapter that tests a claim of the paper calls :func:`record_claim` at its end. With ``baseline`` and
``treatment`` (lists of run records) the claim's result and verdict are computed here, from
``record[metric]`` by :func:`lossdecay_lib.runs.compare`; otherwise the chapter passes its own ``ours``
text (computed from records, never typed) and ``verdict``. Every claim carries the provenance of the runs
behind it (profile, seeds, device, dates, total wall time), and the runs that diverged or trained with
negative loss weights are counted and shown, never dropped silently.

Claims are JSON files ``<store root>/claims/<chapter>--<claim id>--<profile>.json`` written atomically.
:func:`load_claims` reads those of one profile; :func:`verdict_table` renders them as a Markdown table.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from .records import read_json, write_json_atomic
from .runs import RunStore, compare, markdown_table, mean_std

__all__ = ["VERDICTS", "CLAIMS_DIR", "claims_dir", "claim_path", "record_claim", "load_claims", "verdict_table",
           "runs_provenance", "verdict_from_count", "chapter_titles"]

VERDICTS = ("supported", "not supported", "inconclusive")
CLAIMS_DIR = "claims"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# compare()'s verdicts (for "the treatment is better") in the book's words
_FROM_COMPARE = {"supported": "supported", "contradicted": "not supported", "inconclusive": "inconclusive"}
_DIRECTIONS = ("better", "different")


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


def chapter_titles(root: Path) -> Dict[str, str]:
    """The title (first Markdown heading) of each chapter in ``root/book``, by chapter name."""
    titles = {}
    for p in sorted(Path(root, "book").glob("*.py")):
        heading = re.search(r"^# # (.+)$", p.read_text(), re.M)
        titles[p.stem] = heading.group(1).strip() if heading else p.stem
    return titles


def verdict_from_count(agree: int, total: int) -> str:
    """The verdict when ``agree`` of ``total`` runs (or settings) show what a claim predicts: all of them
    "supported", fewer than half "not supported", otherwise "inconclusive"."""
    if not (isinstance(agree, int) and isinstance(total, int) and 0 <= agree <= total and total > 0):
        raise ValueError(f"need 0 <= agree <= total and total > 0, got agree={agree!r}, total={total!r}")
    return "supported" if agree == total else "not supported" if 2 * agree < total else "inconclusive"


def _seed(record: Dict):
    return record.get("config", {}).get("seed", record.get("provenance", {}).get("seed"))


def runs_provenance(records: Sequence[Dict]) -> Dict:
    """Profile, seeds, devices, dates, total wall time, and the diverged / negative-weight runs of ``records``."""
    if not records:
        raise ValueError("runs_provenance needs at least one run record")
    for r in records:
        if not isinstance(r, dict) or "provenance" not in r or "status" not in r:
            raise ValueError("every record must be a run record (a dict with 'provenance' and 'status'), "
                             f"got {type(r).__name__} with keys {sorted(r) if isinstance(r, dict) else '-'}")
    profiles = sorted({r["provenance"]["profile"] for r in records})
    if len(profiles) != 1:
        raise ValueError(f"a claim's records must come from one profile, got {profiles}")
    dates = sorted(r["provenance"].get("date", "") for r in records)
    return {
        "profile": profiles[0],
        "runs": len(records),
        "seeds": sorted({s for s in (_seed(r) for r in records) if s is not None}),
        "devices": sorted({r["provenance"].get("device_name", "?") for r in records}),
        "dates": [dates[0], dates[-1]],
        "wall_seconds": float(sum(r.get("wall_seconds", 0.0) or 0.0 for r in records)),
        "run_seconds": {str(r.get("key", i)): float(r.get("wall_seconds", 0.0) or 0.0) for i, r in enumerate(records)},
        "finished": sum(r["status"] == "finished" for r in records),
        "diverged": [{"label": r.get("label"), "seed": _seed(r)} for r in records if r["status"] == "diverged"],
        "negative_weights": [{"label": r.get("label"), "seed": _seed(r)} for r in records
                             if r.get("negative_weights")],
        "other_status": sorted({r["status"] for r in records} - {"finished", "diverged"}),
    }


def _side(records: Sequence[Dict], metric: str, scale: float) -> Dict:
    done = [r for r in records if r["status"] == "finished"]
    for r in done:
        if metric not in r:
            raise ValueError(f"record {r.get('key', '?')} ({r.get('label')}) has no metric {metric!r}; "
                             f"its run-level values are {sorted(k for k, v in r.items() if isinstance(v, float))}")
    m, s = mean_std([r[metric] * scale for r in done])
    return {
        "labels": sorted({str(r.get("label")) for r in records}),
        "mean": m, "std": s, "n": len(done),
        "seeds": sorted(_seed(r) for r in done),
        "diverged": sorted(_seed(r) for r in records if r["status"] == "diverged"),
        "negative_weights": sorted(_seed(r) for r in records if r.get("negative_weights")),
    }


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ours_text(cmp: Dict, base: Dict, treat: Dict, scale: float, unit: str) -> str:
    diff = cmp["diff"] * scale
    se = cmp["se"] * scale
    head = f"{diff:+.1f} ± {_fmt(se)} {unit}" if not math.isnan(diff) else f"n/a {unit}"
    n = (f"{base['n']} seed{'s' if base['n'] != 1 else ''} each" if base["n"] == treat["n"]
         else f"{treat['n']} vs {base['n']} seeds")
    text = (f"{head} (treatment {_fmt(treat['mean'])} ± {_fmt(treat['std'])} vs baseline "
            f"{_fmt(base['mean'])} ± {_fmt(base['std'])}; {n})")
    notes = []
    for name, side in (("treatment", treat), ("baseline", base)):
        if side["diverged"]:
            notes.append(f"{len(side['diverged'])} {name} run(s) diverged (seeds {side['diverged']}), left out")
        if side["negative_weights"]:
            notes.append(f"{len(side['negative_weights'])} {name} run(s) trained with negative loss weights "
                         f"(seeds {side['negative_weights']})")
    return text + ("; " + "; ".join(notes) if notes else "")


def record_claim(chapter: str, claim_id: str, claim: str, paper: str, *, baseline: Optional[Sequence[Dict]] = None,
                 treatment: Optional[Sequence[Dict]] = None, metric: str = "final_test_acc", scale: float = 100.0,
                 unit: str = "points", ours: Optional[str] = None, verdict: Optional[str] = None,
                 records: Optional[Sequence[Dict]] = None, store: Optional[RunStore] = None,
                 direction: str = "better", run=None) -> Dict:
    """Store (and return) the verdict of one paper claim tested by ``chapter``.

    ``claim`` is what the paper says, ``paper`` the paper's number or wording for it. Either give
    ``baseline`` and ``treatment`` run records (the claim is "the treatment is better on ``metric``";
    ``ours`` and ``verdict`` are computed, unless ``verdict`` is given to override the mapping with a
    stated ``ours``), or give ``ours`` (text computed from records) and ``verdict`` (one of
    :data:`VERDICTS`) with ``records`` for provenance.

    ``direction``: ``"better"`` (the treatment beats the baseline: ``compare``'s verdict, "contradicted"
    becoming "not supported") or ``"different"`` (a claim of a difference of either sign: supported when
    it exceeds two standard errors, else inconclusive). ``run`` (the chapter's
    :class:`lossdecay_lib.records.ChapterRun`) gives the provenance of a check that trains nothing and
    so has no run records. Returns the stored claim.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {list(_DIRECTIONS)}, got {direction!r}")
    for what, value in (("claim", claim), ("paper", paper)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what} must be a non-empty text, got {value!r}")
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {list(VERDICTS)}, got {verdict!r}")
    if (baseline is None) != (treatment is None):
        raise ValueError("give both baseline and treatment (lists of run records), or neither")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    comparison = None
    all_records: List[Dict] = list(records or [])
    if baseline is not None:
        baseline, treatment = list(baseline), list(treatment)
        if not baseline or not treatment:
            raise ValueError(f"baseline and treatment need at least one run record each, "
                             f"got {len(baseline)} and {len(treatment)}")
        all_records = baseline + treatment + all_records
        base, treat = _side(baseline, metric, scale), _side(treatment, metric, scale)  # checks the metric
        cmp = compare(baseline, treatment, metric=metric)
        computed = _FROM_COMPARE[cmp["verdict"].split(" (")[0]]
        if direction == "different" and computed != "inconclusive":
            computed = "supported"
        comparison = {"metric": metric, "direction": direction, "scale": scale, "unit": unit, "diff": cmp["diff"] * scale,
                      "se": cmp["se"] * scale, "compare_verdict": cmp["verdict"], "baseline": base,
                      "treatment": treat}
        if verdict is not None and verdict != computed and ours is None:
            raise ValueError(f"verdict {verdict!r} differs from the comparison's {computed!r}: "
                             "say why in `ours` or leave verdict out")
        if ours is None:
            ours = _ours_text(cmp, base, treat, scale, unit)
        verdict = verdict or computed
    else:
        if ours is None or verdict is None:
            raise ValueError("record_claim needs either baseline= and treatment= run records (a comparison), "
                             "or both ours= (a text computed from records) and verdict= "
                             f"(one of {list(VERDICTS)})")
        if not isinstance(ours, str) or not ours.strip():
            raise ValueError(f"ours must be a non-empty text, got {ours!r}")
    if all_records:
        prov = runs_provenance(all_records)
        if run is not None and run.profile.name != prov["profile"]:
            raise ValueError(f"the chapter's profile {run.profile.name!r} differs from the records' profile "
                             f"{prov['profile']!r}")
        if comparison is None:  # a comparison's text names them per side already
            extra = []
            if prov["diverged"]:
                extra.append(f"{len(prov['diverged'])} of {prov['runs']} runs diverged")
            if prov["negative_weights"]:
                extra.append(f"{len(prov['negative_weights'])} of {prov['runs']} runs trained with negative loss "
                             "weights")
            if extra:
                ours = f"{ours.strip()} ({'; '.join(extra)})"
    elif run is None:
        raise ValueError("record_claim needs records (for provenance) or, for a check without training runs, "
                         "run= (the chapter's ChapterRun)")
    else:
        prov = {"profile": run.profile.name, "runs": 0, "seeds": [run.seed], "devices": [run.info["device_name"]],
                "dates": [run.info["date"]] * 2, "wall_seconds": 0.0, "run_seconds": {}, "finished": 0, "diverged": [],
                "negative_weights": [], "other_status": []}
    entry = {
        "chapter": chapter, "claim_id": claim_id, "claim": claim.strip(), "paper": paper.strip(),
        "ours": ours.strip(), "verdict": verdict, "profile": prov["profile"], "provenance": prov,
        "comparison": comparison,
    }
    write_json_atomic(claim_path(chapter, claim_id, prov["profile"], store), entry)
    return entry


def load_claims(profile: str, store: Optional[RunStore] = None) -> List[Dict]:
    """The stored claims of one profile, sorted by chapter then claim id."""
    _check_name("profile", profile)
    folder = claims_dir(store)
    if not folder.is_dir():
        return []
    claims = [read_json(p) for p in sorted(folder.glob(f"*--*--{profile}.json"))]
    claims = [c for c in claims if c.get("profile") == profile]
    return sorted(claims, key=lambda c: (c["chapter"], c["claim_id"]))


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _provenance_text(prov: Dict) -> str:
    """Short: profile, runs, seeds, training minutes (devices and dates are in the claim's provenance)."""
    if not prov.get("runs"):
        return f"{prov['profile']} profile, no training runs"
    seeds = prov["seeds"]
    seed_text = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else f"seeds {', '.join(map(str, seeds))}"
    return f"{prov['profile']} profile, {prov['runs']} runs, {seed_text}, {prov['wall_seconds'] / 60:.0f} min"


def verdict_table(claims: Iterable[Dict], link=lambda chapter: chapter,
                  title=lambda chapter: chapter.replace("_", " ")) -> str:
    """A Markdown table of claims: chapter (linked), claim, paper, ours (with provenance), verdict."""
    rows = []
    for c in claims:
        rows.append([f"[{_cell(title(c['chapter']))}]({link(c['chapter'])})", _cell(c["claim"]), _cell(c["paper"]),
                     _cell(f"{c['ours']}; *{_provenance_text(c['provenance'])}*"), f"**{c['verdict']}**"])
    return markdown_table(["chapter", "claim", "paper", "ours", "verdict"], rows)
