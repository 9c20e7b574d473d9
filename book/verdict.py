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
# ````{admonition} At a glance
# :class: tip
# The claims of the profile {glue:md}`verdict-profile` stored by the chapters, in words, at the p
# adjusted across all of them (the tables below give every number):
#
# ```{glue:md} verdict-glance
# :format: myst
# ```
# ````
#
# Every chapter that tests a claim of the paper stores its verdict when it is executed
# (`lossdecay_lib.verdict.claim_from_comparison` or `stated_claim`): the claim, the paper's own number
# or words, our result with its spread over seeds and its test, and the provenance of the runs behind
# it. This page gathers the stored claims
# of the profile in its header; nothing in its tables is typed in. It is the last chapter of the book,
# so when the book is executed it sees the claims of every chapter executed before it.
#
# How the verdicts are reached. A claim that one setting beats another (or that something happens more
# under loss decay than under a control) is a comparison of one number per run between the two, tested
# with Welch's t-test, two-sided at 5% (`lossdecay_lib.statistics`, scipy's tests): **supported** when
# the difference lies in the paper's direction with p < 0.05, **contradicted** when it lies the other
# way with p < 0.05, **inconclusive** otherwise. A claim whose precondition did not occur in the runs
# (stated in its chapter and checked from the records, e.g. "the runs reach a plateau") is
# **untestable at this scale**, whatever its test says. A few claims are identities of the update rule
# or deterministic models, decided by a stated rule instead of a test.
#
# With some thirty claims tested at once, a few would pass at 5% by chance alone, so the table gives
# beside each p the p adjusted across all the book's tested claims (Benjamini-Hochberg: it bounds the
# expected share of false findings among the claims called supported or contradicted), and the verdict
# at that adjusted p (with the claim's own verdict where the adjustment changes it); the summary below
# uses the adjusted verdicts. With three seeds a side an exact
# permutation test, shown beside Welch's, cannot go below p = 0.1: it is a check that needs no
# normality, not the verdict. The "ours" column gives the headline: the difference (the paper's setting
# minus its baseline) with its 95% confidence interval, the metric, and the two sides as mean ±
# standard deviation over their runs, the paper's setting first. Every side by name, the test, and the
# profile, runs, seeds and training time of the records behind each claim are under
# "What we learned", at the end of this page.

# %% tags=["remove-cell"]
# Colab, or anywhere the library is missing: install it quietly, pinned to the book's branch.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("lossdecay_lib") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "lossdecay_lib @ git+https://github.com/lossdecay/lossdecay@main"], check=True)
    importlib.invalidate_caches()

# %% tags=["parameters", "hide-input"]
profile = "auto"  # smoke | cpu | gpu | paper | auto: whose stored claims to show
seed = 0  # unused here (claims carry the seeds of their runs); every chapter takes it
data_root = None  # unused here; every chapter takes it
force = False  # unused here: this page trains nothing, it reads the stored claims

# %% tags=["hide-input"]
from IPython.display import Markdown, display
from myst_nb import glue

from lossdecay_lib.chapters import list_chapters, repo_root
from lossdecay_lib.plots import plot_claim_differences
from lossdecay_lib.provenance import start_chapter
from lossdecay_lib.tables import markdown_table
from lossdecay_lib.verdict import (VERDICTS, adjust_claims, chapter_titles,
                                   chapters_with_claims, claims_dir, claims_summary,
                                   load_claims, verdict_counts, verdict_sentences,
                                   verdict_table)

run = start_chapter(profile=profile, seed=seed)
claims = adjust_claims(load_claims(run.profile.name))
print(f"{len(claims)} claims of the '{run.profile.name}' profile stored")
glue("verdict-profile", Markdown(f"`{run.profile.name}`"), display=False)
glue("verdict-glance", Markdown(verdict_sentences(claims)), display=False)

# %% [markdown]
# ## All claims
#
# First the paper's claims, then the comparisons the book adds (today's baselines, our own schedules);
# the adjusted p is computed across both.

# %% tags=["hide-input"]
try:  # in a checkout: chapter titles, and which chapters store claims
    root = repo_root()
    chapters = [n for n in list_chapters(root) if n != "verdict"]
    testing = chapters_with_claims(root, chapters)
    titles = chapter_titles(root, short=True)
except FileNotFoundError:  # e.g. Colab without a checkout: the claims of this session
    chapters, testing, titles = [], [], {}
order = {name: i for i, name in enumerate(chapters)}
claims.sort(key=lambda c: order.get(c["chapter"], len(chapters)))  # book order
short = lambda name: titles.get(name, name)  # noqa: E731
for source, heading in (("paper", "The paper's claims"),
                        ("book", "Comparisons the book adds")):
    these = [c for c in claims if c["source"] == source]
    if these:
        display(Markdown(f"### {heading}\n\n" + verdict_table(these, title=short)))
devices = sorted({d for c in claims for d in c["provenance"]["devices"]})
dates = sorted(d for c in claims for d in c["provenance"]["dates"])
if claims:
    print(f"devices: {'; '.join(devices)}")
    print(f"runs and checks dated {dates[0][:10]} to {dates[-1][:10]}")

# %% [markdown]
# The same comparisons as a picture: each dot is the difference a claim tests (the paper's setting minus
# its baseline), with its 95% confidence interval; a claim of a gain holds where the whole bar lies
# right of zero.

# %%
fig = plot_claim_differences(
    claims, title=f"Claims tested by a comparison ({run.profile.name} profile)")

# %% [markdown]
# ## By chapter
#
# How many claims each chapter tested, and their verdicts at the adjusted p. A chapter that tests claims
# but has none stored for this profile has not been executed in this profile (in this record store) yet.

# %% tags=["hide-input"]
names = testing + sorted({c["chapter"] for c in claims} - set(testing))
rows = []
for name in names + [None]:  # None: all chapters together
    these = [c for c in claims if name is None or c["chapter"] == name]
    label = "**all chapters**" if name is None else f"[{short(name)}]({name})"
    counts = verdict_counts(these, "verdict_adjusted").values()
    rows.append([label, len(these), *counts] if these else
                [label, "not executed in this profile"] + ["-"] * len(VERDICTS))
display(Markdown(markdown_table(["chapter", "claims", *VERDICTS], rows)))
missing = [name for name in testing if not any(c["chapter"] == name for c in claims)]
print(f"chapters not executed in the '{run.profile.name}' profile: "
      f"{', '.join(missing) or 'none'}")
store = claims_dir().resolve()
inside = testing and store.is_relative_to(root)
print(f"claims read from {store.relative_to(root) if inside else store}")

# %% [markdown]
# ## What we learned
#
# In words, then claim by claim at the adjusted p, with the whole evidence of each claim, its test and
# its runs; all of it generated from the stored claims of this page's profile, so it says no more than
# they do:

# %%
display(Markdown(verdict_sentences(claims)))
for source, heading in (("paper", "The paper's claims"),
                        ("book", "Comparisons the book adds")):
    these = [c for c in claims if c["source"] == source]
    if these:
        display(Markdown(f"**{heading}**\n\n" + claims_summary(
            these, key="verdict_adjusted", link=lambda c: c["chapter"], details=True)))

# %% [markdown]
# These are the book's answers at the scale of the profile in the header, no further: "inconclusive"
# and "untestable at this scale" say that these runs cannot decide a claim, not that it is false. The
# `gpu` and `paper` profiles run the same chapters at larger scale (`-p profile gpu` for every chapter,
# then this page).

# %%
wall = run.finish()
