r"""Trains a self-supervised model and evaluates its representation.

  python train_and_eval.py --config=configs/demo_fashion_mnist.gin \
      --workdir=/tmp/demo [--gin_bindings="train.epochs = 2"]

Running it again on the same workdir resumes from the latest checkpoint; a
finished run is not retrained and finished evaluations are not redone. This
file holds the flags and parses the configs; the run's stages are
run_lib.run's.
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import run_lib  # noqa: E402
from datasets import registry as dataset_registry  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import errors  # noqa: E402
from training import preemption  # noqa: E402
from training import strategy as strategy_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("config", [], "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [],
                          "Extra gin bindings, e.g. 'train.epochs = 2'.")
flags.DEFINE_string("workdir", None, "Run directory (created if missing).")
flags.DEFINE_enum("mode", "train_and_eval", list(run_lib.MODES),
                  "What to run.")
flags.DEFINE_enum("strategy", "auto", list(strategy_lib.STRATEGIES),
                  "tf.distribute strategy; 'auto' picks TPU/mirrored/default.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (Cloud TPU).")
flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds default).")
flags.DEFINE_string("manual_dir", None,
                    "Where manually downloaded dataset archives/files are.")
flags.DEFINE_bool("debug", False, "Show the traceback of a bad-input error.")
flags.DEFINE_bool("overwrite_config", False,
                  "Run on a workdir whose model was trained with another trunk, "
                  "pipeline, dataset or seed than the config says.")


def main(argv):
  if len(argv) > 1:
    errors.usage(f"Unexpected arguments: {argv[1:]} (flags are --name=value).")
  if not FLAGS.config:
    errors.usage("--config is required, e.g. --config=configs/demo_fashion_mnist.gin "
                 "(--helpfull lists every flag).")
  if not FLAGS.workdir:
    errors.usage("--workdir is required (where checkpoints and results go), e.g. "
                 "--workdir=/tmp/demo.")
  # Progress lines must show up at once even when piped to tee or a log file.
  sys.stdout.reconfigure(line_buffering=True)
  logging.set_verbosity(logging.WARNING)
  preemption.install()

  def main_run():
    # Imports every task and dataset, so gin knows their configurables.
    task_lib.task_names()
    dataset_registry.dataset_names()
    config_lib.parse(FLAGS.config, FLAGS.gin_bindings)
    strategy = strategy_lib.make_strategy(FLAGS.strategy, FLAGS.tpu)
    t0 = time.time()
    run_lib.run(FLAGS.workdir, FLAGS.mode, strategy, FLAGS.data_dir,
                FLAGS.manual_dir, FLAGS.overwrite_config)
    print(f"Total time {time.time() - t0:.0f}s. Workdir: {FLAGS.workdir}")
  errors.run_cli(main_run, FLAGS.debug)


if __name__ == "__main__":
  app.run(main)
