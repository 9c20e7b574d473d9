"""Execute the book's chapters with papermill and build the HTML book from the executed copies.

The paired sources in ``book/`` are never written to: papermill's output goes under ``_build/`` (writing
over a paired ``.ipynb`` would copy the injected parameters into the source at the next sync).

Command line (from a checkout; ``make book`` and ``make test`` call it)::

    python -m lossdecay_lib.chapters run --profile smoke --out _build/test
    python -m lossdecay_lib.chapters run --only schedules --profile gpu -p seed 3
    python -m lossdecay_lib.chapters build --executed _build/executed

Or run one chapter with papermill directly:
``papermill book/schedules.ipynb _build/out.ipynb -p profile gpu -p seed 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["repo_root", "list_chapters", "execute_chapter", "run_chapters", "chapter_parameters",
           "check_parameter_names", "stage_book", "build_book", "timings_path", "load_timings",
           "execution_timings", "main"]

INJECTED_TAG = "injected-parameters"
# Set by run_chapters for the kernels it starts: the times of the execution in progress (under _build/).
EXECUTION_TIMINGS_ENV = "LOSSDECAY_EXECUTION_TIMINGS"
HIDE_TAG = "remove-cell"


def repo_root(start: Optional[Path] = None) -> Path:
    """The checkout's root: the nearest folder above ``start`` (default: cwd) holding ``_toc.yml``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file() and (d / "book").is_dir():
            return d
    raise FileNotFoundError(f"no _toc.yml with a book/ folder beside it in {here} or above: run this from a checkout")


def list_chapters(root: Path) -> List[str]:
    """Chapter names (``book/<name>.ipynb`` with a paired ``.py``), in the order of ``_toc.yml``."""
    names = []
    for line in (root / "_toc.yml").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        for key in ("- file:", "root:"):
            if line.startswith(key):
                entry = line[len(key):].strip()
                if entry.startswith("book/"):
                    name = entry[len("book/"):]
                    if (root / "book" / f"{name}.py").is_file():
                        names.append(name)
    return names


def _hide_injected_cells(path: Path) -> None:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED_TAG in tags and HIDE_TAG not in tags:
            tags.append(HIDE_TAG)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(nb, indent=1))
    tmp.replace(path)


def execute_chapter(root: Path, name: str, out_dir: Path, parameters: Dict) -> float:
    """Execute ``book/<name>.ipynb`` with ``parameters`` into ``out_dir/<name>.ipynb``; return seconds.

    A chapter that raises makes this raise (papermill's ``PapermillExecutionError``), naming the cell.
    """
    import papermill

    src = root / "book" / f"{name}.ipynb"
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing: run `jupytext --sync book/{name}.py` to create the pair")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    if out.resolve() == src.resolve():
        raise ValueError("refusing to write papermill output over the paired source notebook")
    t0 = time.perf_counter()
    os.environ["LOSSDECAY_PROGRESS"] = "0"  # the kernel inherits it: no progress bars in executed pages
    papermill.execute_notebook(
        str(src), str(out), parameters=parameters, kernel_name="python3", cwd=str(root / "book"),
        progress_bar=False,
    )
    _hide_injected_cells(out)
    return time.perf_counter() - t0


def run_chapters(root: Path, out_dir: Path, parameters: Dict, only: Sequence[str] = (),
                 record_times: bool = False) -> Dict[str, float]:
    """Execute the chapters (all, or ``only``) and return their wall times in seconds.

    Every time goes to ``out_dir/timings.json`` (under ``_build/``). The profile's kept times
    (:func:`timings_path`, committed for the book's profiles) change only for a chapter that trained at
    least one run in this execution (its record store received a record), or for every chapter with
    ``record_times``: rendering the book from existing records leaves the checkout as it was.
    """
    chapters = list_chapters(root)
    unknown = [n for n in only if n not in chapters]
    if unknown:
        raise ValueError(f"unknown chapter(s) {', '.join(unknown)}; chapters: {', '.join(chapters)}")
    check_parameter_names(root, only or chapters, parameters)
    from .checks import check_non_negative_int
    from .profiles import get_profile
    from .provenance import check_parameters
    from .runs import TRAINED_LOG_ENV

    profile = get_profile(str(parameters.get("profile", "auto"))).name  # "auto" becomes cpu or gpu
    check_non_negative_int("seed", parameters.get("seed", 0))
    check_parameters(**{k: v for k, v in parameters.items() if k not in ("profile", "seed", "device")})
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    saved_env = {k: os.environ.get(k) for k in (TRAINED_LOG_ENV, EXECUTION_TIMINGS_ENV)}
    os.environ[EXECUTION_TIMINGS_ENV] = str((out_dir / "timings.json").resolve())
    try:
        for name in only or chapters:
            print(f"executing {name} with {parameters} ...", flush=True)
            log = out_dir / f".trained-{name}.log"  # RunStore.save appends the key of each run it records
            log.unlink(missing_ok=True)
            os.environ[TRAINED_LOG_ENV] = str(log.resolve())  # the kernel (and its workers) inherit it
            timings[name] = round(execute_chapter(root, name, out_dir, parameters), 1)
            trained = len(set(log.read_text().split())) if log.is_file() else 0
            log.unlink(missing_ok=True)
            print(f"  {name}: {timings[name]} s, {trained} run(s) trained", flush=True)
            # merged as soon as the chapter is done, so a later chapter ("Reproducing this book") shows it
            entry = {"seconds": timings[name], "parameters": parameters, "profile": profile,
                     "trained_runs": trained, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
            _merge_timing(out_dir / "timings.json", name, entry)
            if trained or record_times:
                _merge_timing(timings_path(profile), name, entry)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return timings


def timings_path(profile: str, store_root: Optional[Path] = None) -> Path:
    """Where the measured chapter times of a profile are kept: ``<record store>/timings/<profile>.json``.

    The record store is :meth:`lossdecay_lib.runs.RunStore.default` (``records/``, or
    ``$LOSSDECAY_RECORDS``), so the book's profiles keep their times committed beside their records and
    ``make test`` keeps the smoke times under ``_build/``. :func:`run_chapters` writes here only for a
    chapter that trained (or with ``record_times``).
    """
    if store_root is None:
        from .runs import RunStore

        store_root = RunStore.default().root
    return Path(store_root) / "timings" / f"{profile}.json"


def load_timings(profile: str, store_root: Optional[Path] = None) -> Dict[str, Dict]:
    """The measured times of a profile's chapters: ``{chapter: {"seconds", "date", "parameters", ...}}``."""
    path = timings_path(profile, store_root)
    return json.loads(path.read_text()) if path.is_file() else {}


def execution_timings() -> Dict[str, Dict]:
    """The times of the execution in progress, chapter by chapter as each one finishes, when the chapter
    runner (:func:`run_chapters`) executes this kernel; ``{}`` otherwise (e.g. papermill or Colab)."""
    path = os.environ.get(EXECUTION_TIMINGS_ENV)
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}


def _merge_timing(path: Path, name: str, entry: Dict) -> None:
    from .atomic import write_json_atomic

    old = json.loads(path.read_text()) if path.is_file() else {}
    old[name] = entry
    write_json_atomic(path, old)


def chapter_parameters(root: Path, name: str) -> Dict[str, str]:
    """The parameters cell of ``book/<name>.ipynb``: ``{name: default as written}``."""
    import papermill

    found = papermill.inspect_notebook(str(root / "book" / f"{name}.ipynb"))
    return {k: v["default"] for k, v in found.items()}


def check_parameter_names(root: Path, chapters: Sequence[str], parameters: Dict) -> None:
    """Refuse, before executing anything, a parameter that none of ``chapters`` declares.

    Papermill itself only warns and injects it anyway, so a typo (``-p profil gpu``) would run every
    chapter at its defaults. The values are checked by each chapter's first cell
    (:func:`lossdecay_lib.provenance.start_chapter`).
    """
    declared = set()
    for name in chapters:
        declared |= set(chapter_parameters(root, name))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for {', '.join(chapters)}; "
                         f"valid parameters: {', '.join(sorted(declared))}")


def stage_book(root: Path, executed: Path, site: Path) -> Path:
    """Lay out the book's sources with the executed chapters in place of the paired notebooks.

    Every chapter must have been executed into ``executed``; that is checked before ``site`` is touched.
    """
    missing = [name for name in list_chapters(root) if not (executed / f"{name}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"chapter(s) {', '.join(missing)} not executed into {executed}: run "
                                f"`python -m lossdecay_lib.chapters run --out {executed}` (or `make book`) first")
    if site.exists():
        shutil.rmtree(site)
    (site / "book").mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / f, site / f)
    if (root / "_static").is_dir():  # the book's CSS (Jupyter Book includes every .css of _static)
        shutil.copytree(root / "_static", site / "_static")
    for md in (root / "book").glob("*.md"):
        shutil.copy2(md, site / "book" / md.name)
    for name in list_chapters(root):
        shutil.copy2(executed / f"{name}.ipynb", site / "book" / f"{name}.ipynb")
    return site


def build_book(root: Path, executed: Path, path_output: Optional[Path] = None) -> Path:
    """Build the HTML book from the executed chapters into ``<path_output>/_build/html``.

    ``path_output`` defaults to the checkout (so ``_build/html``). Fails on any Sphinx warning.
    """
    path_output = Path(path_output or root).resolve()
    site = stage_book(root, executed, path_output / "_build" / "site")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(site), "--path-output", str(path_output),
           "-W", "--keep-going", "-n", "--quiet"]
    subprocess.run(cmd, check=True)
    return path_output / "_build" / "html"


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``error: ...``) and exit status 2."""

    def error(self, message):
        _fail(f"{message} (see {self.prog} --help)")


def _fail(message: str) -> None:
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line. Bad input (an unknown profile, chapter or parameter, a bad value, a missing
    executed chapter) is answered with one line ``error: ...`` on stderr and exit status 2."""
    parser = _Parser(prog="python -m lossdecay_lib.chapters", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="execute chapters with papermill")
    run.add_argument("--profile", default="auto")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--only", nargs="*", default=[], help="chapter names (default: all)")
    run.add_argument("--out", default="_build/executed", help="folder for executed notebooks (under _build/)")
    run.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="extra parameter")
    run.add_argument("--jobs", type=int, default=None,
                     help="training runs in parallel processes, one thread each (default: the number of cores)")
    run.add_argument("--record-times", action="store_true",
                     help="keep every chapter's time in the record store's timings/<profile>.json, not only "
                          "those of chapters that trained a run")
    build = sub.add_parser("build", help="build the HTML book from executed chapters")
    build.add_argument("--executed", default="_build/executed")
    build.add_argument("--out", default=None, help="folder that receives _build/html (default: the checkout)")
    args = parser.parse_args(argv)

    try:
        root = repo_root()
        if args.command == "run":
            params = {"profile": args.profile}
            if args.seed is not None:
                params["seed"] = args.seed
            params.update({k: _parse_value(v) for k, v in args.p})
            if args.jobs is not None:
                from .campaign import JOBS_ENV, check_jobs

                os.environ[JOBS_ENV] = str(check_jobs(args.jobs))  # the kernels inherit it (train_seeds)
            run_chapters(root, root / args.out, params, args.only, record_times=args.record_times)
        else:
            html = build_book(root, root / args.executed, root / args.out if args.out else None)
            print(f"book built: {html / 'index.html'}")
    except (ValueError, FileNotFoundError) as e:  # bad input: the message says what and how to fix it
        _fail(str(e))
    except subprocess.CalledProcessError as e:  # jupyter-book printed its warnings above
        print(f"error: the book did not build ({' '.join(map(str, e.cmd[:2]))} exited with {e.returncode}); "
              "its messages are above", file=sys.stderr)
        return 1
    except Exception as e:
        if type(e).__name__ != "PapermillExecutionError":
            raise
        print(f"error: a chapter raised; its executed copy in {args.out} shows the cell:{e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
