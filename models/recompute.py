"""Activation-memory savings for wide trunks: recomputed blocks (gin: `memory_saving.mode`).

A training step keeps the activations of the forward pass until the
backward pass has used them; they grow with width x batch x pixels, the
parameters' gradients only with width squared, so at large widths and
resolutions they are most of the step's memory. Two ways to trade compute
for them, chosen per trunk at construction time:

  'none'        keep everything (the default; exactly the plain network).
  'recompute'   each block (ResNet/RevNet block1..4, VGG's five conv stages)
                keeps only its input; the backward pass runs the block again
                to get its activations, one block at a time.
  'reversible'  revnet50 only: each block keeps only its output (and reads
                its input from tensors kept anyway); the backward pass walks
                the units last to first and rebuilds each unit's input from
                its output (models/revnet.py), so no unit's input is stored.

What neither touches: the root (conv, max-pool) and the head, whose
activations, at stride 2 and 64k channels for RevNet, then set the peak.

Both are `tf.custom_gradient`s whose forward pass is not recorded on the
gradient tape; the results and gradients equal the plain network's up to
float round-off (tests/models/test_recompute.py), eagerly and in a
tf.function (under jit_compile too, checked by hand). 'recompute' is
bit-identical eagerly; in a tf.function grappler may fuse a forward pass
whose activations nobody else reads differently, a round-off-level change.

Batch norm: a recomputation in training mode normalises with the batch
statistics, as the forward pass did, but must not move the moving statistics
a second time; `frozen_moving_statistics` makes that update write back the
value it read.
"""
import contextlib

import gin
import keras
import tensorflow as tf
# No public equivalent; tf.recompute_grad uses it for the same purpose
# (`unrecorded`).
from tensorflow.python.eager import record

MODES = ('none', 'recompute', 'reversible')


@gin.configurable
def memory_saving(mode='none'):
  """The trunks' activation-memory mode (gin: `memory_saving.mode`).

  Read by every trunk at construction time (see the module docstring for the
  modes). It changes what is stored for the backward pass, not the network:
  variables, checkpoints and outputs are those of 'none'.

  Returns:
    `mode`, checked.

  Raises:
    ValueError: `mode` is not one of MODES.
  """
  return check_mode(mode)


def check_mode(mode):
  """Returns `mode` if it is one of MODES, else raises ValueError listing them."""
  if mode not in MODES:
    raise ValueError(f'Unknown memory_saving.mode {mode!r}; use one of '
                     f'{", ".join(MODES)}.')
  return mode


def trunk_mode(mode, trunk_name, reversible_units=False):
  """The mode a trunk runs in: `mode`, or the gin-bound one when None.

  Args:
    mode: one of MODES, or None for `memory_saving()`.
    trunk_name: the trunk's name, for the error message.
    reversible_units: whether the trunk's blocks can run 'reversible'.

  Raises:
    ValueError: unknown mode, or 'reversible' for a trunk without reversible
      units (only revnet50 has them).
  """
  mode = memory_saving() if mode is None else check_mode(mode)
  if mode == 'reversible' and not reversible_units:
    raise ValueError(
        f"memory_saving.mode = 'reversible' rebuilds each unit's input from its "
        f"output, which only revnet50's reversible units allow, not {trunk_name}'s; "
        f"use memory_saving.mode = 'recompute' for {trunk_name} (each block keeps "
        f"only its input and is recomputed in the backward pass).")
  return mode


def batch_norms(layers):
  """The BatchNormalization layers in `layers` and all their sublayers."""
  found = []
  for layer in layers:
    for sublayer in layer._flatten_layers(include_self=True):  # pylint: disable=protected-access
      if isinstance(sublayer, keras.layers.BatchNormalization):
        found.append(sublayer)
  return found


@contextlib.contextmanager
def frozen_moving_statistics(layers):
  """Batch norms under `layers` leave their moving statistics as they are.

  Keras 3 updates `moving = moving * momentum + batch * (1 - momentum)` in
  training mode; with momentum 1.0 the update writes back exactly the value
  it read (m * 1 + b * 0 == m for finite b), while the layer still
  normalises with the batch statistics. So a recomputation in training mode
  reproduces the forward pass and the step moves the statistics once, as
  without recomputation (tf.recompute_grad would move them twice). In a
  tf.function, automatic control dependencies order the recomputation's
  write after the forward pass's, so it writes back the updated value.
  `momentum` is a Python float read when `call` runs (or is traced), so
  setting it around the call holds in a tf.function too.

  Args:
    layers: Keras layers whose batch norms the block runs.
  """
  norms = batch_norms(layers)
  momenta = [norm.momentum for norm in norms]
  try:
    for norm in norms:
      norm.momentum = 1.0
    yield
  finally:
    for norm, momentum in zip(norms, momenta):
      norm.momentum = momentum


def after(x, dy):
  """`x` (exactly), but computed only once `dy` exists.

  A recomputation's inputs exist from the forward pass on, so without a data
  dependency on the incoming gradient the executor may run it right away (and
  XLA ignores control dependencies), holding its activations until the
  backward pass reaches the block: the memory this module is meant to save.
  Eagerly the order is the program's and `x` is returned as is.

  Args:
    x: any floating tensor.
    dy: the block's output gradient.

  Returns:
    x + 0, where the 0 depends on `dy` (and is 0 even if `dy` holds NaN).
  """
  if tf.executing_eagerly():
    return x
  # As tf.recompute_grad: one element of dy, cast to bool (NaN included), is
  # always equal to itself, which no compiler pass folds away.
  first = tf.cast(tf.reduce_max(tf.reshape(dy, [-1])[:1]), tf.bool)
  zero = tf.where(tf.equal(first, first), 0.0, float('nan'))
  return x + tf.cast(zero, x.dtype)


def unrecorded(fn, x):
  """`fn(x)` with no gradient tape recording it.

  For the forward pass of a `tf.custom_gradient`, whose gradient function
  replaces the tape's record of it: recorded, its activations would be kept
  (eagerly) for a backward pass that never uses them.
  """
  with record.stop_recording():
    return fn(x)


def recompute(fn, layers, x):
  """`fn(x)`, keeping only `x` for the backward pass, which runs `fn` again.

  Args:
    fn: x -> y, one block of a trunk in a fixed training mode (a Python bool
      closed over), reading only the variables of `layers`.
    layers: the Keras layers `fn` calls (their batch norms are frozen while
      the backward pass recomputes).
    x: [B, H, W, C] the block input, in the layers' compute dtype.

  Returns:
    y = fn(x), [B, H', W', C'] in fn's dtype; its gradient with respect to x
    and to every trainable variable `fn` read is that of the plain `fn`.
  """

  @tf.custom_gradient
  def block(x):
    y = unrecorded(fn, x)

    def grad(dy, variables=None):
      """dy: [B, H', W', C'] -> (dx [B, H, W, C], one gradient per variable)."""
      variables = list(variables or [])
      x_again = after(x, dy)
      with tf.GradientTape() as tape:
        tape.watch(x_again)
        with frozen_moving_statistics(layers):
          y_again = fn(x_again)
      # Moving statistics are read but not differentiated: their gradient is
      # None, as are those of trainable variables the tape did not reach.
      grads = tape.gradient(y_again, [x_again] + variables, output_gradients=dy)
      return grads[0], grads[1:]

    return y, grad

  return block(x)
