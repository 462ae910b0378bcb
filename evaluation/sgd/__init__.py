"""The SGD evaluation heads (evaluation/sgd_eval.py), one job per module.

  heads.py     the linear / MLP head and its optional normalisation
  inputs.py    what a head reads: cached features or images (one interface)
  finetune.py  the trainable trunk copy of the finetune protocol
  driver.py    the schedule, the trainer and evaluator, the per-epoch loop
"""
