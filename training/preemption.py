"""SIGTERM is a preemption notice: save, then exit with a status meaning "rerun me".

Cloud TPUs, spot VMs and SLURM (`scancel`, a job's time limit) send SIGTERM and
kill a little later. The handler only records the notice; the training loop
looks at it after every compiled loop (at most `steps_per_loop` steps later),
saves a checkpoint and raises `Preempted`. The command line turns that into
exit status `EXIT_STATUS` (75, EX_TEMPFAIL), which scripts/sweep.sh reports as
preempted. Rerunning the same command resumes from that checkpoint.

SIGINT (Ctrl-C, and what a terminal sends a whole sweep) is the same notice,
so an interrupted run keeps its work; a second Ctrl-C stops at once, unsaved.
"""
import signal
import sys
import threading
from typing import Callable, Optional

EXIT_STATUS = 75

_notice = threading.Event()
_installed = False
_received = "SIGTERM"  # the last notice's signal, for the messages


class Preempted(Exception):
  """Training stopped on a preemption notice after saving a checkpoint."""


def _on_signal(signum, frame):
  del frame
  global _received
  _received = signal.Signals(signum).name
  if signum == signal.SIGINT:
    if _notice.is_set():
      raise KeyboardInterrupt  # a second Ctrl-C: the user will not wait
    print("Interrupted: stopping at the next safe point (a checkpoint, a "
          "finished evaluation); Ctrl-C again stops at once, unsaved.",
          file=sys.stderr, flush=True)
  _notice.set()


def install() -> None:
  """Records SIGTERM and SIGINT instead of dying on them (call once, from the
  main thread)."""
  global _installed
  if _installed or threading.current_thread() is not threading.main_thread():
    return
  signal.signal(signal.SIGTERM, _on_signal)
  signal.signal(signal.SIGINT, _on_signal)
  _installed = True


def requested() -> bool:
  """Whether a preemption notice has arrived."""
  return _notice.is_set()


def reason() -> str:
  """What the notice was, for a message: 'SIGTERM received', 'SIGINT (Ctrl-C)
  received'."""
  return ("SIGINT (Ctrl-C) received" if _received == "SIGINT"
          else f"{_received} received")


def check_inside(doing: str, num_workers: int) -> Optional[Callable[[], None]]:
  """A check for the gaps inside one long piece of an evaluation (between an
  L-BFGS fit's compiled calls, between the batches of a feature extraction):
  it raises Preempted once a notice has come. Such a piece can outlast a
  preemption's grace period (an L-BFGS fit on a 4,096-d layer: more than 25
  minutes), and Python runs its signal handlers only between those calls.

  None under several workers: they do the same piece in step, and one
  stopping alone would leave the others waiting in the next collective; they
  stop together between entries (evaluation/campaign.py).

  Args:
    doing: what is stopped, for the message ('inside an L-BFGS fit').
    num_workers: processes in the strategy's collectives.
  """
  if num_workers > 1:
    return None

  def check():
    if requested():
      raise Preempted(f"{reason()}: stopped the evaluation {doing} (unfinished, "
                      f"nothing of it kept); every finished entry is in "
                      f"results.json. Rerun the same command to do the rest.")
  return check


def clear() -> None:
  _notice.clear()
