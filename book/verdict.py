# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Verdict
#
# Every chapter that tests a claim of the paper stores its verdict when it is executed
# (`lossdecay_lib.verdict.record_claim`): the claim, the paper's own number or words, our result with
# its spread over seeds, and the provenance of the runs behind it. This page gathers the stored claims
# of the profile in its header; nothing in its tables is typed in. It is the last chapter of the book,
# so when the book is executed it sees the claims of every chapter executed before it.
#
# How the verdicts are reached: a claim that one setting beats another is **supported** when the
# difference of the mean final-epoch metric exceeds two standard errors (over seeds) in the paper's
# direction, **not supported** when it exceeds two standard errors the other way, and **inconclusive**
# otherwise, or with fewer than two seeds (a claim of a *difference*, either way, is supported beyond two
# standard errors of either sign). A claim about *when* or *whether* something happens is supported
# when every run shows it, not supported when fewer than half do, and inconclusive in between; its row
# says what was counted. In the "ours" column a difference comes with its standard error ("+1.2 ± 0.8
# points"), each side of it as mean ± standard deviation over seeds, then the profile, runs, seeds,
# device, training time and date of the records behind it.

# %% tags=["remove-cell"]
# Colab, or anywhere the library is missing: install it quietly, pinned to the book's branch.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("lossdecay_lib") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "lossdecay_lib @ git+https://github.com/lossdecay/lossdecay@main"], check=True)
    importlib.invalidate_caches()

# %% tags=["parameters"]
profile = "auto"  # smoke | cpu | gpu | paper | auto: whose stored claims to show
seed = 0  # unused here (the claims carry the seeds of their runs); every chapter takes it
data_root = None  # unused here; every chapter takes it
force = False  # unused here: this page trains nothing, it reads the stored claims

# %%
from collections import Counter

from IPython.display import Markdown, display

from lossdecay_lib.chapters import list_chapters, repo_root
from lossdecay_lib.plots import plot_claim_differences
from lossdecay_lib.records import start_chapter
from lossdecay_lib.runs import markdown_table
from lossdecay_lib.verdict import chapter_titles, claims_dir, load_claims, verdict_table

run = start_chapter(profile=profile, seed=seed)
claims = load_claims(run.profile.name)
print(f"{len(claims)} claims of the '{run.profile.name}' profile stored")

# %% [markdown]
# ## All claims

# %% tags=["hide-input"]
try:  # in a checkout: chapter titles, and which chapters test claims (their source calls record_claim)
    root = repo_root()
    chapters = [n for n in list_chapters(root) if n != "verdict"]
    testing = [n for n in chapters if "record_claim(" in (root / "book" / f"{n}.py").read_text()]
    titles = chapter_titles(root)
except FileNotFoundError:  # e.g. Colab without a checkout: only the claims stored in this session
    chapters, testing, titles = [], [], {}
claims.sort(key=lambda c: chapters.index(c["chapter"]) if c["chapter"] in chapters else len(chapters))  # book order
display(Markdown(verdict_table(claims, title=lambda ch: titles.get(ch, ch).split(" (")[0])))
devices = sorted({d for c in claims for d in c["provenance"]["devices"]})
dates = sorted(d for c in claims for d in c["provenance"]["dates"])
if claims:
    print(f"devices: {'; '.join(devices)}\nruns and checks dated {dates[0][:10]} to {dates[-1][:10]}")

# %% [markdown]
# The same comparisons as a picture: each dot is the difference between the two settings a claim
# compares (the paper's setting minus its baseline), with two standard errors either side; a claim
# holds where the whole bar lies right of zero.

# %%
fig = plot_claim_differences(claims, title=f"Claims tested by a comparison ({run.profile.name} profile)")

# %% [markdown]
# ## By chapter
#
# How many claims each chapter tested, and how they came out. A chapter that tests claims but has none
# stored for this profile has not been executed in this profile (in this record store) yet.

# %% tags=["hide-input"]
short = lambda name: titles.get(name, name).split(" (")[0]  # noqa: E731
names = testing + sorted({c["chapter"] for c in claims} - set(testing))
rows = []
for name in names + [None]:  # None: all chapters together
    n = Counter(c["verdict"] for c in claims if name is None or c["chapter"] == name)
    label = "**all chapters**" if name is None else f"[{short(name)}]({name})"
    rows.append([label, "not executed in this profile", "-", "-", "-"] if not n else
                [label, sum(n.values()), n["supported"], n["not supported"], n["inconclusive"]])
display(Markdown(markdown_table(["chapter", "claims", "supported", "not supported", "inconclusive"], rows)))
missing = [name for name in testing if not any(c["chapter"] == name for c in claims)]
print(f"chapters not executed in the '{run.profile.name}' profile: {', '.join(missing) or 'none'}")
store = claims_dir().resolve()
print(f"claims read from {store.relative_to(root) if testing and store.is_relative_to(root) else store}")

# %% [markdown]
# ## What we learned
#
# The claims by verdict, computed from the stored claims of this page's profile:

# %%
lines = []
for verdict in ("supported", "not supported", "inconclusive"):
    these = [c for c in claims if c["verdict"] == verdict]
    lines.append(f"- **{verdict}**: {len(these)} of {len(claims)} claims"
                 + "".join(f"\n  - [{short(c['chapter'])}]({c['chapter']}): {c['claim']}" for c in these))
display(Markdown("\n".join(lines)))

# %% [markdown]
# These are the book's answers at the scale of the profile in the header, no further. In the `cpu`
# profile, on which the rendered book was executed (small networks, small subsets of the data, tens of
# epochs, three seeds), **no claim of the paper is supported**. Where the measurement contradicts it,
# the verdict is "not supported": the late accuracy jump of death convergence does not come in the last
# tenth of training; the paper's weighting is far *behind* the runner-up it claims to lead (Fig. 4c);
# for plain SGD, loss decay *is* learning-rate decay, to the last bit; the curvature term $g^T H g$ grows
# at most about threefold, not tenfold, and the accuracy jumps do not follow the stability crossing. The other
# claims are "inconclusive": their differences lie within two standard errors of zero at this scale,
# which the `gpu` and `paper` profiles may settle (`-p profile gpu` for every chapter, then this page).

# %%
wall = run.finish()
