"""The machine's paths, replaced in what a report shares (report.md, the copied
run files), so a committed report names no directory of the machine it ran on.

  <checkout>   a checkout that ran a run (its program's folder) or built the report
  <root>       the sweep root: the one the report read and the one each run's
               --workdir was recorded under (a sweep moved since it ran)
  <path>/name  any other absolute path: its last component only

TF device names (/device:CPU:0, /job:worker/...) are no paths and stay. TF-free.
"""
import os
import re
from typing import Iterable, List, Optional, Sequence, Tuple

CHECKOUT, ROOT, OTHER = "<checkout>", "<root>", "<path>"
# An absolute path: '/' then path characters, not inside a word, a relative path,
# a placeholder or a URL ('//host' starts with '/' after '/'). ':' ends a
# component, so `image_folder:/data/x` yields /data/x and /device:CPU:0 yields
# /device, which is then left alone (followed by ':').
_PATH = re.compile(r"(?<![\w.<>/~-])/[\w.+@%~=-]+(?:/[\w.+@%~=-]+)*/?")
_PROGRAMS = ("train_and_eval.py", "__main__.py")


def checkout_of(command: str) -> Optional[str]:
  """The checkout a recorded command ran from: the folder of its program
  (train_and_eval.py; scripts/x.py's parent; a `-m package`'s __main__.py's
  package's parent), None when it names no absolute program."""
  for word in command.split():
    if not (os.path.isabs(word) and word.endswith(".py")):
      continue
    folder, name = os.path.split(word)
    if name == "__main__.py" or os.path.basename(folder) == "scripts":
      return os.path.dirname(folder)
    return folder
  return None


def recorded_root(command: str, rel: str) -> Optional[str]:
  """The sweep root a command's --workdir was under: the workdir less `rel`
  (the run's path relative to the root), None when it is not there."""
  match = re.search(r"--workdir[= ]['\"]?(/[^\s'\"]*)", command)
  if not match:
    return None
  workdir = match.group(1).rstrip("/")
  suffix = os.sep + rel.strip(os.sep)
  return workdir[:-len(suffix)] if rel not in ("", ".") and workdir.endswith(
      suffix) else (workdir if rel in ("", ".") else None)


class Scrubber:
  """Replaces absolute paths in text (see the module docstring).

  Attributes:
    prefixes: [(path, placeholder)], longest first, so a root inside a
      checkout is named as the root.
  """

  def __init__(self, roots: Iterable[str] = (), checkouts: Iterable[str] = ()):
    found = {}
    for placeholder, paths in ((CHECKOUT, checkouts), (ROOT, roots)):
      for path in paths:
        if path and os.path.isabs(path):
          for form in {os.path.normpath(path), os.path.realpath(path)}:
            if form != os.sep:
              found[form] = placeholder
    self.prefixes: List[Tuple[str, str]] = sorted(
        found.items(), key=lambda kv: (-len(kv[0]), kv[0]))

  def path(self, path: str) -> str:
    """One absolute path with its placeholder."""
    trailing = "/" if path.endswith("/") and len(path) > 1 else ""
    path = path.rstrip("/")
    for prefix, placeholder in self.prefixes:
      if path == prefix or path.startswith(prefix + "/"):
        return placeholder + path[len(prefix):] + trailing
    return f"{OTHER}/{os.path.basename(path)}{trailing}"

  def __call__(self, text: str) -> str:
    def replace(match):
      if text[match.end():match.end() + 1] == ":":
        return match.group(0)  # a device name (/device:CPU:0), not a path
      return self.path(match.group(0))
    return _PATH.sub(replace, text)


def for_sweep(root: str, commands: Sequence[Tuple[str, str]],
              builder: Optional[str] = None) -> Scrubber:
  """The scrubber of a sweep read at `root`.

  Args:
    root: the sweep root as read (absolute).
    commands: [(command, run's path relative to the root)] of every recorded
      invocation.
    builder: the checkout building the report (this code's), also replaced.
  """
  roots = {root} | {recorded_root(c, rel) for c, rel in commands}
  checkouts = {checkout_of(c) for c, _ in commands} | {builder}
  return Scrubber(roots - {None}, checkouts - {None})
