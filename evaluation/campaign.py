"""One evaluation campaign: trunks x datasets x seeds x protocols.

What `train_and_eval.py` evaluates after training (the trained trunk, the
random-init baseline, TF-Hub modules, on the run's dataset and every transfer
dataset) and what `python -m evaluation` evaluates (one trunk, one dataset)
is the same loop:

    for each trunk (built when its turn comes: one model in memory at a time)
      for each dataset, each seed, each protocol: protocols.run
      RankMe of the trunk on the run's held-out split (train_and_eval.py only)

Each protocols.run skips what results.json already holds; under several
workers what any one still has to do, all do (the to-do agreement inside
protocols.run and record_label_free), so no worker is left alone in a
collective. The settings are checked here too, before any training.

A preemption notice (SIGTERM, Ctrl-C) stops the campaign at the next
finished entry (an SGD head stops sooner, at its own next checkpoint; a
single process inside an L-BFGS fit or a feature extraction too,
preemption.check_inside):
everything finished is in results.json and a rerun does the rest.
"""
from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from datasets import registry as dataset_registry
from evaluation import protocols as protocols_lib
from evaluation import results as results_lib
from training import experiment as experiment_lib
from training import preemption
from training import strategy as strategy_lib
from training import workdir as workdir_lib

SEEDS_FLAG = ("--seeds", "--seeds=0,1,2")  # how the CLI's seed errors name it


def check(experiment: experiment_lib.Experiment) -> None:
  """What the run will evaluate exists: its protocols and transfer datasets.

  Cheap (builds nothing): called before hours of training, not after.

  Raises:
    ValueError: an unknown protocol or dataset, naming the known ones.
  """
  for names in experiment.transfer_datasets:
    for name in names.split("|"):
      dataset_registry.check_name(name)
  protocols_lib.check_protocols(experiment.protocols)


def seeds(values: Sequence) -> List[int]:
  """The CLI's --seeds as distinct non-negative ints (ValueError naming it)."""
  return experiment_lib.check_seeds(values, *SEEDS_FLAG)


def present_datasets(names: Sequence[str], data_dir=None, manual_dir=None) -> List:
  """The datasets of `names` whose data is there (prepared, or preparable);
  of alternatives 'a|b', the first whose data is there."""
  present = [dataset_registry.first_present(
      alternatives.split("|"), data_dir=data_dir, manual_dir=manual_dir,
      required=False, what="Transfer dataset") for alternatives in names]
  return [ds for ds in present if ds is not None]


def evaluate(trunks: Sequence[Callable[[], object]], datasets: Sequence, *,
             protocols: Sequence[str], seeds: Sequence[int], workdir: str,
             strategy=None, overrides: Optional[Dict] = None,
             label_free_split: Optional[str] = None) -> List[str]:
  """Runs every protocol on every trunk, dataset and seed into results.json.

  Args:
    trunks: each builds an evaluation Trunk (evaluation/trunks.py) when its
      turn comes.
    datasets: the first is the run's (the label-free measure's); the others
      are transfer datasets.
    protocols, seeds: as protocols.run takes them, each protocol once per seed.
    workdir: where results.json and the feature cache are.
    overrides: protocol arguments that win over gin (the CLI's flags).
    label_free_split: also record RankMe of each trunk's pre_logits on this
      split of `datasets[0]` (evaluation/label_free.py).

  Returns:
    The names of the trunks evaluated, in order.
  """
  cache = protocols_lib.make_cache(workdir)
  names = []
  for make_trunk in trunks:
    trunk = make_trunk()
    names.append(trunk.name)
    for dataset in datasets:
      for seed in seeds:
        for protocol in protocols:
          protocols_lib.run(protocol, trunk, dataset, workdir=workdir,
                            cache=cache, strategy=strategy, overrides=overrides,
                            seed=seed)
          _stop_if_preempted(strategy, workdir)
    if label_free_split is not None:
      # Label-free model selection: RankMe of every trunk's pre_logits
      # (docs/protocol.md §1: all six have one) on the held-out split the pretext accuracy is
      # measured on.
      protocols_lib.record_label_free(trunk, datasets[0], label_free_split,
                                      workdir=workdir, cache=cache,
                                      strategy=strategy)
      _stop_if_preempted(strategy, workdir)
  return names


def table(workdir: str, entries: Sequence[Dict]) -> str:
  """results_lib.format_table of `entries` read from workdir's results.json.

  Raises:
    ValueError: an entry holds a value that is no number where one belongs
      (the file edited by hand), naming the file and the entry.
  """
  try:
    return results_lib.format_table(entries)
  except (TypeError, ValueError, KeyError) as e:
    path = workdir_lib.of(workdir).results_json
    for entry in entries:
      try:
        results_lib.format_table([entry])
      except (TypeError, ValueError, KeyError):
        break
    else:
      entry = {}
    raise ValueError(
        f"{path} holds a value the summary cannot read ({e}) in the entry "
        f"{entry.get('protocol')} / {entry.get('trunk')} / {entry.get('layer')}: "
        f"was it edited by hand? Restore the value, or delete the entry (a "
        f"rerun recomputes it).") from None


def _stop_if_preempted(strategy, workdir) -> None:
  """Raises Preempted when a notice came, on every worker at once
  (strategy.agree: a stop only some workers make strands the others)."""
  (stop,) = strategy_lib.agree(strategy or tf.distribute.get_strategy(),
                               preemption.requested())
  if stop:
    raise preemption.Preempted(
        f"Stopped the evaluation between entries on a preemption notice; every "
        f"finished one is in {workdir_lib.of(workdir).results_json}. Rerun the "
        f"same command to do the rest.")
