"""The demo end to end: training images/s and wall time per phase, per precision.

Usage:
  python bench/end_to_end.py                       # float32, then bfloat16
  python bench/end_to_end.py --precisions float32 --config configs/....gin \\
      --gin_bindings "train.epochs = 0.2"

Each precision runs `train_and_eval.py --config=<config>` (the demo by
default) in a fresh workdir in its own process, the float32 run first as the
reference, and the lines it prints are timed as they arrive. Phases are cut
at the lines that start them: setup (imports, dataset, model), training,
export (TF-Hub module), pretext evaluation, representation evaluation
(feature extraction and L-BFGS of every trunk). Training images/s is the mean
of the progress lines after the first loop (which includes tracing). The
last rows compare the bfloat16 run's accuracies with float32's.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from training import workdir as workdir_lib  # noqa: E402  (TF-free)

# (phase that starts, regex of the line that starts it)
PHASES = (("training", r"^Training \w+ for \d+ steps"),
          ("export", r"^Training done at step"),
          ("pretext evaluation", r"^Pretext evaluation on"),
          ("representation evaluation", r"pretext accuracy"),
          ("summary", r"^={20,}$"))
RATE = re.compile(r"^step (\d+)/\d+ .* (\d+) img/s")


def run(config, precision, bindings, workdir):
  """Runs one training; returns (phase seconds, mean img/s, results.json)."""
  cmd = [sys.executable, os.path.join(ROOT, "train_and_eval.py"),
         f"--config={config}", f"--workdir={workdir}",
         f"--gin_bindings=train.precision = '{precision}'"]
  cmd += [f"--gin_bindings={b}" for b in bindings]
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
  start = time.time()
  marks, rates = [("setup", start)], []
  with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True) as proc:
    for line in proc.stdout:
      line = line.rstrip()
      now = time.time()
      for name, pattern in PHASES:
        if re.search(pattern, line) and name not in dict(marks):
          marks.append((name, now))
      match = RATE.search(line)
      if match:
        rates.append(int(match.group(2)))
    if proc.wait():
      raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}")
  marks.append(("end", time.time()))
  seconds = {name: marks[i + 1][1] - t for i, (name, t) in enumerate(marks[:-1])}
  seconds.pop("summary", None)
  seconds["whole run"] = marks[-1][1] - start
  steady = rates[1:] or rates
  with open(workdir_lib.of(workdir).results_json) as f:
    results = json.load(f)
  return seconds, sum(steady) / max(len(steady), 1), results


def accuracies(results):
  """{'pretext': %, '<trunk> <layer> top-1': %} from a results.json."""
  out = {"pretext accuracy": 100 * results["pretext"]["accuracy"]}
  for entry in results.get("evaluations", []):
    out[f"{entry.get('trunk', '?')} {entry['layer']} top-1"] = entry["top1"]
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/demo_fashion_mnist.gin")
  parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
  parser.add_argument("--gin_bindings", action="append", default=[])
  args = parser.parse_args()

  rows = {}
  for precision in args.precisions:
    workdir = tempfile.mkdtemp(prefix=f"e2e_{precision}_")
    print(f"[{precision}] {args.config} in {workdir} ...", flush=True)
    rows[precision] = run(args.config, precision, args.gin_bindings, workdir)
  names = list(args.precisions)
  ref = names[0]
  print(f"\n{args.config} {' '.join(args.gin_bindings)}; "
        f"{os.cpu_count()} CPUs; ratios against {ref}.")
  print("| figure | " + " | ".join(names) + " | " +
        " | ".join(f"{n} / {ref}" for n in names[1:]) + " |")
  print("| --- |" + " ---: |" * (2 * len(names) - 1))
  phases = [p for p in rows[ref][0]]
  for phase in phases:
    values = [rows[n][0].get(phase, 0.0) for n in names]
    print(f"| {phase} (s) | " + " | ".join(f"{v:.0f}" for v in values) + " | "
          + " | ".join(f"{v / max(values[0], 1e-9):.2f}" for v in values[1:])
          + " |")
  rates = [rows[n][1] for n in names]
  print("| training img/s | " + " | ".join(f"{r:.0f}" for r in rates) + " | "
        + " | ".join(f"{r / max(rates[0], 1e-9):.2f}" for r in rates[1:]) + " |")
  accs = [accuracies(rows[n][2]) for n in names]
  for key in accs[0]:
    values = [a.get(key) for a in accs]
    print(f"| {key} (%) | " + " | ".join(
        "-" if v is None else f"{v:.2f}" for v in values) + " | " + " | ".join(
            "-" if v is None else f"{v - values[0]:+.2f} pt" for v in values[1:])
          + " |")


if __name__ == "__main__":
  main()
