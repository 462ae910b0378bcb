"""Every evaluation protocol behind one name, run on any trunk.

  linear_lbfgs         Table 1: L-BFGS logistic regression on cached features
  linear_sgd           Table 2: SGD linear layer on augmented images
  mlp_sgd              Sec. 4.3: MLP (1000 ReLU, dropout 0.5) on augmented images
  linear_sgd_features  the SGD linear layer on cached features (fast variant)
  mlp_sgd_features     the MLP on cached features (fast variant)
  knn                  Wu et al. 2018: weighted kNN votes on cached features
  finetune             the whole trunk and a linear head, SGD on augmented images

`TABLE` holds one record per protocol; nothing here parses a protocol's name.
Naming: protocols come in three families, each one gin-configurable
`evaluate` whose gin scope is `<family>_eval`: `linear_eval.*`
(evaluation/linear_eval.py) for linear_lbfgs, `knn_eval.*` (evaluation/knn.py)
for knn, `sgd_eval.*` (evaluation/sgd_eval.py) for the SGD heads, whose record
names the head, inputs and finetune arguments that make each one.
`overrides` (from command-line flags) take precedence over gin. The low-data
regime is `fraction` < 1 on any of them. The protocols on extracted features
read them in `extraction.precision` (evaluation/representations.py); an entry
computed from bfloat16 or float16 features says so in its
`extraction_precision` field (float32 ones have none).
"""
import dataclasses
import inspect
import json
from typing import Callable, Dict, List, Optional, Sequence

import gin
import tensorflow as tf

from evaluation import feature_cache
from evaluation import knn
from evaluation import label_free
from evaluation import linear_eval
from evaluation import representations
from evaluation import results as results_lib
from evaluation import sgd_eval
from self_supervision import task as task_lib
from training import strategy as strategy_lib
from training import workdir as workdir_lib

# A family's gin-configurable evaluate function; its gin scope is
# `<family>_eval`.
FAMILIES = {"linear": linear_eval.evaluate, "sgd": sgd_eval.evaluate,
            "knn": knn.evaluate}


@dataclasses.dataclass(frozen=True)
class Protocol:
  """One evaluation protocol.

  Attributes:
    name: results.json's `protocol`, what --protocol and experiment.protocols
      take.
    family: 'linear', 'sgd' or 'knn' (FAMILIES): the function that runs it.
    on_features: it reads the feature cache (and so the extraction precision);
      False: it runs the trunk inside its own steps on images.
    seeded: a seed sets more than its low-data subset (an SGD head's
      initialisation, dropout, shuffling); False: at fraction 1 every seed
      gives seed 0's result.
    arguments: what the family's function takes to be this protocol.
  """
  name: str
  family: str
  on_features: bool
  seeded: bool
  arguments: Dict = dataclasses.field(default_factory=dict)

  @property
  def evaluate(self) -> Callable:
    return FAMILIES[self.family]

  @property
  def scope(self) -> str:
    return f"{self.family}_eval"

  @property
  def trains_heads(self) -> bool:
    """One SGD-trained head per layer, each in its own workdir directory."""
    return self.family == "sgd"

  @property
  def layer_argument(self) -> str:
    """The setting naming its layers: one per head run, or a list."""
    return "layer" if self.trains_heads else "layers"


def _sgd(head: str, inputs: str, finetune: bool = False) -> Protocol:
  return Protocol(sgd_eval.protocol_name(head, inputs, finetune), "sgd",
                  on_features=inputs == "features", seeded=True,
                  arguments=dict(head=head, inputs=inputs, finetune=finetune))


TABLE = {p.name: p for p in (
    Protocol(linear_eval.PROTOCOL, "linear", on_features=True, seeded=False),
    _sgd("linear", "images"),
    _sgd("mlp", "images"),
    _sgd("linear", "features"),
    _sgd("mlp", "features"),
    Protocol(knn.PROTOCOL, "knn", on_features=True, seeded=False),
    _sgd("linear", "images", finetune=True),
)}
PROTOCOLS = tuple(TABLE)
# Protocols whose only randomness is the low-data subset: at fraction 1 every
# seed gives seed 0's result, so only seed 0 runs.
DETERMINISTIC_AT_FULL_DATA = tuple(p.name for p in TABLE.values() if not p.seeded)


def check_protocols(names: Sequence[str]) -> List[str]:
  unknown = [n for n in names if n not in PROTOCOLS]
  if unknown:
    raise ValueError(f"Unknown evaluation protocol(s) {unknown}; use any of "
                     f"{', '.join(PROTOCOLS)}.")
  return list(names)


@gin.configurable("feature_cache")
def make_cache(workdir: str, enabled: bool = True, dtype: str = "float32",
               root: Optional[str] = None
               ) -> Optional[feature_cache.FeatureCache]:
  """The run's feature cache (`<workdir>/features` unless `root` is given)."""
  if not enabled:
    return None
  return feature_cache.FeatureCache(root or workdir_lib.of(workdir).features,
                                    dtype=dtype)


def resolved_settings(fn, overrides: Dict) -> Dict:
  """The keyword arguments `fn` (a gin configurable) will run with.

  Its own defaults, then gin's bindings, then `overrides`: read from the
  function itself, so no default is restated here.
  """
  settings = {name: p.default
              for name, p in inspect.signature(fn).parameters.items()
              if p.default is not inspect.Parameter.empty}
  settings.update(gin.get_bindings(fn))
  settings.update(overrides)
  return settings


def _entry_settings(protocol: str, overrides: Dict):
  """(layers, pooling, fraction) the protocol will use: for the 'done?' test."""
  settings = resolved_settings(TABLE[protocol].evaluate, overrides)
  # `layers` lists linear_eval's end points, or several for an SGD head.
  layers = settings.get("layers") or [settings["layer"]]
  return list(layers), settings["pooling"], float(settings["fraction"])


_SPLIT_ARGS = ("train_split", "val_split", "eval_split")

# Arguments that say how a number is computed, not which: left out of an
# entry's settings. The layer, pooling, fraction and seed are keys of their
# own (results._ENTRY_KEY); an SGD head's batch size sets its learning rate
# and stays in.
_NOT_SETTINGS = {
    "linear": ("layers", "batch_size", "max_in_memory_gb", "chunk_rows",
               "subset_seed"),
    "knn": ("layers", "batch_size", "chunk_rows", "subset_seed"),
    "sgd": ("layer", "layers", "eval_batch_size", "steps_per_loop", "seed", "subset_seed"),
}


def entry_settings(protocol: str, preprocess: str, precision: str,
                   overrides: Dict) -> Dict:
  """Everything that changes a `protocol` entry's number (results.json
  `settings`): the protocol's resolved arguments (resolved_settings, less
  _NOT_SETTINGS), the representation pipeline `preprocess` and the
  `precision` the features were extracted in (float32 for the protocols
  that run the trunk in their own steps). JSON values (tuples as lists)."""
  record = TABLE[protocol]
  settings = {k: v for k, v in resolved_settings(record.evaluate, overrides).items()
              if k not in _NOT_SETTINGS[record.family]}
  settings.update(record.arguments, preprocess=preprocess,
                  precision=precision if record.on_features else "float32")
  return json.loads(json.dumps(settings, default=repr))


def recorded(protocol: str, settings: Dict) -> Dict:
  """What an entry of these settings records of its splits, selection rule
  and precision: how an entry written without settings is matched
  (results.legacy_matches)."""
  record = TABLE[protocol]
  if record.family == "linear":
    out = linear_eval.recorded_splits(**settings)
  else:
    out = dict(train_split=settings["train_split"],
               eval_split=settings["eval_split"])
  precision = settings["precision"]
  out["extraction_precision"] = None if precision == "float32" else precision
  return out


def check_settings(protocols: Sequence[str], datasets: Sequence,
                   end_points: Sequence[str]) -> None:
  """Before any training: each protocol's layers are end points of the trunk
  and its splits exist in every dataset it will be scored on.

  Raises:
    ValueError: naming the binding, the bad value and the valid ones.
  """
  for protocol in check_protocols(protocols):
    record = TABLE[protocol]
    scope = record.scope
    layers, _, _ = _entry_settings(protocol, {})
    unknown = [l for l in layers if l not in end_points]
    if unknown:
      raise ValueError(
          f"{protocol}: {scope}.{record.layer_argument} names {unknown}, not "
          f"end points of this trunk; it has {', '.join(end_points)}.")
    settings = resolved_settings(record.evaluate, {})
    for arg in _SPLIT_ARGS:
      split = settings.get(arg)
      if split is None:
        continue
      for ds in datasets:
        try:
          ds.num_examples(split)
        except (ValueError, KeyError) as e:
          raise ValueError(f"{protocol}: {scope}.{arg} = {split!r}, which "
                           f"{ds.name} lacks ({e}).") from e


def _agreed(strategy, items: Sequence[str], todo: Sequence[str]) -> List[str]:
  """The `items` any worker still has to do, from each one's `todo`.

  Workers read results.json at their own pace: a slower one may find an entry
  the chief has just written (a fit on cached features needs no collective to
  hold it back). Skipping it while the chief did not would leave the chief
  alone in the next collective; so what one worker still has to do, all do.
  """
  flags = strategy_lib.agree(strategy or tf.distribute.get_strategy(),
                             *[item in todo for item in items])
  return [item for item, flag in zip(items, flags) if flag]


def seed_arguments(protocol: str, seed: int) -> Dict:
  """What a protocol's seed sets: the SGD heads' initialisation, dropout and
  shuffling, and for every protocol the low-data subset."""
  if protocol in DETERMINISTIC_AT_FULL_DATA:
    return dict(subset_seed=seed)
  return dict(seed=seed, subset_seed=seed)


def run(protocol: str, trunk, dataset, *, workdir: str, cache=None,
        strategy=None, log: Callable[[str], None] = print,
        overrides: Optional[Dict] = None, seed: int = 0) -> List[Dict]:
  """Runs `protocol` on `trunk` and merges its entries into workdir/results.json.

  Layers, pooling, fraction and seed already in results.json for this trunk
  and protocol are skipped, so a re-run only adds what is missing.

  overrides: protocol arguments that win over gin (layers, pooling, fraction,
  l2_grid, ...); `layers` may list several end points for every protocol.
  seed: the evaluation's seed (`seed_arguments`), recorded in each entry; run
  seeds 0, 1, 2 for mean ± standard deviation (results.over_seeds).
  """
  check_protocols([protocol])
  overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
  layers, pooling, fraction = _entry_settings(protocol, overrides)
  if seed != 0 and protocol in DETERMINISTIC_AT_FULL_DATA and fraction == 1.0:
    log(f"{protocol} uses every label: seed {seed} would repeat seed 0's result; "
        f"skipped (seeds vary its low-data subset).")
    return []
  record = TABLE[protocol]
  if trunk.end_points is not None:
    # A control without layers (the pixels): its own end point stands in.
    layers = list(trunk.end_points)
    if record.arguments.get("finetune"):
      raise ValueError(f"{protocol} trains the trunk; the {trunk.name} control "
                       f"has none. Evaluate it with another protocol.")
  # The image protocols run the float32 trunk in their own steps; only
  # features extracted for the others can be of another precision.
  dtype = representations.extraction_dtype(trunk.task, trunk.model, strategy,
                                           log=lambda _: None)
  settings = entry_settings(protocol,
                            trunk.task.preprocess(task_lib.REPRESENTATION),
                            dtype, dict(overrides, pooling=pooling,
                                        fraction=fraction))
  done = results_lib.load(workdir)
  own = done["run"].get("dataset")
  transfer = own is not None and dataset.name != own
  todo = [l for l in layers if not results_lib.has_entry(
      done, protocol=protocol, trunk=trunk.name, layer=l, pooling=pooling,
      fraction=fraction, dataset=dataset.name, seed=seed, settings=settings,
      recorded=recorded(protocol, settings))]
  todo = _agreed(strategy, layers, todo)
  on = f" on {dataset.name}" if transfer else ""
  with_seed = f", seed {seed}" if seed else ""
  if not todo:
    log(f"{protocol} of the {trunk.name} trunk{on} ({', '.join(layers)}"
        f"{with_seed}) already in results.json.")
    return []
  log(f"{protocol} of the {trunk.name} trunk{on}: {', '.join(todo)}"
      + (f", {100 * fraction:g}% of the labels" if fraction < 1 else "") + with_seed)
  kwargs = dict(overrides, pooling=pooling, fraction=fraction,
                **seed_arguments(protocol, seed))
  kwargs.pop("layers", None)
  common = dict(cache=cache, strategy=strategy, log=log)
  if record.trains_heads:
    # Another dataset's heads train in their own tree: same names inside.
    root = workdir_lib.of(workdir)
    root = root.transfer(dataset.name) if transfer else root
    entries = []
    for layer in todo:
      entries += record.evaluate(trunk, dataset, root, layer=layer,
                                 **record.arguments, **common, **kwargs)
  else:
    entries = record.evaluate(trunk, dataset, layers=todo, **record.arguments,
                              **common, **kwargs)
  for e in entries:
    e["dataset"] = dataset.name
    e["seed"] = seed
    e["settings"] = settings
    # What the report's standard errors and failed-fit rule read
    # (docs/protocol.md §9).
    e["eval_examples"] = int(dataset.num_examples(e["eval_split"]))
    e["num_classes"] = int(dataset.num_classes)
    if dtype != "float32" and record.on_features:
      e["extraction_precision"] = dtype
  results_lib.update(workdir, evaluations=entries)
  # Every worker decides what is still to do from results.json: none reads
  # it again before the chief has written it.
  strategy_lib.barrier(strategy or tf.distribute.get_strategy())
  return entries


def record_label_free(trunk, dataset, split: str, *, workdir: str, cache=None,
                      strategy=None, layer: str = "pre_logits",
                      log: Callable[[str], None] = print) -> Optional[Dict]:
  """RankMe and alpha-ReQ of `trunk`'s `layer` on `split`, merged into
  results.json.

  Uses linear_eval's pooling and batch size, so the features the linear
  protocol cached are read back rather than extracted again. None when the
  trunk has no such layer or the entry is there already.
  """
  settings = resolved_settings(linear_eval.evaluate, {})
  pooling = settings["pooling"]
  done = results_lib.load(workdir).get("label_free", [])
  there = any(e["trunk"] == trunk.name and e["dataset"] == dataset.name
              and e["layer"] == layer and e["split"] == split
              and e["pooling"] == pooling
              # Measured before alpha-ReQ was recorded: measured again.
              and "alpha_req" in e for e in done)
  if not _agreed(strategy, [layer], [] if there else [layer]):
    return None
  features = feature_cache.read_splits(
      trunk, dataset, [split], [layer], pooling=pooling,
      batch_size=settings["batch_size"], cache=cache, strategy=strategy,
      log=log)[split][0][layer]
  e = label_free.entry(trunk.name, dataset.name, layer, split, pooling, features)
  log(f"  RankMe [{trunk.name}] {layer} on {split}: {e['rankme']:.1f} "
      f"of {min(e['examples'], e['dim'])} dimensions; alpha-ReQ "
      f"{e['alpha_req']}")
  results_lib.update(workdir, label_free=[e])
  strategy_lib.barrier(strategy or tf.distribute.get_strategy())
  return e
