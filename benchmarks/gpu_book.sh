#!/usr/bin/env bash
# Train the gpu profile's chapters on one lent GPU, several runs at once, within a time limit (issue 18).
#
#   usage: benchmarks/gpu_book.sh OUT_DIR TIME_LIMIT_SECONDS
#
# In priority order: the classification chapters of lossdecay_lib.experiments (deep plain networks, death
# convergence, schedules compared, second order, then any later one), trained by one campaign of JOBS
# processes that share the GPU; then pix2pix and segmentation (and any other chapter named in CHAPTERS),
# each executed by its chapter's source (benchmarks/gpu_book.py chapter: no Jupyter needed), pix2pix's runs
# JOBS at a time; a chapter whose data is not found is skipped, said so. Writes into OUT_DIR:
#   records/          the run records (LOSSDECAY_RECORDS), the chapters' claims, checkpoints of unfinished runs
#   timings.json      per chapter: runs finished of total, the runs' own seconds, when it was done; the whole
#   gpu_book.log      everything printed;  steps.tsv  each step's start, end and how it ended
#   records.tar.gz    records/ and timings.json without checkpoints (what to bring back and commit)
# At the time limit the step in flight is stopped (SIGTERM to its process group) and later steps are not
# started: every finished record is kept (records are written atomically), an unfinished run keeps its last
# checkpoint, and the same command with the same OUT_DIR resumes there. Exit 0 when every step finished or
# the time limit stopped them; 1 when a step failed; 2 on bad arguments.
#
# Environment: PROFILE (default gpu; smoke for a dry run on a CPU), JOBS (runs at once; default half the
# cores with a GPU, else the cores), CHAPTERS (names, default all in priority order), PYTHON (default
# .venv/bin/python, else python3), LOSSDECAY_DATA (default ../shared/data or shared/data beside the
# checkout), WHEELS (a folder of wheels installed first with pip --no-index, e.g. schedulefree where the
# machine lacks it; default .whl when it holds any), MPS (1, the default: start CUDA MPS, checked, so that
# the kernels of the runs share the GPU at once; 0: plain time-sharing).
set -uo pipefail

if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -le 0 ]; then
    echo "usage: $0 OUT_DIR TIME_LIMIT_SECONDS" >&2
    exit 2
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1/records" && OUT=$(cd "$1" && pwd)
LIMIT=$2
STARTED=$(date +%s.%N)
DEADLINE=$(( ${STARTED%.*} + LIMIT ))
LOG=$OUT/gpu_book.log
STEPS=$OUT/steps.tsv
FAILED=0
: > "$STEPS"
cd "$REPO" || exit 1
say() { echo "[gpu_book $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
note() { printf '%s\t%s\t%s\t%s\n' "$1" "$(date +%s.%N)" "$(date +%s.%N)" "$2" >> "$STEPS"; }

# step NAME COMMAND...: run COMMAND until the deadline, log what it prints, its times and how it ended.
step() {
    local name=$1 left rc status t0
    shift
    left=$(( DEADLINE - $(date +%s) ))
    if [ "$left" -le 0 ]; then
        say "$name: not started (time limit)"
        note "$name" "not started (time limit)"
        return 0
    fi
    say "$name: starting, $left s left"
    t0=$(date +%s.%N)
    timeout --signal=TERM --kill-after=15 "$left" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status="finished" ;;
        124|137) status="stopped at the time limit" ;;
        *) status="failed (exit $rc)"; FAILED=1 ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$t0" "$(date +%s.%N)" "$status" >> "$STEPS"
    say "$name: $status"
}

# -- the environment: python, packages, data, threads ----------------------------------------------------
PY=${PYTHON:-}
[ -z "$PY" ] && { [ -x "$REPO/.venv/bin/python" ] && PY=$REPO/.venv/bin/python || PY=python3; }
PROFILE=${PROFILE:-gpu}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export LOSSDECAY_RECORDS=$OUT/records LOSSDECAY_PROGRESS=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
WHEELS=${WHEELS:-$REPO/.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    say "installing $(ls "$WHEELS"/*.whl | wc -l) wheel(s) from $WHEELS"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$OUT/.site" "$WHEELS"/*.whl 2>&1 | tee -a "$LOG"
    export PYTHONPATH="$PYTHONPATH:$OUT/.site"
fi
if [ -z "${LOSSDECAY_DATA:-}" ]; then
    for d in "$REPO/../shared/data" "$REPO/shared/data"; do
        [ -d "$d" ] && { LOSSDECAY_DATA=$(cd "$d" && pwd); export LOSSDECAY_DATA; break; }
    done
fi
GPU=0
nvidia-smi -L > /dev/null 2>&1 && GPU=1
CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS, set to 1 above
if [ "$GPU" = 1 ]; then JOBS=${JOBS:-$(( CORES / 2 > 1 ? CORES / 2 : 1 ))}; else JOBS=${JOBS:-$CORES}; fi
say "profile $PROFILE, $JOBS runs at once, limit $LIMIT s, python $PY, data ${LOSSDECAY_DATA:-(user cache)}, out $OUT"

# -- CUDA MPS: the runs' kernels share the GPU at once instead of taking turns ---------------------------
MPS_STATE=off
MPS_CONTROL=$(PATH=$PATH:/usr/local/nvidia/bin command -v nvidia-cuda-mps-control || true)
if [ "$GPU" = 1 ] && [ "${MPS:-1}" = 1 ] && [ -n "$MPS_CONTROL" ]; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/gpu_book_mps_$$/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/gpu_book_mps_$$/log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if "$MPS_CONTROL" -d && timeout 90 "$PY" -c "import torch; assert torch.ones(2, device='cuda').sum().item() == 2"; then
        MPS_STATE=on
        trap 'echo quit | "$MPS_CONTROL" > /dev/null 2>&1' EXIT
    else
        echo quit | "$MPS_CONTROL" > /dev/null 2>&1
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        MPS_STATE="failed to start: the runs take turns on the GPU"
    fi
    say "CUDA MPS: $MPS_STATE"
fi

# -- the chapters, in priority order ------------------------------------------------------------------------
step check "$PY" benchmarks/gpu_book.py check --chapters-file "$OUT/.classification"
CHECKED=$(awk -F'\t' '$1 == "check" {print $4}' "$STEPS")
CLASSIFICATION=$(cat "$OUT/.classification" 2> /dev/null)
read -r -a WANTED <<< "${CHAPTERS:-$CLASSIFICATION pix2pix segmentation}"
CLASSES=()
OTHERS=()
for name in "${WANTED[@]}"; do
    if [[ " $CLASSIFICATION " == *" $name "* ]]; then CLASSES+=("$name"); else OTHERS+=("$name"); fi
done
if [ "$CHECKED" != finished ]; then
    say "the environment check did not finish ($CHECKED): nothing trained"
elif [ "$FAILED" = 0 ]; then
    if [ ${#CLASSES[@]} -gt 0 ]; then
        step classification "$PY" -m lossdecay_lib.campaign --profile "$PROFILE" --chapters "${CLASSES[@]}" --jobs "$JOBS"
    fi
    for name in "${OTHERS[@]}"; do
        case $name in
            pix2pix) dataset=facades ;;
            segmentation) dataset=camvid ;;
            *) dataset= ;;
        esac
        if [ ! -f "book/$name.py" ]; then
            say "$name: no such chapter (book/$name.py)"
            note "$name" "failed (no such chapter)"
            FAILED=1
            continue
        fi
        if [ -n "$dataset" ] && [ $(( DEADLINE - $(date +%s) )) -gt 0 ] \
                && ! "$PY" benchmarks/gpu_book.py has-data "$dataset" >> "$LOG" 2>&1; then
            say "$name: skipped, no $dataset data (LOSSDECAY_DATA=${LOSSDECAY_DATA:-unset})"
            note "$name" "skipped: no $dataset data"
            continue
        fi
        step "$name" "$PY" benchmarks/gpu_book.py chapter "$name" --profile "$PROFILE" --jobs "$JOBS"
    done
fi

# -- what is left after a stop, the timings, the archive ------------------------------------------------------
find "$OUT/records" -name '.partial-*' -delete 2> /dev/null  # temporary files of writes a stop cut short
"$PY" benchmarks/gpu_book.py timings --out "$OUT" --profile "$PROFILE" --chapters "${CLASSES[@]}" "${OTHERS[@]}" \
    --started "$STARTED" --limit "$LIMIT" --jobs "$JOBS" --mps "$MPS_STATE" 2>&1 | tee -a "$LOG"
tar -czf "$OUT/records.tar.gz" -C "$OUT" --exclude='*.ckpt.pt' records timings.json
say "done in $(( $(date +%s) - ${STARTED%.*} )) s; records in $OUT/records, timings in $OUT/timings.json"
exit "$FAILED"
