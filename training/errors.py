"""How the command lines end: one line naming the fix, and a status scripts can read.

  0   done
  1   the run failed (a non-finite loss, a full disk, a corrupt image; the
      line says where)
  2   bad input: unknown name, impossible setting, missing file or data, a
      workdir in use or made by another config; nothing was trained
  75  preempted (SIGTERM): a checkpoint was saved, rerun the same command

Bad input is answered with its message alone; `--debug` shows the traceback.
"""
import re
import sys
from typing import Callable

from training import preemption
from training import workdir_lock

BAD_INPUT_STATUS = 2
FAILED_STATUS = 1

# What our checks raise for a user's mistake. gin reports unknown names and
# syntax errors (with file and line) as ValueError / SyntaxError.
BAD_INPUT = (ValueError, FileNotFoundError, NotADirectoryError, SyntaxError,
             workdir_lock.WorkdirLocked)


# Keras wraps a layer's error in "Exception encountered when calling X.call()."
# with the message in bold (ANSI) and the arguments after it.
_KERAS_BOLD = re.compile(r"\x1b\[1m(.*?)\x1b\[0m", re.S)
# AutoGraph puts "in user code:" and the traced frames before the message.
_AUTOGRAPH_LAST = re.compile(r"^\s*(?:\w+\.)*\w*(?:Error|Exception): ", re.M)


def root_message(e: BaseException) -> str:
  """The message of the error that started it, without framework wrapping.

  TF's traced functions and Keras layers re-raise an error inside a longer
  message (traced frames, arguments); the original message is what names
  the fix.
  """
  text = str(e)
  bold = _KERAS_BOLD.findall(text)
  if bold:
    text = bold[-1]
  elif "in user code:" in text:
    starts = list(_AUTOGRAPH_LAST.finditer(text))
    if starts:
      text = text[starts[-1].end():]
  return " ".join(text.split()) or type(e).__name__


# A tf.debugging.Assert of our own input checks fails as "assertion failed:
# [message] [value]" plus the graph node; the message names the fix.
_ASSERTION = re.compile(r"assertion failed: \[(.*?)\] \[(.*?)\]", re.S)
_DATA_CHECKS = ("image_folder: ",)


def _failed_data_check(e: BaseException):
  """The one line of a failed input check of ours inside tf.data, or None."""
  if type(e).__name__ != "InvalidArgumentError":
    return None
  match = _ASSERTION.search(str(e))
  if not match or not match.group(1).startswith(_DATA_CHECKS):
    return None
  return " ".join(f"{match.group(1)} {match.group(2)}".split())


def usage(message: str) -> None:
  """A missing or stray command-line argument: its line, not the flag list."""
  print(f"Error: {message}", file=sys.stderr)
  sys.exit(BAD_INPUT_STATUS)


def run_cli(main: Callable[[], object], debug: bool = False):
  """Runs `main()`; exits with the status above instead of a traceback."""
  try:
    return main()
  except preemption.Preempted as e:
    print(f"Preempted: {root_message(e)}", file=sys.stderr)
    sys.exit(preemption.EXIT_STATUS)
  except FloatingPointError as e:
    if debug:
      raise
    print(f"Failed: {root_message(e)}", file=sys.stderr)
    sys.exit(FAILED_STATUS)
  except BAD_INPUT as e:
    if debug:
      raise
    print(f"Error: {root_message(e)} (--debug shows the traceback)", file=sys.stderr)
    sys.exit(BAD_INPUT_STATUS)
  except OSError as e:  # the machine, not the input: a full disk, say
    if debug:
      raise
    print(f"Failed: {root_message(e)}", file=sys.stderr)
    sys.exit(FAILED_STATUS)
  except Exception as e:  # pylint: disable=broad-except
    line = _failed_data_check(e)
    if debug or line is None:
      raise
    # Bad data met while running (a corrupt image): the run may have
    # trained, so this is a failure, not refused input.
    print(f"Failed: {line}", file=sys.stderr)
    sys.exit(FAILED_STATUS)
