"""The evaluation heads: a linear layer (Table 2) or Sec. 4.3's MLP."""
import keras

HEADS = ("linear", "mlp")


def build_head(head: str, num_classes: int, *, hidden_units: int = 1000,
               dropout: float = 0.5, weight_decay: float = 0.0,
               normalize: bool = True, seed: int = 0) -> keras.Model:
  """Features [B, D] -> logits [B, num_classes]; built on first call.

  normalize: standardise each feature first, with batch statistics in training
  and their moving average at test time (a BatchNormalization without scale
  or offset, so a linear head stays one affine map at test time). Why:
  features of different trunks and layers differ in scale by orders of
  magnitude (a random-init ResNet's pre_logits reach 1e3), and one SGD
  learning rate cannot suit them all; unnormalised, the MLP's ReLUs die at
  once on such features. False gives the paper's head literally.
  """
  if head not in HEADS:
    raise ValueError(f"Unknown evaluation head {head!r}; use one of {HEADS}.")
  reg = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
  init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
  layers = []
  if normalize:
    layers.append(keras.layers.BatchNormalization(
        center=False, scale=False, momentum=0.9, synchronized=True,
        name="normalize"))
  if head == "mlp":
    layers += [keras.layers.Dense(hidden_units, activation="relu",
                                  kernel_initializer=init(1),
                                  kernel_regularizer=reg, name="hidden"),
               keras.layers.Dropout(dropout, seed=seed, name="dropout")]
  layers.append(keras.layers.Dense(num_classes, kernel_initializer=init(2),
                                   kernel_regularizer=reg, name="logits"))
  return keras.Sequential(layers, name=f"{head}_head")


def hyperparameters(head: str, hidden_units: int, dropout: float) -> dict:
  """What the head adds to an entry's hyperparameters (the MLP's shape)."""
  return dict(hidden_units=hidden_units, dropout=dropout) if head == "mlp" else {}
