r"""Exports a checkpoint of any run as a TF-Hub module (docs/protocol.md §6).

  python scripts/export_hub.py --workdir=/tmp/demo            # latest checkpoint
  python scripts/export_hub.py --workdir=/tmp/demo --step=1500 \
      --output=/tmp/demo_rotation_hub

Rebuilds the run's network from its `operative_config.gin` (task,
architecture, width, pipelines; `--config` / `--gin_bindings` replace or amend
it), restores the trunk from `checkpoints/ckpt-<step>` and writes the module to
`--output` (default `<workdir>/export/hub/<step>/`). No training data is read;
the dataset is only named to learn its number of classes.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets import registry as dataset_registry  # noqa: E402
from evaluation import linear_eval  # noqa: E402,F401  (its gin configurables)
from self_supervision import export as export_lib  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402
from self_supervision import trainer  # noqa: E402,F401  (its gin configurables)
from training import checkpoints  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import experiment as experiment_lib  # noqa: E402
from training import workdir as workdir_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's directory (holds checkpoints/).")
flags.DEFINE_integer("step", None, "Checkpoint step to export (default: latest).")
flags.DEFINE_string("output", None,
                    "Module directory (default: <workdir>/export/hub/<step>).")
flags.DEFINE_multi_string("config", [],
                          "Gin files of the run, instead of the workdir's "
                          "operative_config.gin.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
flags.DEFINE_bool("overwrite", False, "Replace an existing module.")
flags.DEFINE_string("data_dir", None, "tfds data_dir of the run's dataset.")
flags.DEFINE_string("manual_dir", None, "manual_dir of the run's dataset.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (the run to export).")
  logging.set_verbosity(logging.WARNING)
  configs = FLAGS.config
  if not configs:
    operative = workdir_lib.of(FLAGS.workdir).operative_config
    if not os.path.isfile(operative):
      raise app.UsageError(
          f"{operative} is missing (the run did not reach the end of its "
          f"first training); pass the run's gin files with --config.")
    configs = [operative]
  # Imports every task and dataset, so gin knows their configurables.
  task_lib.task_names()
  dataset_registry.dataset_names()
  # Configurables of modules not imported here (a run's eval protocols)
  # have nothing to do with the trunk.
  config_lib.parse(configs, FLAGS.gin_bindings, skip_unknown=True)
  # Only the run's identity matters here (its task and dataset).
  experiment = experiment_lib.experiment_settings()
  task_name, dataset_name = experiment.task, experiment.dataset
  dataset = dataset_registry.get_dataset(
      dataset_name, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir)
  task = task_lib.get_task(task_name, num_classes=dataset.num_classes)

  ckpt_dir = checkpoints.directory(FLAGS.workdir)
  on_disk = checkpoints.steps(ckpt_dir)
  if not on_disk:
    raise app.UsageError(f"No checkpoints in {ckpt_dir}.")
  step = max(on_disk) if FLAGS.step is None else FLAGS.step
  if step not in on_disk:
    raise app.UsageError(f"No checkpoint of step {step} in {ckpt_dir}; steps "
                         f"there: {sorted(on_disk)}.")
  output = FLAGS.output or export_lib.hub_export_dir(FLAGS.workdir, step)
  if os.path.exists(output) and not FLAGS.overwrite:
    raise app.UsageError(f"{output} exists; pass --overwrite to replace it.")
  model = export_lib.restore_trained_model(task, on_disk[step])
  path = export_lib.export_module(
      task, model, output, step=step, overwrite=FLAGS.overwrite,
      info=dict(dataset=dataset_name,
                workdir=os.path.abspath(FLAGS.workdir),
                checkpoint=os.path.abspath(on_disk[step])))
  print(f"Exported {task_name} step {step} to {path}")


if __name__ == "__main__":
  app.run(main)
