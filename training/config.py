"""Parsing a run's gin files: the one place every command line reads configs.

Config files include shared ones by their path from the repository root
(`include 'configs/common/imagenet.gin'`), so a config reads the same from
any working directory.

After parsing, every binding is checked against its parameter's annotation
(`train.batch_size = 8.5`, `train.epochs = 'two'`, `linear_eval.layers =
'pre_logits'`: a string where a list is meant) and counts that divide or
size batches must be positive (`train.steps_per_loop = 0`): a mistake is one
line naming the binding before anything is built, not a TypeError or a
ZeroDivisionError from deep inside the run.
"""
import collections.abc
import importlib.util  # noqa: F401  gin's include lookup uses it without importing it
import contextlib
import inspect
import io
import logging
import os
import tokenize
import typing
from typing import List, Optional, Sequence

import gin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
gin.add_config_file_search_path(ROOT)

# Parameters, whatever their configurable, that count something that must
# be there at least once: a batch, a compiled loop's steps.
POSITIVE = ("batch_size", "eval_batch_size", "steps_per_loop")


def parse(files: Sequence[str], bindings: Sequence[str] = (), *,
          skip_unknown: bool = False, finalize: bool = True) -> None:
  """gin.parse_config_files_and_bindings, includes found from the root.

  Raises:
    FileNotFoundError: a config file, or a file one includes, does not exist
      (named, with where to look).
    ValueError: a binding that does not parse (an unclosed bracket or quote,
      naming its file or binding) or does not fit its parameter (check).
  """
  for path in files:
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"Config file {path} not found (working directory {os.getcwd()}); run "
          f"configs live under {os.path.join(ROOT, 'configs')}, e.g. "
          f"configs/demo_fashion_mnist.gin.")
  try:
    with _quiet_gin_lookups():
      gin.parse_config_files_and_bindings(list(files), list(bindings),
                                          skip_unknown=skip_unknown,
                                          finalize_config=False)
  except tokenize.TokenError as e:
    raise ValueError(f"{_unparsable(files, bindings)} does not parse ({e.args[0]}): "
                     f"close the bracket or quote it opens.") from None
  except OSError as e:
    # gin's include of a file that is not there (its own message names it
    # without saying which config asked for it).
    raise FileNotFoundError(
        f"{' '.join(str(e).split())}; includes name files by their path from "
        f"the repository root ({ROOT}), e.g. include "
        f"'configs/common/fashion_mnist.gin'.") from None
  check()
  if finalize:
    gin.finalize()


class _DropPathNotFound(logging.Filter):

  def filter(self, record):
    return not str(record.msg).startswith("Path not found")


@contextlib.contextmanager
def _quiet_gin_lookups():
  """gin logs each search path it fails to find an include in, then raises;
  the raised error (turned into one line below) is what the user sees."""
  drop = _DropPathNotFound()
  logging.getLogger().addFilter(drop)
  try:
    yield
  finally:
    logging.getLogger().removeFilter(drop)


def _unparsable(files: Sequence[str], bindings: Sequence[str]) -> str:
  """Which file (or include) or binding Python's tokenizer cannot finish."""
  sources = [(f"--gin_bindings={b!r}", b) for b in bindings]
  seen, todo = set(), list(files)
  while todo:
    path = todo.pop(0)
    if path in seen:
      continue
    seen.add(path)
    full = path if os.path.isfile(path) else os.path.join(ROOT, path)
    try:
      with open(full) as f:
        text = f.read()
    except OSError:
      continue
    sources.append((f"Config file {path}", text))
    todo += [line.split(None, 1)[1].strip().strip("'\"")
             for line in text.splitlines() if line.startswith("include ")]
  for name, text in sources:
    try:
      list(tokenize.generate_tokens(io.StringIO(text).readline))
    except tokenize.TokenError:
      return name
  return "A gin binding"


def _describe(annotation) -> Optional[str]:
  """What values `annotation` admits, in words; None: any (not checked)."""
  origin, args = typing.get_origin(annotation), typing.get_args(annotation)
  if annotation is bool:
    return "True or False"
  if annotation is int:
    return "an integer"
  if annotation is float:
    return "a number"
  if annotation is str:
    return "a quoted string"
  if origin in (list, tuple, collections.abc.Sequence):
    element = args[0] if len(args) == 1 or (args and args[-1] is Ellipsis) else None
    inner = _describe(element) if element is not None else None
    return "a list" + (f" of {_PLURAL.get(inner, inner)}" if inner else "")
  if origin is typing.Union and type(None) in args:
    rest = [a for a in args if a is not type(None)]
    inner = _describe(rest[0]) if len(rest) == 1 else None
    return None if inner is None else f"{inner} or None"
  return None


_PLURAL = {"an integer": "integers", "a number": "numbers",
           "a quoted string": "quoted strings", "True or False": "True or False"}


def _fits(value, annotation) -> bool:
  origin, args = typing.get_origin(annotation), typing.get_args(annotation)
  if annotation is bool:
    return isinstance(value, bool)
  if annotation is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if annotation is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if annotation is str:
    return isinstance(value, str)
  if origin is typing.Union and type(None) in args:
    rest = [a for a in args if a is not type(None)]
    return value is None or len(rest) != 1 or _fits(value, rest[0])
  if _describe(annotation) is not None:  # a sequence
    if not isinstance(value, (list, tuple)):
      return False
    element = args[0] if len(args) == 1 or (args and args[-1] is Ellipsis) else None
    return element is None or _describe(element) is None or all(
        _fits(v, element) for v in value)
  return True


def _signature(configurable):
  fn = configurable.wrapped
  if inspect.isclass(fn):
    fn = fn.__init__
  try:
    return inspect.signature(fn), typing.get_type_hints(fn)
  except (TypeError, ValueError, NameError):
    return None, {}


def problems() -> List[str]:
  """One line per gin binding whose value its parameter cannot take."""
  found = []
  for (_, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
    try:
      configurable = gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    except (KeyError, ValueError):
      continue
    if configurable is None:
      continue
    signature, hints = _signature(configurable)
    if signature is None:
      continue
    name = configurable.name
    for param, value in params.items():
      if param not in signature.parameters:
        continue
      if type(value).__module__.startswith("gin"):
        continue  # a @reference or %macro: its value comes later
      annotation = hints.get(param)
      what = _describe(annotation) if annotation is not None else None
      if what is not None and not _fits(value, annotation):
        hint = (f" (for one, write [{value!r}])"
                if what.startswith("a list") and isinstance(value, str) else "")
        found.append(f"{name}.{param} = {value!r}: it takes {what}{hint}")
      elif (param in POSITIVE and isinstance(value, (int, float))
            and not isinstance(value, bool) and value < 1):
        found.append(f"{name}.{param} = {value!r}: it must be at least 1")
  return found


def check() -> None:
  """Refuses bindings whose values their parameters cannot take.

  Raises:
    ValueError: naming each such binding and what it takes.
  """
  found = problems()
  if found:
    raise ValueError(f"{'; '.join(found)}. Fix the binding in the config or "
                     f"in --gin_bindings.")
