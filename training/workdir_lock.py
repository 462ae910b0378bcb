"""One process per workdir: a lock file naming who holds it.

Two processes on one workdir would both train to the end, write the same
checkpoints (one escaping `max_to_keep`), features and results. The lock is
`<workdir>/lock`, created atomically (O_EXCL) with the holder's host, pid,
start time and command. A second process refuses at once, naming the first; a
lock left by a killed process on this host (its pid is gone) is taken over.
Remote workdirs (`gs://...`) are not locked: no atomic create there. Under
several workers only the chief locks (training/role.py): the others share
the workdir with it by design and write nothing there.

Whoever takes the lock also removes what killed writers left behind (only the
holder can know nobody is writing them): checkpoints' `*_temp` directories,
the feature cache's `.tmp-*` entries, `*.tmp` files of atomic writes
(training/workdir.LEFTOVERS).
"""
import datetime
import glob
import json
import os
import shutil
import socket
import sys
import time
from typing import Callable, Dict, List, Optional

from training import role
from training import workdir as workdir_lib


class WorkdirLocked(RuntimeError):
  """Another live process holds the workdir."""


def remove_leftovers(workdir: str) -> List[str]:
  """Deletes temporaries of killed writers under `workdir`; their paths."""
  found = sorted({p for pattern in workdir_lib.LEFTOVERS
                  for p in glob.glob(os.path.join(workdir, pattern), recursive=True)})
  for path in found:
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
      os.remove(path)
  return found


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


# A lock file is written right after its atomic creation: one still empty
# (or not a holder's record) after this long was left by a process killed in
# between, or made by hand, and names nobody.
_UNWRITTEN_SECS = 2.0


def _read(path: str) -> Optional[Dict]:
  try:
    with open(path) as f:
      holder = json.load(f)
  except (OSError, ValueError):
    return None
  return holder if isinstance(holder, dict) and "pid" in holder else None


def _age(path: str) -> float:
  try:
    return time.time() - os.path.getmtime(path)
  except OSError:
    return 0.0


class Lock:
  """Holds `<workdir>/lock` until `release()` (also a context manager)."""

  def __init__(self, workdir: str, log: Callable[[str], None] = print):
    self.path = workdir_lib.of(workdir).lock
    self.log = log
    self.held = False
    self._depth = 0

  def acquire(self) -> "Lock":
    if self._depth:
      self._depth += 1
      return self
    if "://" in self.path or not role.is_chief():
      self._depth = 1
      return self
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    me = dict(host=socket.gethostname(), pid=os.getpid(),
              start_time=datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds"),
              command=" ".join([sys.executable] + sys.argv))
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = _read(self.path)
        if holder is None and _age(self.path) < _UNWRITTEN_SECS:
          time.sleep(_UNWRITTEN_SECS)  # its creator may be writing it now
          holder = _read(self.path)
        if holder is None:
          self.log(f"Taking over {self.path}, which names no holder (empty or "
                   f"damaged: a process killed while taking it).")
          try:
            os.remove(self.path)
          except FileNotFoundError:
            pass
          continue
        if holder.get("host") == me["host"] and holder.get("pid") == me["pid"]:
          # This very process holds it already (another Lock object): the
          # first one releases it.
          self._depth = 1
          return self
        if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
          self.log(f"Taking over the lock of pid {holder.get('pid')} (started "
                   f"{holder.get('start_time')}), which no longer runs.")
          try:
            os.remove(self.path)
          except FileNotFoundError:
            pass
          continue
        raise WorkdirLocked(
            f"{os.path.dirname(self.path)} is in use by pid {holder.get('pid')} on "
            f"{holder.get('host')} since {holder.get('start_time')} "
            f"({holder.get('command', '?')}). Wait for it to finish, use another "
            f"--workdir, or, if that process is gone, delete {self.path}.")
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      break
    else:
      raise WorkdirLocked(
          f"{self.path} was taken by another process while this one took over a "
          f"stale lock: two processes started on {os.path.dirname(self.path)} "
          f"at once. Run one.")
    self.held = True
    self._depth = 1
    removed = remove_leftovers(os.path.dirname(self.path))
    if removed:
      self.log(f"Removed {len(removed)} temporary file(s) a killed run left "
               f"behind: {', '.join(os.path.relpath(p, os.path.dirname(self.path)) for p in removed[:5])}"
               + (" ..." if len(removed) > 5 else ""))
    return self

  def release(self) -> None:
    if not self._depth:
      return
    self._depth -= 1
    if self._depth or not self.held:
      return
    holder = _read(self.path) or {}
    if holder.get("pid") == os.getpid():
      os.remove(self.path)
    self.held = False

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
