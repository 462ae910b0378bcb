#!/usr/bin/env bash
# Runs a grid of the study: Table 1 (or a row or column of it), Table 2, the
# width and architecture sweeps, a figure's runs, the Fashion-MNIST configs.
#
#   scripts/sweep.sh <grid> [--root DIR] [--match REGEX] [--dry-run] [--jobs N]
#                    [--emit lines|slurm] [-- extra train_and_eval.py flags]
#
#   scripts/sweep.sh table1:rotation --root /runs --dry-run      # what would run
#   scripts/sweep.sh miniature           # the Fashion-MNIST miniature (2 jobs at a time)
#   scripts/sweep.sh table1 --root /runs -- --data_dir=/data/tfds
#   scripts/sweep.sh table1:resnet50_v1 --root /runs --emit lines | parallel -j4
#   scripts/sweep.sh table1 --root /runs --emit slurm && sbatch /runs/sweep-table1.sbatch
#   PYTHON=~/envs/ssl/bin/python scripts/sweep.sh table2 --root /runs   # your interpreter
#
# Grids: `python -m study.grid grids` lists them (table1,
# table1:<task>, table1:<trunk>, table2, widths, architectures, fig3, fig5,
# fig6, fig7, fig8, fashion_mnist, miniature); table1:<task> and miniature:<task>
# also take a task the paper never ran, once its config exists
# (configs/common/<task>_imagenet.gin, configs/miniature/<task>.gin). Each run has
# its own workdir under the root, named like the run (table1/rotation/revnet50_k16).
#
# Locally, runs go one after another: a run whose results.json already holds
# everything it asks for is skipped, an interrupted one resumes (train_and_eval.py
# continues from its workdir), a failing one is logged (<workdir>/sweep.log)
# and the sweep goes on; the end prints done / failed / skipped, and the exit
# status is 1 if any run failed. A preempted run (SIGTERM: it saved a
# checkpoint and exited 75) stops the sweep with status 75; rerun it to go on.
# So does a SIGTERM or SIGINT (scancel, a time limit, Ctrl-C) sent to the
# sweep's process group: the running run saves and exits 75, the sweep prints
# its summary and exits 75.
#
# --jobs N runs N workdirs at a time (the runs of one workdir stay in order),
# each process given cores / N threads (TF_NUM_INTRAOP_THREADS); its output
# goes to <workdir>/sweep.log only. Small models use a core better alone than
# shared, so the miniature defaults to one job per core (at most 2); every
# other grid to 1.
#
# --emit lines prints one shell command per workdir still to do (runs that share
# a workdir, e.g. Table 2 on top of its Table 1 cell, are joined with &&), for any
# queue. --emit slurm writes <root>/sweep-<grid>.sbatch: an array job, one task
# per workdir, its log in <root>/slurm-logs/. Run table1 before the grids that
# evaluate its cells (table2, fig3, fig5, fig7, fig8) on a cluster, or after:
# never at the same time on the same workdirs.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-2}"; }

GRID="" RUN_ROOT="$REPO/workdirs" MATCH="" DRY=0 EMIT="" JOBS=""
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --root) RUN_ROOT="$2"; shift 2 ;;
    --root=*) RUN_ROOT="${1#*=}"; shift ;;
    --match) MATCH="$2"; shift 2 ;;
    --match=*) MATCH="${1#*=}"; shift ;;
    --dry-run) DRY=1; shift ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --jobs=*) JOBS="${1#*=}"; shift ;;
    --emit) EMIT="$2"; shift 2 ;;
    --emit=*) EMIT="${1#*=}"; shift ;;
    -h|--help) usage 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    -*) echo "sweep.sh: unknown option $1" >&2; usage ;;
    *) if [ -n "$GRID" ]; then echo "sweep.sh: one grid at a time ($GRID, $1)" >&2; usage; fi
       GRID="$1"; shift ;;
  esac
done
[ -n "$GRID" ] || { echo "sweep.sh: name a grid, e.g. table1:rotation" >&2; usage; }
case "$EMIT" in ""|lines|slurm) ;; *) echo "sweep.sh: --emit lines or --emit slurm, not '$EMIT'" >&2; exit 2 ;; esac
CORES="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
if [ -z "$JOBS" ]; then
  JOBS=1
  [ "$GRID" = miniature ] && JOBS=$(( CORES < 2 ? 1 : 2 ))
fi
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "sweep.sh: --jobs takes a positive integer, not '$JOBS'" >&2; exit 2; }
mkdir -p "$RUN_ROOT"
RUN_ROOT="$(cd "$RUN_ROOT" && pwd)"

# PYTHON=/path/to/python runs everything with that interpreter, as it is.
# Otherwise planning needs only the standard library, running the project's
# env (made on first use by scripts/setup_env.sh).
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ "$DRY" = 1 ] || [ -n "$EMIT" ]; then
  PY="$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || command -v python3 )"
else
  source "$REPO/scripts/setup_env.sh"
fi
EXTRA_Q=""
for a in ${EXTRA[@]+"${EXTRA[@]}"}; do EXTRA_Q+=" $(printf '%q' "$a")"; done

# The planner (study/grid/) decides what is done by reading each workdir
# through training/workdir.py; it runs from the checkout, as `python -m` does.
PLAN="$(cd "$REPO" && "$PY" -m study.grid plan "$GRID" --root "$RUN_ROOT" --python "$PY")"
STATES=() NAMES=() WORKDIRS=() COMMANDS=()
while IFS=$'\t' read -r state name workdir command; do
  [ -n "$name" ] || continue
  if [ -n "$MATCH" ] && ! [[ "$name" =~ $MATCH ]]; then continue; fi
  STATES+=("$state"); NAMES+=("$name"); WORKDIRS+=("$workdir"); COMMANDS+=("$command$EXTRA_Q")
done <<< "$PLAN"
N=${#NAMES[@]}
[ "$N" -gt 0 ] || { echo "sweep.sh: no run of $GRID matches '$MATCH'" >&2; exit 2; }

if [ "$DRY" = 1 ]; then
  n_done=0
  for i in "${!NAMES[@]}"; do
    printf '%-8s %s\n         %s\n' "${STATES[$i]}" "${NAMES[$i]}" "${COMMANDS[$i]}"
    [ "${STATES[$i]}" = done ] && n_done=$((n_done + 1))
  done
  echo "[sweep] $GRID: $N runs, $n_done done, $((N - n_done)) to run (dry run: nothing started)."
  exit 0
fi

# One job per workdir, its runs in grid order (for --emit and --jobs).
JOB_DIRS=() JOB_CMDS=() JOB_NAMES=()
for i in "${!NAMES[@]}"; do
  [ "${STATES[$i]}" = done ] && continue
  found=-1
  for j in "${!JOB_DIRS[@]}"; do
    [ "${JOB_DIRS[$j]}" = "${WORKDIRS[$i]}" ] && found=$j
  done
  if [ "$found" -ge 0 ]; then
    JOB_CMDS[$found]+=" && ${COMMANDS[$i]}"; JOB_NAMES[$found]+=" ${NAMES[$i]}"
  else
    JOB_DIRS+=("${WORKDIRS[$i]}"); JOB_CMDS+=("${COMMANDS[$i]}"); JOB_NAMES+=("${NAMES[$i]}")
  fi
done

if [ -n "$EMIT" ]; then
  echo "[sweep] $GRID: ${#JOB_DIRS[@]} workdirs to run, $((N - ${#JOB_DIRS[@]})) runs done or joined." >&2
  if [ "$EMIT" = lines ]; then
    for cmd in ${JOB_CMDS[@]+"${JOB_CMDS[@]}"}; do echo "$cmd"; done
    exit 0
  fi
  [ "${#JOB_DIRS[@]}" -gt 0 ] || { echo "[sweep] nothing to submit." >&2; exit 0; }
  SAFE="${GRID//[^A-Za-z0-9_.-]/_}"
  SCRIPT="$RUN_ROOT/sweep-$SAFE.sbatch"
  mkdir -p "$RUN_ROOT/slurm-logs"
  {
    echo "#!/usr/bin/env bash"
    echo "# Sweep $GRID: one array task per workdir (scripts/sweep.sh --emit slurm)."
    echo "# Add your cluster's resources, e.g. #SBATCH --gres=gpu:8 --time=3-00:00:00"
    echo "#SBATCH --job-name=ssl-$SAFE"
    echo "#SBATCH --array=0-$(( ${#JOB_DIRS[@]} - 1 ))"
    echo "#SBATCH --output=$RUN_ROOT/slurm-logs/$SAFE-%a.log"
    echo "set -euo pipefail"
    echo "cd $(printf '%q' "$REPO")"
    echo "WORKDIRS=("
    for j in "${!JOB_DIRS[@]}"; do echo "  $(printf '%q' "${JOB_DIRS[$j]}")  # $j:${JOB_NAMES[$j]}"; done
    echo ")"
    echo "COMMANDS=("
    for cmd in "${JOB_CMDS[@]}"; do echo "  $(printf '%q' "$cmd")"; done
    echo ")"
    echo 'i=${SLURM_ARRAY_TASK_ID:?run me with sbatch (an array job)}'
    echo 'mkdir -p "${WORKDIRS[$i]}"'
    echo 'echo "[sweep] task $i: ${WORKDIRS[$i]}"'
    echo 'bash -c "${COMMANDS[$i]}" 2>&1 | tee -a "${WORKDIRS[$i]}/sweep.log"'
  } > "$SCRIPT"
  chmod +x "$SCRIPT"
  echo "[sweep] wrote $SCRIPT (${#JOB_DIRS[@]} array tasks); submit: sbatch $SCRIPT" >&2
  echo "$SCRIPT"
  exit 0
fi

if [ "$JOBS" -gt 1 ]; then
  # Local, N workdirs at a time: each job's output in its sweep.log, its exit
  # status in .sweep-rc; this shell only starts, waits and reports.
  THREADS=$(( CORES / JOBS > 0 ? CORES / JOBS : 1 ))
  n_jobs=${#JOB_DIRS[@]}
  n_skip=0
  for st in "${STATES[@]}"; do [ "$st" = done ] && n_skip=$((n_skip + 1)); done
  echo "[sweep] $GRID: $N runs, $n_skip done; $((N - n_skip)) to run in $n_jobs workdirs, $JOBS at a time, $THREADS thread(s) each; logs: <workdir>/sweep.log"
  START=$(date +%s)
  declare -A RUNNING=()
  FAILED=() PREEMPTED=() DONE=()
  reap() {  # collects one finished job (any), or all with "all"
    local pid j rc
    while :; do
      for pid in "${!RUNNING[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
          wait "$pid" 2>/dev/null && rc=0 || rc=$?
          j=${RUNNING[$pid]}; unset "RUNNING[$pid]"
          local took=$(( $(date +%s) - START ))
          if [ "$rc" -eq 0 ]; then
            DONE+=("${JOB_NAMES[$j]}"); echo "[sweep] done    ${JOB_NAMES[$j]} (${took}s into the sweep)"
          elif [ "$rc" -eq 75 ]; then
            PREEMPTED+=("${JOB_NAMES[$j]}"); echo "[sweep] PREEMPTED ${JOB_NAMES[$j]}: checkpoint saved; rerun the sweep to resume"
          elif [ "$SIGNALED" = 1 ]; then
            # Killed by the notice itself: still starting, or the notice came
            # twice (to the group, then passed on by the trap below) and the
            # second reached python after it had saved, while it was exiting
            # with its handlers reset. Not a failure: the rerun resumes.
            PREEMPTED+=("${JOB_NAMES[$j]}"); echo "[sweep] PREEMPTED ${JOB_NAMES[$j]}: stopped by the signal (exit $rc); rerun the sweep to resume from its last checkpoint"
          else
            FAILED+=("${JOB_NAMES[$j]}"); echo "[sweep] FAILED  ${JOB_NAMES[$j]} (exit $rc); log: ${JOB_DIRS[$j]}/sweep.log"
          fi
          [ "$1" = all ] || return 0
        fi
      done
      [ "${#RUNNING[@]}" -eq 0 ] && return 0
      sleep 1 || true  # a signal to the group ends the sleep too (set -e)
    done
  }
  # A notice to the sweep alone is passed on to each run's python (the child
  # of its `bash -c`, which traps it and waits); one to the whole process
  # group (scancel, Ctrl-C) has reached them already. Each saves and exits 75.
  SIGNALED=0
  trap 'SIGNALED=1; for p in "${!RUNNING[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; done' INT TERM
  for j in "${!JOB_DIRS[@]}"; do
    while [ "${#RUNNING[@]}" -ge "$JOBS" ]; do reap one; done
    [ "${#PREEMPTED[@]}" -eq 0 ] && [ "$SIGNALED" = 0 ] || break
    mkdir -p "${JOB_DIRS[$j]}"
    echo "[sweep] $((j + 1))/$n_jobs start ${JOB_NAMES[$j]}"
    TF_NUM_INTRAOP_THREADS=$THREADS TF_NUM_INTEROP_THREADS=$THREADS OMP_NUM_THREADS=$THREADS \
      bash -c "trap : INT TERM; ${JOB_CMDS[$j]}" >> "${JOB_DIRS[$j]}/sweep.log" 2>&1 &
    RUNNING[$!]=$j
  done
  reap all
  echo "[sweep] $GRID: ${#DONE[@]} workdirs done, ${#FAILED[@]} failed, $n_skip runs skipped (already done) in $(( $(date +%s) - START ))s."
  for name in ${FAILED[@]+"${FAILED[@]}"}; do echo "[sweep]   failed: $name"; done
  [ "${#PREEMPTED[@]}" -eq 0 ] && [ "$SIGNALED" = 0 ] || exit 75
  [ "${#FAILED[@]}" -eq 0 ]
  exit $?
fi

# Local: one after another. A SIGTERM or SIGINT to the process group reaches
# the running run, which saves and exits 75; the sweep, trapping both, waits
# for that, then stops with its summary. The run's `bash -c` traps them too
# (so it waits for the run instead of dying first; exec resets the trap, so
# python starts with the default handlers its own replace), and tee ignores
# them, so the run's last lines still reach the log.
SIGNALED=0
trap 'SIGNALED=1' INT TERM
DONE=() FAILED=() SKIPPED=() PREEMPTED=()
for i in "${!NAMES[@]}"; do
  name="${NAMES[$i]}" workdir="${WORKDIRS[$i]}"
  if [ "${STATES[$i]}" = done ]; then
    echo "[sweep] $((i + 1))/$N $name: done, skipped."
    SKIPPED+=("$name"); continue
  fi
  what=$([ "${STATES[$i]}" = partial ] && echo "resuming" || echo "starting")
  echo "[sweep] $((i + 1))/$N $name: $what in $workdir"
  mkdir -p "$workdir"
  set +e
  bash -c "trap : INT TERM; ${COMMANDS[$i]}" 2>&1 | (trap '' INT TERM; exec tee -a "$workdir/sweep.log")
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$SIGNALED" = 1 ] && [ "$rc" -ne 75 ]; then
    # The notice came before the run could take it (still starting) or after
    # it finished: nothing to save, but the sweep stops as preempted.
    [ "$rc" -eq 0 ] && DONE+=("$name")
    echo "[sweep] $name: stopped by a signal (exit $rc); rerun the sweep to go on"
    PREEMPTED+=("$name")
    break
  fi
  if [ "$rc" -eq 0 ]; then
    DONE+=("$name")
  elif [ "$rc" -eq 75 ]; then
    # train_and_eval.py saved a checkpoint on SIGTERM: not a failure.
    echo "[sweep] $name PREEMPTED (exit 75): a checkpoint was saved; rerun the sweep to resume it"
    PREEMPTED+=("$name")
    break
  else
    echo "[sweep] $name FAILED (exit $rc); log: $workdir/sweep.log"
    FAILED+=("$name")
  fi
done
echo "[sweep] $GRID: ${#DONE[@]} done, ${#FAILED[@]} failed, ${#SKIPPED[@]} skipped (already done)$( [ "${#PREEMPTED[@]}" -gt 0 ] && echo ", preempted at ${PREEMPTED[0]}: rerun to go on")."
for name in ${FAILED[@]+"${FAILED[@]}"}; do echo "[sweep]   failed: $name"; done
[ "${#PREEMPTED[@]}" -eq 0 ] || exit 75
[ "${#FAILED[@]}" -eq 0 ]
