"""A run's `experiment` settings: which task on which dataset, and its seed.

Gin configures the builder function `experiment_settings` (gin name
`experiment`), never the class; it returns a frozen `Experiment`. The names
it holds that belong to the rooms above (evaluation protocols, transfer
datasets) are checked there, before training (evaluation/campaign.check), so
that this bottom room imports neither.
"""
import dataclasses
from typing import List, Sequence, Tuple

import gin


def check_seeds(values: Sequence, setting: str, example: str) -> List[int]:
  """Evaluation seeds as distinct non-negative ints, in their order.

  setting, example: how the error names the setting and a good value, e.g.
  ('--seeds', '--seeds=0,1,2').

  Raises:
    ValueError: a value is not an integer, is negative, or there is none.
  """
  try:
    seeds = [int(v) for v in values]
  except (TypeError, ValueError):
    raise ValueError(f"{setting} takes integers, e.g. {example} (got "
                     f"{','.join(str(v) for v in values)}).") from None
  if not seeds or min(seeds) < 0:
    raise ValueError(f"{setting} takes non-negative integers, e.g. {example}.")
  return list(dict.fromkeys(seeds))


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Top-level identity of a run (see `experiment_settings` for each field)."""
  task: str
  dataset: str
  seed: int = 0
  linear_eval_enabled: bool = True
  evaluate_random_init: bool = False
  evaluate_pixels: bool = False
  hub_modules: Tuple[str, ...] = ()
  protocols: Tuple[str, ...] = ("linear_lbfgs",)
  transfer_datasets: Tuple[str, ...] = ()
  eval_seeds: Tuple[int, ...] = (0,)

  @property
  def evaluated_protocols(self) -> Tuple[str, ...]:
    """The protocols the run evaluates: none when linear_eval_enabled is off."""
    return self.protocols if self.linear_eval_enabled else ()


@gin.configurable("experiment")
def experiment_settings(task: str = gin.REQUIRED, dataset: str = gin.REQUIRED,
                        seed: int = 0, linear_eval_enabled: bool = True,
                        evaluate_random_init: bool = False,
                        evaluate_pixels: bool = False,
                        hub_modules: Sequence[str] = (),
                        protocols: Sequence[str] = ("linear_lbfgs",),
                        transfer_datasets: Sequence[str] = (),
                        eval_seeds: Sequence[int] = (0,)) -> Experiment:
  """Top-level identity of a run: which task on which dataset, and its seed.

  evaluate_random_init: also evaluate the trunk at initialisation (the paper's
  "Rnd" baseline) with the same protocol, for comparison.
  evaluate_pixels: also evaluate the pixels control (the representation
  pipeline's images as features, evaluation/trunks.py) with the same protocols.
  hub_modules: exported TF-Hub module paths (any run's export/hub/<step>,
  from this project: a SavedModel made elsewhere names no end points or input
  pipeline) to evaluate with the same protocol and dataset.
  protocols: evaluation protocols run on every trunk (evaluation/protocols.py:
  linear_lbfgs, linear_sgd, mlp_sgd, linear_sgd_features, mlp_sgd_features).
  transfer_datasets: other datasets every trunk is also evaluated on with the
  same protocols and splits, into the same results.json (entries name their
  dataset): the paper's Places evaluation of every model. One whose data is
  not there (FileNotFoundError from its prepare()) is skipped with a message;
  evaluate it later with `python -m evaluation --dataset=NAME`. 'a|b' names
  alternatives: the first whose data is there ('places205|places365': the
  paper's Places205 when its archives are there, else tfds's Places365).
  eval_seeds: every protocol runs once per seed (its entries say which); the
  summary shows mean ± standard deviation over them (protocols.seed_arguments
  says what a seed changes).
  """
  return Experiment(
      task=task, dataset=dataset, seed=seed,
      linear_eval_enabled=linear_eval_enabled,
      evaluate_random_init=evaluate_random_init,
      evaluate_pixels=evaluate_pixels,
      hub_modules=tuple(hub_modules), protocols=tuple(protocols),
      transfer_datasets=tuple(transfer_datasets),
      eval_seeds=tuple(check_seeds(eval_seeds, "experiment.eval_seeds",
                                   "[0, 1, 2]")))
