"""The repository's command lines run as a user runs them: `python <args>` from
the repository root, with its exit status, stdout and stderr.

`run` forks each command from a zygote (tests/cli_zygote.py) that imported
TensorFlow and the framework once per test process: the same code on the same
arguments, without a TensorFlow import (~5 CPU-seconds) per command. Tests of
signals or of a process's lifetime start real processes themselves.
"""
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = "--config=configs/demo_fashion_mnist.gin"

_zygote = None
_log = None  # the zygote's stderr: read if it fails to start, removed at stop


def _start():
  global _zygote, _log
  log = tempfile.NamedTemporaryFile(prefix="cli_zygote_", suffix=".log", delete=False)
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "cli_zygote.py")],
                          cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=log, text=True, bufsize=1)
  ready = proc.stdout.readline()
  if not ready:
    proc.wait()
    raise RuntimeError("cli_zygote.py did not start: " + open(log.name).read()[-3000:])
  _zygote, _log = proc, log.name
  atexit.register(stop)


def stop():
  """Ends the zygote, if started, and waits for it (its commands' CPU time then
  counts as this process's children's)."""
  global _zygote
  if _zygote is not None:
    _zygote.stdin.close()
    _zygote.wait(timeout=60)
    _zygote = None
  if _log is not None and os.path.exists(_log):
    os.unlink(_log)


def run(args, timeout=600):
  """`python <args>` from the repository root: a subprocess.CompletedProcess
  (text stdout and stderr); subprocess.TimeoutExpired after `timeout` seconds."""
  if _zygote is None or _zygote.poll() is not None:
    _start()
  with tempfile.TemporaryDirectory() as tmp:
    out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    _zygote.stdin.write(json.dumps(dict(args=list(args), stdout=out, stderr=err,
                                          env=dict(os.environ))) + "\n")
    pid = json.loads(_zygote.stdout.readline())["pid"]
    timer = _Timer(timeout, pid)
    try:
      status = json.loads(_zygote.stdout.readline())["status"]
    finally:
      timer.cancel()
    with open(out) as f_out, open(err) as f_err:
      stdout, stderr = f_out.read(), f_err.read()
  if timer.fired:
    raise subprocess.TimeoutExpired([sys.executable, *args], timeout, stdout, stderr)
  return subprocess.CompletedProcess([sys.executable, *args], status, stdout, stderr)


class _Timer:
  """Kills the child `pid` after `timeout` seconds unless cancelled first."""

  def __init__(self, timeout, pid):
    import threading  # pylint: disable=g-import-not-at-top
    self.fired = False
    self._pid = pid
    self._timer = threading.Timer(timeout, self._kill)
    self._timer.daemon = True
    self._timer.start()

  def _kill(self):
    self.fired = True
    try:
      os.kill(self._pid, signal.SIGKILL)
    except ProcessLookupError:
      pass

  def cancel(self):
    self._timer.cancel()
