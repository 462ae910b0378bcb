"""One process per workdir: the second is refused naming the first; a dead
holder's lock is taken over."""
import json
import os
import socket
import subprocess
import sys

import pytest

from training import workdir_lock


def test_a_second_process_is_refused_naming_the_first(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys, time; sys.path.insert(0, sys.argv[1]);"
       "from training import workdir_lock;"
       "workdir_lock.Lock(sys.argv[2]).acquire(); print('held', flush=True);"
       "time.sleep(60)",
       os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
       str(tmp_path)], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lock.WorkdirLocked) as e:
      workdir_lock.Lock(str(tmp_path)).acquire()
    assert f"in use by pid {holder.pid} on {socket.gethostname()}" in str(e.value)
    assert f"delete {tmp_path}/lock" in str(e.value)
  finally:
    holder.kill()
    holder.wait()
  # Killed: its lock is stale and taken over.
  messages = []
  lock = workdir_lock.Lock(str(tmp_path), log=messages.append).acquire()
  assert messages == [messages[0]] and f"lock of pid {holder.pid}" in messages[0]
  with open(tmp_path / "lock") as f:
    assert json.load(f)["pid"] == os.getpid()
  lock.release()
  assert not os.path.exists(tmp_path / "lock")


def test_the_same_process_may_reenter_and_releases_once(tmp_path):
  lock = workdir_lock.Lock(str(tmp_path))
  with lock:
    with lock:
      assert os.path.exists(tmp_path / "lock")
    assert os.path.exists(tmp_path / "lock")
  assert not os.path.exists(tmp_path / "lock")
  # Another Lock object of this process (a second run() in one process).
  first = workdir_lock.Lock(str(tmp_path)).acquire()
  second = workdir_lock.Lock(str(tmp_path)).acquire()
  second.release()
  first.release()
  assert not os.path.exists(tmp_path / "lock")


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
  (tmp_path / "lock").write_text(json.dumps(
      dict(host="other-host", pid=1, start_time="2026-01-01T00:00:00+00:00",
           command="python train_and_eval.py")))
  with pytest.raises(workdir_lock.WorkdirLocked, match="pid 1 on other-host since 2026"):
    workdir_lock.Lock(str(tmp_path)).acquire()


def test_taking_the_lock_removes_what_killed_writers_left(tmp_path):
  keep = ["checkpoints/ckpt-3.index", "features/train-pre_logits-0123/key.json",
          "results.json"]
  leftovers = ["checkpoints/ckpt-4_temp/part-00000-of-00001.data-00000-of-00001",
               "features/.tmp-abc123/features.npy", "results.json.tmp",
               "eval/linear_sgd/trained@9/pre_logits-adaptive_max-f1/checkpoints/"
               "ckpt-2_temp/x"]
  for rel in keep + leftovers:
    os.makedirs(os.path.dirname(tmp_path / rel), exist_ok=True)
    (tmp_path / rel).write_text("x")
  messages = []
  with workdir_lock.Lock(str(tmp_path), log=messages.append):
    pass
  for rel in keep:
    assert os.path.exists(tmp_path / rel), rel
  assert not os.path.exists(tmp_path / "checkpoints/ckpt-4_temp")
  assert not os.path.exists(tmp_path / "features/.tmp-abc123")
  assert not os.path.exists(tmp_path / "results.json.tmp")
  assert not os.path.exists(
      tmp_path / "eval/linear_sgd/trained@9/pre_logits-adaptive_max-f1/checkpoints/ckpt-2_temp")
  assert messages == ["Removed 4 temporary file(s) a killed run left behind: "
                      "checkpoints/ckpt-4_temp, eval/linear_sgd/trained@9/"
                      "pre_logits-adaptive_max-f1/checkpoints/ckpt-2_temp, "
                      "features/.tmp-abc123, results.json.tmp"]
