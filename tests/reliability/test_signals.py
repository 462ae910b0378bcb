"""scripts/sweep.sh under a process-group SIGTERM (scancel) or SIGINT (Ctrl-C):
the running run gets the notice, saves and exits 75; the sweep prints its
summary and exits 75 instead of dying with 143 and no word."""
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = os.path.join(ROOT, "scripts", "sweep.sh")

# A stand-in for train_and_eval.py (no TF): plans with the real interpreter,
# "trains" until a notice, then says what train_and_eval.py says and exits 75.
STUB = f"""#!{sys.executable}
import os, re, signal, sys, time
if sys.argv[1:3] == ["-m", "study.grid"]:
  os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])
name = re.search(r"--workdir=(\\S+)", " ".join(sys.argv)).group(1).split("/")[-1]
notice = []
signal.signal(signal.SIGTERM, lambda s, f: notice.append("SIGTERM"))
signal.signal(signal.SIGINT, lambda s, f: notice.append("SIGINT"))
print("step 1 of", name, flush=True)
with open(os.environ["STUB_LOG"], "a") as f:
  f.write(f"started {{name}} {{os.getpid()}}\\n")
while not notice:
  time.sleep(0.05)
print(f"Preempted: {{notice[0]}} received; saved ckpt-1", file=sys.stderr, flush=True)
sys.exit(75)
"""


def _started(log, n, timeout=60):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.exists(log):
      with open(log) as f:
        lines = f.read().splitlines()
      if len(lines) >= n:
        return lines
    time.sleep(0.1)
  raise AssertionError(f"{n} run(s) did not start")


def _sweep_signalled(tmp_path, stub_text, jobs, signal_it):
  """Runs the sweep with `stub_text` as its python until `jobs` runs started,
  then `signal_it(proc)`; returns (returncode, stdout, stderr, started log)."""
  stub = tmp_path / "python"
  stub.write_text(stub_text)
  os.chmod(stub, 0o755)
  log = tmp_path / "started"
  env = dict(os.environ, PYTHON=str(stub), STUB_LOG=str(log))
  proc = subprocess.Popen(
      ["bash", SWEEP, "table1:revnet50", "--root", str(tmp_path / "runs"),
       "--match", "rotation", "--jobs", str(jobs)], stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
  try:
    _started(log, jobs)
    signal_it(proc)
    out, err = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  return proc.returncode, out, err, log


@pytest.mark.parametrize("signum,jobs", [(signal.SIGTERM, 1), (signal.SIGINT, 1),
                                         (signal.SIGTERM, 2)])
def test_a_process_group_signal_is_the_documented_preemption(tmp_path, signum, jobs):
  # What scancel / a terminal's Ctrl-C does: the whole process group.
  returncode, out, err, log = _sweep_signalled(
      tmp_path, STUB, jobs, lambda proc: os.killpg(proc.pid, signum))
  assert returncode == 75, out + err
  name = signal.Signals(signum).name
  started = [l.split()[1] for l in log.read_text().splitlines()]
  assert len(started) == jobs  # no run starts after the notice
  if jobs == 1:
    lines = out.splitlines()
    assert f"Preempted: {name} received; saved ckpt-1" in lines
    assert any(l.startswith(f"[sweep] table1/rotation/{started[0]} PREEMPTED "
                            "(exit 75)") for l in lines), out
    assert lines[-1] == ("[sweep] table1:revnet50: 0 done, 0 failed, 0 skipped "
                         f"(already done), preempted at table1/rotation/{started[0]}: "
                         "rerun to go on.")
    # The run's last words reached its log too (tee outlived the signal).
    with open(tmp_path / "runs" / "table1" / "rotation" / started[0] / "sweep.log") as f:
      assert f"Preempted: {name} received; saved ckpt-1" in f.read()
  else:
    assert out.count("PREEMPTED") == 2, out
    assert "[sweep] table1:revnet50: 0 workdirs done, 0 failed" in out


# A run that dies of the notice (still starting, or a second notice while it
# exits): python's default SIGTERM action, status 143.
DYING_STUB = STUB.replace(
    'signal.signal(signal.SIGTERM, lambda s, f: notice.append("SIGTERM"))\n', "")


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_run_killed_by_the_notice_is_preempted_not_failed(tmp_path, jobs):
  returncode, out, err, _ = _sweep_signalled(
      tmp_path, DYING_STUB, jobs, lambda proc: os.killpg(proc.pid, signal.SIGTERM))
  assert returncode == 75, out + err
  assert "FAILED" not in out and "failed:" not in out, out
  if jobs == 1:
    assert "stopped by a signal (exit 143); rerun the sweep to go on" in out, out
  else:
    assert out.count("stopped by the signal (exit 143); rerun the sweep to resume "
                     "from its last checkpoint") == 2, out
    assert "[sweep] table1:revnet50: 0 workdirs done, 0 failed" in out


def test_a_signal_to_the_sweep_alone_is_passed_to_its_runs(tmp_path):
  returncode, out, err, _ = _sweep_signalled(
      tmp_path, STUB, 2, lambda proc: proc.send_signal(signal.SIGTERM))  # its pid only
  assert returncode == 75, out + err
  assert out.count("PREEMPTED") == 2, out
