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
# # Reproducing this book
#
# Everything on these pages was computed by the chapters themselves, executed with papermill; this page
# says what they need, how big each profile is, how long each chapter took when it was measured, and how
# to rerun one of them at another scale, with another seed, or on your own copy of the data. Its tables
# are read from the checkout (`requirements.txt`, `lossdecay_lib.profiles`, the record store), not typed.

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
profile = "auto"  # smoke | cpu | gpu | paper | auto
seed = 0  # unused here; every chapter takes it
data_root = None  # unused here; every chapter takes it
force = False  # unused here: this page trains nothing

# %% tags=["hide-input"]
from dataclasses import asdict, fields
from importlib import metadata

from IPython.display import Markdown, display

from lossdecay_lib.campaign import cost
from lossdecay_lib.chapters import (execution_timings, list_chapters, load_timings,
                                    repo_root, timings_path)
from lossdecay_lib.experiments import BUDGETS, CHAPTERS
from lossdecay_lib.plots import plot_chapter_times
from lossdecay_lib.profiles import PROFILES, Profile, get_profile
from lossdecay_lib.provenance import start_chapter
from lossdecay_lib.runs import RunStore
from lossdecay_lib.tables import cost_table, markdown_table
from lossdecay_lib.verdict import chapter_titles, load_claims

run = start_chapter(profile=profile, seed=seed)
root = repo_root()
chapters = list_chapters(root)
titles = chapter_titles(root)
shown = lambda path: (  # noqa: E731
    path.relative_to(root) if path.is_relative_to(root) else path)

# %% [markdown]
# ## The environment
#
# `make book` and `make test` create `.venv/` and install these pinned packages (`requirements.txt`;
# `environment.yml` has the same pins for conda), then the library itself in editable mode. The right
# column is what the kernel that executed this page has.

# %% tags=["hide-input"]
rows = []
for line in (root / "requirements.txt").read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, pinned = line.partition("==")
        try:
            here = metadata.version(name)
        except metadata.PackageNotFoundError:
            here = "not installed"
        rows.append([f"`{name}`", pinned or "any", here])
display(Markdown(markdown_table(["package", "pinned", "installed here"], rows)))
print(f"Python {sys.version.split()[0]}; "
      f"lossdecay_lib {metadata.version('lossdecay_lib')}")

# %% [markdown]
# The library alone (`pyproject.toml`) accepts any torch from 2.4 on, e.g. Colab's; each chapter's first
# (hidden) cell installs it from the book's repository when it is missing, so a chapter opened in Colab
# (rocket button at the top of the page, then "Colab") runs as it is. With internet, CIFAR-10 comes
# through torchvision's download the first time a chapter needs it.
#
# ## The profiles
#
# One parameter, `profile`, sets the size of every experiment (`lossdecay_lib/profiles.py`, the only
# place sizes live). Each table below is one chapter's section of the profiles, a column per profile;
# `None` means the whole dataset.

# %% tags=["hide-input"]
names = list(PROFILES)
display(Markdown(markdown_table(
    ["profile", "what it is for", "seeds per setting"],
    [[f"`{n}`", PROFILES[n].description, PROFILES[n].seeds] for n in names])))
for f in fields(Profile):
    # one section of sizes
    if hasattr(getattr(PROFILES[names[0]], f.name), "__dataclass_fields__"):
        section = {n: asdict(getattr(PROFILES[n], f.name)) for n in names}
        keys = list(section[names[0]])
        display(Markdown(f"**`{f.name}`**\n\n" + markdown_table(
            ["size", *(f"`{n}`" for n in names)],
            [[k.replace("_", " "), *(section[n][k] for n in names)] for k in keys])))

# %% [markdown]
# ## How long each chapter takes
#
# The chapter runner (`python -m lossdecay_lib.chapters run`, which `make book` and `make test` call)
# measures each chapter's wall time at every execution and writes it under `_build/`, beside the
# executed notebooks the book is built from (the last column, when the runner executed this page). The
# times kept with the records (`records/timings/<profile>.json`, committed) are replaced only by an
# execution in which the chapter trained at least one run, or when the runner is given
# `--record-times`: rendering the book from the committed records changes no file of the checkout. A
# chapter whose runs are all recorded loads them instead of training, so a kept time with 0 runs
# trained is the time to *render* it (chapters that train nothing, such as this page, are always timed
# that way). The second table gives the training time of the runs behind each chapter's claims, which
# is what a fresh machine spends.

# %% tags=["hide-input"]
timings = {n: load_timings(n) for n in names}
measured = [n for n in names if timings[n]]
this_build = execution_timings()  # {} unless the chapter runner executes this page


def kept(entry):
    """A kept time, with the runs its execution trained (older entries do not say)."""
    trained = entry.get("trained_runs")
    return f"{entry['seconds']:.0f}" + ("" if trained is None else f" ({trained})")


headers = ["chapter", *(f"`{n}` (s)" for n in measured)]
headers += [f"this build, `{run.profile.name}` (s)"] if this_build else []
rows = []
for ch in chapters:
    row = [f"[{titles.get(ch, ch)}]({ch})"]
    row += [kept(timings[n][ch]) if ch in timings[n] else "-" for n in measured]
    if this_build:
        row.append(f"{this_build[ch]['seconds']:.0f}" if ch in this_build else "-")
    rows.append(row)
display(Markdown(markdown_table(headers, rows) if measured or this_build
                 else "No chapter times are kept in this record store yet."))
print("kept times: seconds (runs trained in that execution)")
for n in measured:
    missing = [ch for ch in chapters if ch not in timings[n]]
    dates = sorted(t["date"][:10] for t in timings[n].values())
    print(f"{n}: {len(chapters) - len(missing)} of {len(chapters)} chapters measured, "
          f"{dates[0]} to {dates[-1]}"
          + (f"; not measured:\n  {', '.join(missing)}" if missing else ""))
print("no times kept for: "
      f"{', '.join(n for n in names if n not in measured) or 'none'}\n"
      "(times are kept in "
      f"{shown(timings_path(run.profile.name).parent.resolve())})")

# %%
fig = plot_chapter_times(
    {n: {ch: t["seconds"] for ch, t in timings[n].items()} for n in names},
    chapters, title="Measured execution time per chapter, by profile")

# %% [markdown]
# Training time of the runs behind each chapter's stored claims, by profile (each run counted once,
# from its record's wall time), and the device it was measured on. A chapter may train more runs than
# its claims use (settings shown for context); chapters without training runs (the float64 checks of
# the equivalence chapter) are not listed, their cost is their execution time above.

# %% tags=["hide-input"]
rows = []
for n in names:
    runs, devices = {}, {}
    for c in load_claims(n):
        runs.setdefault(c["chapter"], {}).update(c["provenance"].get("run_seconds", {}))
        devices.setdefault(c["chapter"], set()).update(c["provenance"]["devices"])
    for ch in chapters:
        if runs.get(ch):  # chapters whose claims rest on training runs
            rows.append([f"`{n}`", f"[{titles.get(ch, ch)}]({ch})", len(runs[ch]),
                         f"{sum(runs[ch].values()) / 60:.1f}",
                         ", ".join(sorted(devices[ch]))])
display(Markdown(
    markdown_table(
        ["profile", "chapter", "training runs", "training minutes", "device"], rows)
    if rows else "No claims are stored yet in this record store."))

# %% [markdown]
# ## The training budget of the book's `cpu` profile
#
# The rendered classification chapters rest on the `cpu` profile's runs, which a training campaign
# (`make records PROFILE=cpu`) trains ahead of rendering, two one-thread runs at a time on a 2-core
# machine. Their budget, set before the runs: the four chapters of the paper's classification
# experiments together at most 20 core-hours, the weight-decay chapter's own runs at most 6. Each record
# keeps the CPU time of the process that trained it (`cpu_seconds`), which does not grow when other
# work shares the cores; the first records of the campaign were trained before that was kept, and count
# their wall time instead, an overestimate (the table says how many). Runs still to go are estimated
# from the mean CPU time of the runs finished so far.

# %% tags=["hide-input"]
spent = cost("cpu", list(CHAPTERS), range(get_profile("cpu").seeds), RunStore.default())
linked = lambda ch: f"[{titles.get(ch, ch)}]({ch})"  # noqa: E731
display(Markdown(cost_table(spent, BUDGETS, name=linked)))

# %% [markdown]
# ## Rerunning a chapter
#
# Every chapter has a cell tagged `parameters`: `profile`, `seed` (the first seed; a profile runs
# `seeds` of them from there), `data_root` and `force`. Execute one with papermill, writing outside
# `book/` (papermill must never write over a paired notebook), for instance:

# %%
example = "deep_plain_networks" if "deep_plain_networks" in chapters else chapters[-1]
print(f"papermill book/{example}.ipynb _build/{example}-gpu.ipynb "
      "-p profile gpu -p seed 3")
print(f"python -m lossdecay_lib.chapters run --only {example} "
      "--profile gpu --seed 3 --out _build/executed")
print("make book PROFILE=gpu        # every chapter, then the HTML book in _build/html")

# %% [markdown]
# **Records.** Every training run writes a JSON record keyed by its configuration (the hash of
# everything that defines it): per-epoch metrics, the weight and learning rate in force, wall time and
# provenance (profile, seed, device, versions, date). A chapter executed again loads its finished
# records instead of training. To retrain, pass `-p force True`. The record store is `records/` in the
# checkout, or the folder named by `$LOSSDECAY_RECORDS` (`make test` points it under `_build/`, so tests
# never touch the committed records). Claims for the Verdict chapter are kept beside the records, in
# `claims/`, and chapter times in `timings/`:

# %% tags=["hide-input"]
store = RunStore.default()
profiles_found = {}
for record in store:
    p = record["provenance"]["profile"]
    profiles_found[p] = profiles_found.get(p, 0) + 1
print(f"record store: {shown(store.root.resolve())}")
print("run records by profile: "
      + (", ".join(f"{p}: {k}" for p, k in sorted(profiles_found.items())) or "none"))

# %% [markdown]
# **Data.** Every dataset is found by one rule: the chapter's `data_root` parameter, else the
# `LOSSDECAY_DATA` environment variable, else the user cache (`$XDG_CACHE_HOME/lossdecay` or
# `~/.cache/lossdecay`). A data root may hold the extracted folders (`cifar-10-batches-py/` or
# `cifar10-jpeg/`, `CamVid/`, `VOCdevkit/VOC2012/`, `facades/`) or the project's archives, which are
# checked against their sha256 and extracted once into a writable cache. To use your own copy:
#
# ```bash
# export LOSSDECAY_DATA=/path/to/datasets
# papermill book/deep_plain_networks.ipynb _build/out.ipynb -p profile cpu
# # or, for one chapter only:
# papermill book/deep_plain_networks.ipynb _build/out.ipynb -p data_root /path/to/datasets
# ```
#
# A missing dataset is an error that lists every place searched and how to provide it.

# %% [markdown]
# ## What we learned
#
# The book is reproducible at four scales from one parameter; the `cpu` profile's records are
# committed, so rendering it needs no training, and the times above say what a fresh run of each
# profile costs where it has been measured. Profiles with "not measured" have not been executed on the
# machine whose records this checkout holds.

# %%
wall = run.finish()
