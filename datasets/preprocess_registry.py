"""Registry of preprocessing ops and the parser for pipeline strings (docs/protocol.md §3).

A pipeline is written as a string of ops separated by ``|``, in the style of
big_vision and of the reference configs::

    "decode|inception_crop(32)|flip_lr|value_range(-1, 1)"

Each op is ``name`` or ``name(args)``; the arguments are Python literals
(positional and keyword) read like ``ast.literal_eval`` plus arithmetic between
numbers (``to_gray(2/3)``), so nothing in a config string is ever executed.
An op is produced by a factory registered under its name with
:func:`register`; the factory receives the parsed arguments plus the keyword
``training`` and returns a function ``features -> features`` that acts on the
feature dict of ONE (unbatched) example.

Randomness: ops draw stateless seeds with :func:`next_seed`, which splits the
per-example seed ``features['_rng']`` that the input pipeline puts into every
example. The output then depends only on (run seed, example index), not on
how tf.data schedules parallel map calls.
"""

import ast
import importlib
import inspect
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import tensorflow as tf

Features = Dict[str, Any]
PreprocessFn = Callable[[Features], Features]
OpFactory = Callable[..., PreprocessFn]

RNG_KEY = "_rng"

_REGISTRY: Dict[str, OpFactory] = {}

# Built-in ops live in their own module, which imports this one; importing it
# lazily (on first lookup) keeps the import graph acyclic.
_BUILTIN_OPS_MODULE = "datasets.preprocess_ops"


def register(name: str, override: bool = False) -> Callable[[OpFactory], OpFactory]:
  """Decorator registering an op factory under `name`.

  The factory must accept the keyword argument `training` (bool) and return a
  function mapping a feature dict of one example to a new feature dict.

  Args:
    name: the op's name in pipeline strings (a Python identifier).
    override: allow replacing an op registered earlier under the same name.

  Returns:
    The decorator, which returns the factory unchanged.

  Raises:
    ValueError: if `name` is not an identifier, or is already registered and
      `override` is False.
  """
  if not isinstance(name, str) or not name.isidentifier():
    raise ValueError(
        f"Op name must be a Python identifier so pipeline strings can name it; "
        f"got {name!r}.")

  def decorator(factory: OpFactory) -> OpFactory:
    if not callable(factory):
      raise ValueError(f"register({name!r}) must decorate a callable factory.")
    params = inspect.signature(factory).parameters
    takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "training" not in params and not takes_var_kwargs:
      raise ValueError(
          f"Op factory {name!r} must accept the keyword argument `training`; "
          f"add `*, training: bool` to its signature.")
    if name in _REGISTRY and _REGISTRY[name] is not factory and not override:
      raise ValueError(
          f"Preprocessing op {name!r} is already registered (by "
          f"{_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}); pass "
          f"override=True to replace it or choose another name.")
    _REGISTRY[name] = factory
    return factory

  return decorator


def _ensure_builtins() -> None:
  importlib.import_module(_BUILTIN_OPS_MODULE)


def registered_ops() -> List[str]:
  """Returns the sorted names of all registered ops (built-ins included)."""
  _ensure_builtins()
  return sorted(_REGISTRY)


def get_op_factory(name: str) -> OpFactory:
  """Returns the factory registered under `name`.

  Raises:
    ValueError: naming the unknown op and listing every registered op.
  """
  _ensure_builtins()
  if name not in _REGISTRY:
    raise ValueError(
        f"Unknown preprocessing op {name!r}. Registered ops: "
        f"{', '.join(registered_ops())}.")
  return _REGISTRY[name]


OpSpec = Tuple[str, Tuple[Any, ...], Dict[str, Any]]


def _flatten_pipes(node: ast.AST) -> List[ast.AST]:
  # `a|b|c` parses as ((a|b)|c): unfold the left-nested BitOr chain in order.
  if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
    return _flatten_pipes(node.left) + _flatten_pipes(node.right)
  return [node]


_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
}


def _literal(node: ast.AST) -> Any:
  """ast.literal_eval plus arithmetic between numbers.

  Configs write fractions like `to_gray(2/3)` (the the protocol's own pipeline), which
  plain literal_eval rejects; only numeric constants may be combined, so this
  still evaluates nothing but literals.
  """
  if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
    left, right = _literal(node.left), _literal(node.right)
    for operand in (left, right):
      if isinstance(operand, bool) or not isinstance(operand, (int, float)):
        raise ValueError(f"arithmetic is allowed between numbers only; got {operand!r}")
    try:
      return _ARITHMETIC[type(node.op)](left, right)
    except ZeroDivisionError:
      raise ValueError("division by zero") from None
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
    operand = _literal(node.operand)
    if isinstance(operand, bool) or not isinstance(operand, (int, float)):
      raise ValueError(f"unary sign is allowed on numbers only; got {operand!r}")
    return -operand if isinstance(node.op, ast.USub) else operand
  if isinstance(node, (ast.Tuple, ast.List)):
    items = [_literal(e) for e in node.elts]
    return tuple(items) if isinstance(node, ast.Tuple) else items
  if isinstance(node, ast.Dict):
    if any(k is None for k in node.keys):
      raise ValueError("`**` unpacking is not supported")
    return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
  return ast.literal_eval(node)


def _parse_op(node: ast.AST, text: str) -> OpSpec:
  """Turns one parsed op (`name` or `name(args)`) into (name, args, kwargs)."""
  source = ast.get_source_segment(text, node) or ast.dump(node)
  if isinstance(node, ast.Name):
    return node.id, (), {}
  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
    name = node.func.id
    try:
      args = tuple(_literal(a) for a in node.args)
      kwargs = {}
      for kw in node.keywords:
        if kw.arg is None:
          raise ValueError("`**` unpacking is not supported")
        kwargs[kw.arg] = _literal(kw.value)
    except (ValueError, SyntaxError, TypeError) as e:
      raise ValueError(
          f"Arguments of op {name!r} in {source!r} must be Python literals "
          f"(numbers, arithmetic on numbers such as 2/3, strings, tuples, lists, None, "
          f"True/False): {e}") from None
    return name, args, kwargs
  raise ValueError(
      f"Cannot parse op {source!r} in pipeline {text!r}: each op must be `name` "
      f"or `name(literal args)`, ops separated by `|`.")


def parse_pipeline(pipeline: Union[str, Sequence[str]]) -> List[OpSpec]:
  """Parses a pipeline string into a list of (name, args, kwargs).

  Args:
    pipeline: ops separated by `|` (whitespace and newlines are tolerated), or
      a sequence of such strings, which are concatenated in order. An empty
      string (or sequence) is the empty pipeline.

  Returns:
    One (name, positional args tuple, keyword args dict) per op, in order.

  Raises:
    ValueError: if the string is not a `|`-separated list of ops with literal
      arguments.
  """
  if isinstance(pipeline, str):
    text = pipeline
  elif isinstance(pipeline, Sequence) and all(isinstance(p, str) for p in pipeline):
    text = "|".join(p for p in pipeline if p.strip())
  else:
    raise ValueError(
        f"A pipeline must be a string like 'decode|resize(32)' or a sequence of "
        f"such strings; got {pipeline!r}.")
  # Newlines let configs spread a long pipeline over several lines.
  text = " ".join(text.split())
  if not text:
    return []
  try:
    tree = ast.parse(text, mode="eval")
  except SyntaxError as e:
    raise ValueError(
        f"Cannot parse pipeline {pipeline!r}: {e.msg}. Write ops as `name` or "
        f"`name(literal args)` separated by `|`, e.g. "
        f"'decode|resize(256)|to_gray(p=0.5)'.") from None
  return [_parse_op(node, text) for node in _flatten_pipes(tree.body)]


def format_pipeline(ops: Sequence[OpSpec]) -> str:
  """Parsed (name, args, kwargs) ops back to a pipeline string.

  `parse_pipeline(format_pipeline(ops)) == ops` for ops with literal arguments.
  """
  texts = []
  for name, args, kwargs in ops:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    texts.append(f"{name}({', '.join(parts)})" if parts else name)
  return "|".join(texts)


def _build_op(name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any],
              training: bool) -> PreprocessFn:
  factory = get_op_factory(name)
  signature = inspect.signature(factory)
  if "training" in kwargs:
    raise ValueError(
        f"Op {name!r} got `training` in the pipeline string; it is set by "
        f"get_preprocess_fn(..., training=...). Signature: {name}{signature}.")
  try:
    signature.bind(*args, training=training, **kwargs)
  except TypeError as e:
    raise ValueError(
        f"Bad arguments for preprocessing op {name!r}: {e}. Signature: "
        f"{name}{signature}.") from None
  op = factory(*args, training=training, **kwargs)
  if not callable(op):
    raise ValueError(f"Factory of op {name!r} returned {op!r}, not a function.")
  return op


def get_preprocess_ops(pipeline: Union[str, Sequence[str]], *,
                       training: bool) -> List[PreprocessFn]:
  """Builds the ops of a pipeline, each a function of one example's features.

  All ops are constructed here, so unknown names and bad arguments fail at
  build time, before any data flows. Ops marked with :func:`batchable` may
  also be applied to a whole batch; see there.

  Raises:
    ValueError: as get_preprocess_fn.
  """
  if not isinstance(training, bool):
    raise ValueError(f"`training` must be True or False; got {training!r}.")
  return [_build_op(name, args, kwargs, training)
          for name, args, kwargs in parse_pipeline(pipeline)]


def compose(ops: Sequence[PreprocessFn]) -> PreprocessFn:
  """The function applying `ops` in order; the input dict is not mutated."""
  ops = list(ops)

  def preprocess_fn(features: Features) -> Features:
    if not isinstance(features, dict):
      raise ValueError(
          f"Preprocessing expects a dict of features of one example; got "
          f"{type(features).__name__}.")
    features = dict(features)
    for op in ops:
      features = op(features)
    return features

  return preprocess_fn


def get_preprocess_fn(pipeline: Union[str, Sequence[str]], *,
                      training: bool) -> PreprocessFn:
  """Builds the function applying a pipeline of ops to one example.

  Args:
    pipeline: e.g. "decode|inception_crop(224)|flip_lr|value_range(-1, 1)";
      see parse_pipeline. The empty string gives the identity.
    training: selects the training behaviour of each op (random crops, flips,
      colour distortion) versus the deterministic evaluation behaviour.

  Returns:
    fn(features) -> features, where features is the dict of one unbatched
    example ('image' and e.g. 'label', '_rng'). The input dict is not mutated.

  Raises:
    ValueError: for an unparsable string, an unknown op (the message lists the
      registered ops) or arguments not matching the op's signature.
  """
  return compose(get_preprocess_ops(pipeline, training=training))


def batchable(op: PreprocessFn) -> PreprocessFn:
  """Marks an op function as also correct on a batch of single images.

  A batchable op, given features whose 'image' is a batch [B, H, W, C] of
  equally sized images (and every other feature with a leading B), returns
  for each b exactly what it returns on example b alone, and draws no random
  seed. The input pipeline then runs such ops once per batch instead of once
  per example, which on a CPU costs several times less (tf.data spends a few
  microseconds on every call of a per-example map). Op factories mark the
  functions they return, so that one op can be batchable for some arguments
  only (to_gray with an evaluation probability of 0 or 1, not in between).
  """
  op.batchable = True
  return op


def is_batchable(op: PreprocessFn) -> bool:
  return getattr(op, "batchable", False)


def next_seed(features: Features) -> Tuple[tf.Tensor, Features]:
  """Draws a stateless seed for one random op and advances features['_rng'].

  `features['_rng']` (shape [2], int32 or int64) is split in two: one half is
  returned for the op, the other replaces `_rng`, so consecutive random ops
  in a pipeline get independent seeds while the whole pipeline stays a pure
  function of the initial `_rng`.

  Without `_rng` (e.g. eager use on a single image) the seed is drawn from the
  global, stateful `tf.random.uniform`: results are then random but not
  reproducible, and the returned features carry no `_rng`.

  Args:
    features: the feature dict of one example.

  Returns:
    (seed, features): a shape-[2] seed tensor usable by `tf.random.stateless_*`
    and `tf.image.stateless_*` ops, and a shallow copy of `features` with the
    advanced `_rng`.
  """
  features = dict(features)
  if RNG_KEY not in features:
    seed = tf.random.uniform([2], minval=0, maxval=tf.int32.max, dtype=tf.int32)
    return seed, features
  rng = tf.convert_to_tensor(features[RNG_KEY])
  if rng.dtype not in (tf.int32, tf.int64):
    raise ValueError(
        f"features['{RNG_KEY}'] must be an int32 or int64 seed of shape [2]; "
        f"got dtype {rng.dtype.name}.")
  rng.shape.assert_is_compatible_with([2])
  carry, seed = tf.unstack(tf.random.experimental.stateless_split(rng, num=2))
  features[RNG_KEY] = carry
  return seed, features


def split_seed(seed: tf.Tensor, num) -> tf.Tensor:
  """Splits a shape-[2] seed into `num` independent seeds, shape [num, 2].

  `num` may be a Python int or a scalar tensor (e.g. the dynamic size of a
  stack of images).
  """
  seed = tf.convert_to_tensor(seed)
  # Same construction as tf.random.experimental.stateless_split, which only
  # accepts a static `num`.
  return tf.random.stateless_uniform(
      tf.stack([num, 2]), seed=seed, minval=None, maxval=None, dtype=seed.dtype)
