"""How steps are driven, for every training in the project.

  loop.py         the compiled loop of `steps_per_loop` steps per host round
                  trip: train step, metrics, NaN guard, progress, summaries,
                  checkpoints by interval, the resume seed
  checkpoints.py  find, save, restore a checkpoint and read its step
  schedule.py     epochs -> steps (the one place) and the LR schedules
  strategy.py     choosing the tf.distribute strategy; agree, barrier
  role.py         whether this process writes (the chief of several workers)
  optimizer.py    the optimizers configs name
  experiment.py   a run's `experiment` settings (task, dataset, seed, ...)
  run_record.py   run.json, operative_config.gin and the model-config guard
  workdir.py      the workdir's layout: every path a run writes

What one step computes belongs to the caller (a pretext task through
self_supervision/trainer.py, an evaluation head through
evaluation/sgd_eval.py).
"""
