"""Mixed precision: one switch (`train.precision`), resolved per device kind.

  'float32'   everything in float32 (the default: what every number in the
              README was measured with).
  'mixed'     the fast dtype of the device: bfloat16 on a TPU and on CPUs
              with AVX512-BF16 / AMX-BF16, float16 with dynamic loss scaling
              on a GPU; float32 (with a note) on a CPU without bf16 units.
  'bfloat16', 'float16'
              that compute dtype, wherever the run is.

Under a mixed policy the layers compute in the low dtype and keep float32
variables; what must stay float32 does so where it is computed: Keras's
BatchNormalization upcasts its statistics to float32, the trunks' end points
and every task's logits leave the network as float32 (models/layers.py,
self_supervision/patch_task.py), so losses, metrics, the feature cache, the
L-BFGS solver and exported modules see float32. The policy applies to the
layers built inside `policy_scope`; a checkpoint of a mixed run holds float32
variables, so it restores into a float32 model (evaluation, export) as is.
"""
import contextlib
from typing import Iterator

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed", "bfloat16", "float16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
             "float16": "mixed_float16"}


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
  """True when the CPU advertises bfloat16 arithmetic (AVX512-BF16 or AMX)."""
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith("flags"):
          flags = line.split(":", 1)[1].split()
          return "avx512_bf16" in flags or "amx_bf16" in flags
  except OSError:
    pass
  return False


def device_kind(strategy: tf.distribute.Strategy) -> str:
  """'tpu', 'gpu' or 'cpu': where `strategy`'s replicas compute."""
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return "tpu"
  try:
    devices = strategy.extended.worker_devices
  except RuntimeError:  # the default strategy: ops go to the first GPU if any
    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
  return "gpu" if any("GPU" in d.upper() for d in devices) else "cpu"


def resolve(precision: str, kind: str, log=print,
            binding: str = "train.precision") -> str:
  """The compute dtype ('float32', 'bfloat16', 'float16') for a device kind.

  Raises:
    ValueError: `precision` is not one of PRECISIONS.
  """
  if precision not in PRECISIONS:
    raise ValueError(f"Unknown {binding} {precision!r}; use one of "
                     f"{', '.join(PRECISIONS)}.")
  if precision != "mixed":
    return precision
  if kind == "tpu":
    return "bfloat16"
  if kind == "gpu":
    return "float16"
  if cpu_has_bf16():
    return "bfloat16"
  log(f"{binding} = 'mixed': this CPU has no bfloat16 units "
      "(avx512_bf16 / amx_bf16), where bfloat16 is slower than float32; "
      "computing in float32.")
  return "float32"


@contextlib.contextmanager
def policy_scope(dtype: str) -> Iterator[None]:
  """Layers built inside compute in `dtype` (float32 variables either way).

  The global Keras policy is restored on exit, so models built later
  (evaluation, export) are float32 unless they ask otherwise.
  """
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(_POLICIES[dtype])
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def wrap_optimizer(optimizer, dtype: str):
  """float16 needs dynamic loss scaling (its gradients underflow); others not.

  The returned optimizer's `iterations` is the inner optimizer's, so the
  step counter, schedule and checkpoints read the same variable. A step
  whose gradients overflow is skipped (the scale halves) and does not
  count as a step.
  """
  if dtype == "float16":
    return keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def scale_loss(optimizer, loss: tf.Tensor) -> tf.Tensor:
  """The loss to differentiate: scaled when `optimizer` scales losses."""
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    return optimizer.scale_loss(loss)
  return loss

