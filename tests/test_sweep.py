"""scripts/sweep.sh: dry runs, emitted commands and SLURM arrays for the study's
grids, and skip / resume / go-on-after-a-failure on real Fashion-MNIST runs."""
import json
import os
import re
import subprocess
import sys

import pytest

from training import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(ROOT, "scripts", "sweep.sh")


def _sweep(*args, check=True, timeout=120):
  env = dict(os.environ, PYTHON=sys.executable)
  proc = subprocess.run(["bash", SWEEP, *args], capture_output=True, text=True,
                        cwd="/", env=env, timeout=timeout)
  if check:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc


def _finish(workdir, evaluations, steps=100, total_steps=100):
  """A results.json as a run leaves it (finished when steps == total_steps)."""
  os.makedirs(workdir, exist_ok=True)
  with open(workdir_lib.Workdir(workdir).results_json, "w") as f:
    json.dump({"run": {"steps": steps, "total_steps": total_steps}, "pretext": {},
               "evaluations": [dict(e, trunk=f"trained@{steps}") for e in evaluations]},
              f)


TABLE1_ENTRY = dict(protocol="linear_lbfgs", layer="pre_logits", fraction=1.0,
                    eval_split="val", train_split="train")


def test_dry_run_lists_every_table1_cell(tmp_path):
  out = _sweep("table1", "--root", str(tmp_path), "--dry-run").stdout
  lines = out.splitlines()
  assert lines[-1] == ("[sweep] table1: 72 runs, 0 done, 72 to run (dry run: "
                       "nothing started).")
  names = [l.split()[1] for l in lines[:-1:2]]
  assert len(names) == 72 == len(set(names))
  assert names[0] == "table1/random_init/revnet50_k4"
  assert "table1/rotation/revnet50_minus_k16" in names
  command = lines[names.index("table1/jigsaw/vgg19_bn_k8") * 2 + 1].strip()
  assert command.endswith(
      f"train_and_eval.py --config={ROOT}/configs/jigsaw/imagenet_vgg19_bn_k8.gin "
      f"--workdir={tmp_path}/table1/jigsaw/vgg19_bn_k8")
  assert not os.listdir(tmp_path)  # a dry run starts nothing


def test_a_row_a_column_and_match_select_runs(tmp_path):
  row = _sweep("table1:resnet50_v1", "--root", str(tmp_path), "--dry-run").stdout
  assert row.splitlines()[-1].startswith("[sweep] table1:resnet50_v1: 12 runs")
  column = _sweep("table1:exemplar", "--root", str(tmp_path), "--dry-run",
                  "--match", "revnet50_minus").stdout
  assert [l.split()[1] for l in column.splitlines()[:-1:2]] == [
      "table1/exemplar/revnet50_minus_k4", "table1/exemplar/revnet50_minus_k8",
      "table1/exemplar/revnet50_minus_k12"]


def test_unknown_grids_and_options_are_named(tmp_path):
  proc = _sweep("table3", "--root", str(tmp_path), "--dry-run", check=False)
  assert proc.returncode != 0
  assert "Unknown grid 'table3'; known grids: table1, table1:random_init" in proc.stderr
  proc = _sweep("table1", "--emit", "csv", check=False)
  assert proc.returncode == 2 and "--emit lines or --emit slurm" in proc.stderr
  proc = _sweep("table1", "--frobnicate", check=False)
  assert proc.returncode == 2 and "unknown option --frobnicate" in proc.stderr


def test_done_runs_are_skipped_and_a_partial_run_is_resumed(tmp_path):
  root = tmp_path / "runs"
  _finish(str(root / "table1/rotation/revnet50_k4"), [TABLE1_ENTRY])
  # Trained but its evaluation is missing: it must run again (and resume).
  _finish(str(root / "table1/rotation/revnet50_k8"), [])
  # Stopped half way (its entry is the half-trained trunk's).
  _finish(str(root / "table1/rotation/revnet50_k12"), [TABLE1_ENTRY], steps=50)
  out = _sweep("table1:revnet50", "--root", str(root), "--dry-run",
               "--match", "rotation").stdout
  states = dict(reversed(l.split()[:2]) for l in out.splitlines()[:-1:2])
  assert states == {"table1/rotation/revnet50_k4": "done",
                    "table1/rotation/revnet50_k8": "partial",
                    "table1/rotation/revnet50_k12": "partial",
                    "table1/rotation/revnet50_k16": "new"}
  lines = _sweep("table1:revnet50", "--root", str(root), "--emit", "lines",
                 "--match", "rotation").stdout.splitlines()
  assert len(lines) == 3 and not any("revnet50_k4.gin" in l for l in lines)


def test_table2_on_a_finished_cell_still_needs_its_sgd_entry(tmp_path):
  _finish(str(tmp_path / "table1/rotation/revnet50_k16"), [TABLE1_ENTRY])
  out = _sweep("table2", "--root", str(tmp_path), "--dry-run").stdout
  first = out.splitlines()[0].split()
  assert first == ["partial", "table2/rotation/revnet50_k16"]
  assert "configs/common/linear_eval_table2.gin" in out.splitlines()[1]
  _finish(str(tmp_path / "table1/rotation/revnet50_k16"), [
      TABLE1_ENTRY, dict(TABLE1_ENTRY, protocol="linear_sgd", eval_split="test",
                         train_split="trainval")])
  out = _sweep("table2", "--root", str(tmp_path), "--dry-run").stdout
  assert out.splitlines()[0].split() == ["done", "table2/rotation/revnet50_k16"]
  # Its Places run still waits for a Places205 or Places365 entry.
  places = out.splitlines()[8:10]
  assert places[0].split() == ["partial", "table2/rotation/revnet50_k16_places"]
  assert places[1].strip() == (
      f"cd {ROOT} && {sys.executable} -m evaluation --workdir={tmp_path}/table1/"
      f"rotation/revnet50_k16 '--dataset=places205|places365' --protocol=linear_sgd")
  cell = workdir_lib.Workdir(tmp_path / "table1/rotation/revnet50_k16")
  with open(cell.results_json) as f:
    doc = json.load(f)
  doc["run"]["dataset"] = "imagenet2012"
  doc["evaluations"].append(dict(doc["evaluations"][-1], dataset="places365"))
  with open(cell.results_json, "w") as f:
    json.dump(doc, f)
  out = _sweep("table2", "--root", str(tmp_path), "--dry-run").stdout
  assert out.splitlines()[8].split() == ["done", "table2/rotation/revnet50_k16_places"]
  assert out.splitlines()[0].split() == ["done", "table2/rotation/revnet50_k16"]


def test_emitted_slurm_array_has_one_task_per_workdir(tmp_path):
  proc = _sweep("fig7", "--root", str(tmp_path), "--emit", "slurm")
  script = proc.stdout.strip()
  assert script == str(tmp_path / "sweep-fig7.sbatch")
  assert subprocess.run(["bash", "-n", script]).returncode == 0
  text = open(script).read()
  # 22 runs (two fractions per cell) share 11 Table 1 workdirs: a task each,
  # so two runs never write one workdir at the same time.
  assert "#SBATCH --array=0-10\n" in text
  assert f"#SBATCH --output={tmp_path}/slurm-logs/fig7-%a.log" in text
  workdirs = re.findall(rf"^  ({re.escape(str(tmp_path))}/\S+)  # \d+:", text, re.M)
  assert len(workdirs) == 11 == len(set(workdirs))
  assert workdirs[0] == f"{tmp_path}/table1/rotation/revnet50_k4"
  # Running task 3 runs its two commands in its own workdir (python stubbed).
  fake = tmp_path / "bin"
  fake.mkdir()
  log = tmp_path / "calls.txt"
  (fake / "python").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
  os.chmod(fake / "python", 0o755)
  text = text.replace(sys.executable, str(fake / "python"))
  stub = tmp_path / "stub.sbatch"
  stub.write_text(text)
  env = dict(os.environ, SLURM_ARRAY_TASK_ID="3")
  assert subprocess.run(["bash", str(stub)], env=env, capture_output=True).returncode == 0
  calls = log.read_text().splitlines()
  assert len(calls) == 2
  assert all(f"--workdir={tmp_path}/table1/rotation/revnet50_k16" in c for c in calls)
  assert "linear_eval.fraction = 0.1" in calls[0]
  assert "linear_eval.fraction = 0.05" in calls[1]
  assert os.path.exists(tmp_path / "table1/rotation/revnet50_k16/sweep.log")


@pytest.mark.slow
def test_a_real_sweep_skips_resumes_and_goes_on_after_a_failure(tmp_path):
  root = tmp_path / "runs"
  extra = ["--", "--gin_bindings=train.epochs = 0",
           "--gin_bindings=experiment.evaluate_random_init = False",
           "--gin_bindings=linear_eval.l2_grid = [1e-3]",
           "--gin_bindings=linear_eval.max_iter = 60",
           # Both cells' runs at 16 px (a quarter of the demo trunk's work per
           # image): the sweep's skip / resume / go-on needs runs, not their size.
           "--gin_bindings=supervised.pp_train = 'decode|resize(16)|value_range(-1, 1)'",
           "--gin_bindings=supervised.pp_representation = "
           "'decode|resize(16)|value_range(-1, 1)'"]
  grid = ["fashion_mnist", "--root", str(root), "--match", "random_init|supervised"]
  # A corrupt results.json makes the supervised run fail; the sweep goes on.
  broken = root / "fashion_mnist" / "supervised"
  broken.mkdir(parents=True)
  with open(workdir_lib.Workdir(broken).results_json, "w") as f:
    f.write("{not json")
  proc = _sweep(*grid, *extra, check=False, timeout=1800)
  assert proc.returncode == 1, proc.stdout[-3000:]
  out = proc.stdout
  assert "[sweep] 1/2 fashion_mnist/random_init: starting" in out
  assert "[sweep] 2/2 fashion_mnist/supervised: resuming" in out
  assert "[sweep] fashion_mnist/supervised FAILED (exit 2)" in out
  assert out.splitlines()[-2:] == [
      "[sweep] fashion_mnist: 1 done, 1 failed, 0 skipped (already done).",
      "[sweep]   failed: fashion_mnist/supervised"]
  log = (broken / "sweep.log").read_text()
  assert f"Error: {broken}/results.json is not valid JSON" in log
  assert "Traceback" not in log
  with open(workdir_lib.Workdir(root / "fashion_mnist" / "random_init").results_json) as f:
    entries = json.load(f)["evaluations"]
  assert [(e["protocol"], e["trunk"], e["eval_split"]) for e in entries] == [
      ("linear_lbfgs", "trained@0", "test")]

  os.remove(workdir_lib.Workdir(broken).results_json)
  out = _sweep(*grid, *extra, timeout=1800).stdout
  assert "[sweep] 1/2 fashion_mnist/random_init: done, skipped." in out
  assert out.splitlines()[-1] == (
      "[sweep] fashion_mnist: 1 done, 0 failed, 1 skipped (already done).")
  out = _sweep(*grid, "--dry-run").stdout
  assert out.splitlines()[-1] == ("[sweep] fashion_mnist: 2 runs, 2 done, 0 to "
                                  "run (dry run: nothing started).")


def test_a_preempted_run_stops_the_sweep_with_status_75(tmp_path):
  # A stand-in interpreter: plans with the real one, "trains" by exiting 75
  # for the second run (as train_and_eval.py does on SIGTERM) and 0 otherwise.
  stub = tmp_path / "python"
  stub.write_text(
      "#!/bin/sh\n"
      f'case "$1 $2" in "-m study.grid") exec {sys.executable} "$@";; esac\n'
      'case "$*" in *revnet50_k8*) echo "Preempted: saved ckpt-5" >&2; exit 75;; esac\n'
      "exit 0\n")
  os.chmod(stub, 0o755)
  env = dict(os.environ, PYTHON=str(stub))
  proc = subprocess.run(
      ["bash", SWEEP, "table1:revnet50", "--root", str(tmp_path / "runs"),
       "--match", "rotation"], capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 75, proc.stdout + proc.stderr
  lines = proc.stdout.splitlines()
  assert "[sweep] 2/4 table1/rotation/revnet50_k8: starting in" in lines[1]
  assert lines[2] == "Preempted: saved ckpt-5"
  assert lines[3].startswith("[sweep] table1/rotation/revnet50_k8 PREEMPTED (exit 75)")
  assert lines[-1] == ("[sweep] table1:revnet50: 1 done, 0 failed, 0 skipped (already "
                       "done), preempted at table1/rotation/revnet50_k8: rerun to go on.")


def test_jobs_run_workdirs_side_by_side_with_a_share_of_the_cores(tmp_path):
  # A stand-in interpreter that logs when each run starts and ends, and with how
  # many threads; the k12 run fails. Runs of one workdir (Table 2 on its Table 1
  # cell) must stay one job, in order.
  log = tmp_path / "log"
  stub = tmp_path / "python"
  stub.write_text(
      "#!/bin/bash\n"
      f'case "$1 $2" in "-m study.grid") exec {sys.executable} "$@";; esac\n'
      'name=$(echo "$*" | grep -o "workdir=[^ ]*" | sed "s|.*/||")\n'
      'table=$(echo "$*" | grep -c linear_eval_table2 || true)\n'
      f'echo "start $name $table $TF_NUM_INTRAOP_THREADS $(date +%s%N)" >> {log}\n'
      "sleep 0.4\n"
      f'echo "end $name $table $(date +%s%N)" >> {log}\n'
      'case "$name" in *k12) echo "bad config" >&2; exit 3;; esac\n'
      "exit 0\n")
  os.chmod(stub, 0o755)
  env = dict(os.environ, PYTHON=str(stub))
  root = tmp_path / "runs"
  proc = subprocess.run(
      ["bash", SWEEP, "table1:revnet50", "--root", str(root), "--match", "rotation",
       "--jobs", "2"], capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  cores = os.cpu_count()
  lines = proc.stdout.splitlines()
  assert lines[0] == (f"[sweep] table1:revnet50: 4 runs, 0 done; 4 to run in 4 "
                      f"workdirs, 2 at a time, {max(1, cores // 2)} thread(s) each; logs: "
                      f"<workdir>/sweep.log")
  assert "[sweep] 1/4 start table1/rotation/revnet50_k4" in lines
  assert any(l.startswith("[sweep] FAILED  table1/rotation/revnet50_k12 (exit 3); log: ")
             for l in lines)
  assert lines[-2:] == [
      "[sweep] table1:revnet50: 3 workdirs done, 1 failed, 0 runs skipped (already "
      "done) in " + lines[-2].rsplit(" in ", 1)[1],
      "[sweep]   failed: table1/rotation/revnet50_k12"]
  assert "bad config" in (root / "table1/rotation/revnet50_k12/sweep.log").read_text()
  # Never more than 2 at a time, and 2 at some point; each got cores / 2 threads.
  events = sorted((int(e.split()[-1]), e.split()[0]) for e in log.read_text().splitlines())
  running, most = 0, 0
  for _, kind in events:
    running += 1 if kind == "start" else -1
    most = max(most, running)
  assert most == 2
  starts = [e.split() for e in log.read_text().splitlines() if e.startswith("start")]
  assert sorted(s[1] for s in starts) == sorted(
      f"revnet50_k{k}" for k in (4, 8, 12, 16))
  assert {s[3] for s in starts} == {str(max(1, cores // 2))}

  # Table 2 on top: its rotation run joins the finished cell's workdir (one job,
  # after the cell); --jobs 1 is the plain sequential loop.
  out = subprocess.run(
      ["bash", SWEEP, "table2", "--root", str(root), "--match", "rotation",
       "--jobs", "3"], capture_output=True, text=True, env=env, timeout=120).stdout
  assert "[sweep] table2: 2 runs, 0 done; 2 to run in 1 workdirs, 3 at a time" in out
  assert ("[sweep] done    table2/rotation/revnet50_k16 "
          "table2/rotation/revnet50_k16_places (") in out
  joined = log.read_text().splitlines()[-4:]
  assert [e.split()[:3] for e in joined] == [
      ["start", "revnet50_k16", "1"], ["end", "revnet50_k16", "1"],
      ["start", "revnet50_k16", "0"], ["end", "revnet50_k16", "0"]]
  bad = subprocess.run(["bash", SWEEP, "table2", "--root", str(root), "--jobs", "0"],
                       capture_output=True, text=True, env=env, timeout=60)
  assert bad.returncode == 2
  assert "--jobs takes a positive integer, not '0'" in bad.stderr
