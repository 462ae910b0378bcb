"""SIGTERM is a preemption notice: save, then exit with a status meaning "rerun me".

Cloud TPUs, spot VMs and SLURM (`scancel`, a job's time limit) send SIGTERM and
kill a little later. The handler only records the notice; the training loop
looks at it after every compiled loop (at most `steps_per_loop` steps later),
saves a checkpoint and raises `Preempted`. The command line turns that into
exit status `EXIT_STATUS` (75, EX_TEMPFAIL), which scripts/sweep.sh reports as
preempted. Rerunning the same command resumes from that checkpoint.
"""
import signal
import threading

EXIT_STATUS = 75

_notice = threading.Event()
_installed = False


class Preempted(Exception):
  """Training stopped on a preemption notice after saving a checkpoint."""


def install() -> None:
  """Records SIGTERM instead of dying on it (call once, from the main thread)."""
  global _installed
  if _installed or threading.current_thread() is not threading.main_thread():
    return
  signal.signal(signal.SIGTERM, lambda signum, frame: _notice.set())
  _installed = True


def requested() -> bool:
  """Whether a preemption notice has arrived."""
  return _notice.is_set()


def clear() -> None:
  _notice.clear()
