"""The report itself: report.md from the tables, figures, gallery and an
appendix of every run. TF-free unless the gallery is asked for."""
import glob
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from study.report import claims
from study.report import controls as controls_lib
from study.report import headline
from study.report import paper_claims
from study.report import paths
from study.report.figures import (fig2_best_width, fig3_linear_vs_mlp, fig4_pretext,
                                  fig5_layers, fig7_by_width, fig7_low_data, fig8_curves,
                                  layer_series, low_data_series, mlp_pairs,
                                  ranking_lines)
from study.report.runs import (MISSING, NoRuns, Run, load_runs, row_label, table_runs,
                               task_label)
from study.report.tables import (format_grid, grid_notes, grid_tables, link, rho_text,
                                 selection_points, selection_rows, spread, table2)
from training import workdir as workdir_lib


def portable(command: str, run: Run) -> str:
  """A recorded command without the absolute paths of the machine it ran on.

  The interpreter becomes `python`; paths inside the checkout that ran it
  (the directory of its program) become relative to that checkout, which is
  where the command runs from; a workdir elsewhere is named under `<root>`,
  the sweep root. Other paths (e.g. --data_dir) are left to paths.Scrubber,
  which build_report applies to the whole report.
  """
  words = command.split(" ")
  if words and os.path.isabs(words[0]) and os.path.basename(words[0]).startswith(
      "python"):
    words[0] = "python"
  program = next((w for w in words[1:] if os.path.isabs(w) and w.endswith(".py")), None)
  if program:
    checkout, name = os.path.split(program)
    if name == "__main__.py":  # `python -m package`
      checkout, package = os.path.split(checkout)
      words[words.index(program)] = f"-m {package}"
    elif os.path.basename(checkout) == "scripts":
      checkout = os.path.dirname(checkout)
    words = [w.replace(checkout + os.sep, "") for w in words]
  text = " ".join(words)
  match = re.search(r"--workdir=(/\S*)", text)
  if match and match.group(1).rstrip("/").endswith(os.sep + run.rel):
    recorded_root = match.group(1).rstrip("/")[:-len(run.rel) - 1]
    text = text.replace(recorded_root + os.sep, "<root>/")
  return text


def duration(seconds: float) -> str:
  """'42 s', '17 min', '3 h 05 min'."""
  minutes = int(round(seconds / 60))
  if seconds < 60:
    return f"{seconds:.0f} s"
  if minutes < 60:
    return f"{minutes} min"
  return f"{minutes // 60} h {minutes % 60:02d} min"


def run_time_line(runs: Sequence[Run]) -> Optional[str]:
  """The header's line on compute: the runs' invocations summed."""
  per_run = [t for t in (r.invocation_times() for r in runs) if t]
  times = [t for run_times in per_run for t in run_times]
  if not times:
    return None
  return (f"- run time: {duration(sum(times))} summed over {len(times)} invocations "
          f"of {len(per_run)} runs, each from its "
          f"start to its end (runs that shared a machine overlap: this is not the "
          f"sweep's wall time)")


def _seed_note(e: Dict) -> str:
  """' ± 3.61 (seeds 0, 1, 2)' for an entry merged over seeds, else ''."""
  if spread(e) is None:
    return ""
  return f" ± {e['top1_std']:.2f} (seeds {', '.join(str(s) for s in e['seeds'])})"


def appendix(runs: Sequence[Run], files_dir: Optional[str] = None) -> List[str]:
  """One anchored entry per run; with `files_dir` (relative to the report), links
  to the copies of its results.json, run.json and operative_config.gin there."""
  lines = ["## Appendix: runs", ""]
  for run in runs:
    info, meta = run.info, run.meta
    lines += [f'<a id="{run.anchor}"></a>', f"### {run.anchor}: `{run.rel}`", "",
              f"- task: {run.task} (column {task_label(run.task)}); trunk: "
              f"{row_label(run.trunk)} (`{info.get('architecture')}`, last_relu "
              f"{info.get('last_relu')}); width k={run.width}; dataset {run.dataset}",
              f"- steps {info.get('steps')} of {info.get('total_steps')}; seed "
              f"{info.get('seed', meta.get('seed'))}; git commit "
              f"`{meta.get('git_commit', 'unknown')}`; status {meta.get('status', '?')}"]
    times = run.invocation_times()
    if times:
      lines.append(f"- run time {duration(sum(times))} in {len(times)} "
                   f"invocation{'s' if len(times) > 1 else ''}")
    if run.representation_size is not None:
      lines.append(f"- representation size {run.representation_size}")
    if run.pretext.get("accuracy") is not None:
      lines.append(f"- pretext accuracy ({run.pretext.get('split')}, step "
                   f"{run.pretext.get('step')}): {100 * run.pretext['accuracy']:.2f}%")
    for e in run.label_free:
      lines.append(f"- RankMe [{e.get('trunk')}] {e.get('layer')} on {e.get('split')}: "
                   f"{e.get('rankme')}")
    # Every invocation that wrote to the workdir (training, then the figures'
    # evaluations), each of which made some of the entries below.
    commands = [i.get("command") for i in meta.get("invocations", [])
                if i.get("command")] or [meta.get("command", "unknown (no run.json)")]
    commands = [portable(c, run) for c in dict.fromkeys(commands)]
    lines += [f"- command{'s' if len(commands) > 1 else ''}: "
              + "; then ".join(f"`{c}`" for c in commands)]
    if files_dir:
      lines.append("- files: " + ", ".join(
          f"[{name}]({files_dir}/{run.rel}/{name})"
          for name, path in workdir_lib.Workdir(run.path).run_files()
          if os.path.exists(path)))
    lines.append("")
    if run.evaluations:
      lines += ["| protocol | dataset | trunk | layer | fraction | train / selected on "
                "/ eval split | top-1 | top-5 |", "|---|---|---|---|---:|---|---:|---:|"]
      for e in run.evaluations:
        top5 = e.get("top5")
        lines.append(
            f"| {e.get('protocol')} | {e['dataset']} | `{e.get('trunk')}` | "
            f"{e.get('layer')} | {float(e.get('fraction', 1.0)):g} | "
            f"{e.get('train_split')} / {e.get('selected_on') or MISSING} / "
            f"{e.get('eval_split')} | "
            f"{e['top1']:.2f}{_seed_note(e)} | "
            f"{'' if top5 is None else f'{top5:.2f}'} |")
    else:
      lines.append("No evaluation entries yet.")
    lines.append("")
  return lines


def tables_section(runs: Sequence[Run]) -> Tuple[List[str], List, int]:
  """(report lines, the Table 1 layouts [(source, target, cells)], tables written)."""
  lines, count = [], 0
  tables = grid_tables(runs)
  for source, target, cells in tables:
    heading = (f"Table 1 layout: {source}" if source == target else
               f"{'Places' if target.startswith('places') else 'Transfer'} table: "
               f"{target} (trunks trained on {source})")
    lines += [f"## {heading}", "", format_grid(cells), ""]
    lines += [f"{n}  " for n in grid_notes(cells, runs)] + [""]  # "  ": a line break
    count += 1
  for source in sorted({r.dataset for r in runs}):
    text = table2(runs, source)
    if text:
      lines += [f"## Table 2 layout: {source}", "", text, "",
                "Top-1 % of `linear_sgd` on `test` (pre_logits, all labels) of each "
                "task's best run by the Table 1 metric; the control rows are the "
                "pixels and the random trunk of each run's architecture and width, "
                f"scored alike (± one standard error); {controls_lib.MARK}: not above "
                f"both by more than {controls_lib.Z:g} standard errors.", ""]
      count += 1
  return lines, tables, count


def selection_section(points: Sequence[Dict], dataset: str) -> List[str]:
  """The label-free model selection tables of one dataset's trained runs."""
  if not points:
    return []
  lines = [f"### Label-free model selection ({dataset})", "",
           "Spearman ρ with the Table 1 metric across trained runs (n pairs, p: "
           "two-sided permutation p-value). Pretext accuracies of different tasks do "
           "not compare, so groups that mix tasks have none. α-ReQ: the "
           "eigenspectrum's decay exponent (best near 1, Agrawal et al. 2022), so its "
           "ρ need not be monotone. Failed fits are left out.", "",
           "| group | n | ρ(pretext acc) | ρ(RankMe) | ρ(α-ReQ) |",
           "|---|---:|---:|---:|---:|"]
  lines += [f"| {g} | {n} | {a} | {b} | {c} |" for g, n, a, b, c in selection_rows(points)]
  lines += ["", "| run | task | trunk | pretext acc % | RankMe | α-ReQ | top-1 |",
            "|---|---|---|---:|---:|---:|---:|"]
  number = lambda v: MISSING if v is None else f"{v:.1f}"  # noqa: E731
  alpha = lambda v: MISSING if v is None else f"{v:.2f}"  # noqa: E731
  for p in points:
    run = p["run"]
    lines.append(f"| [{run.anchor}](#{run.anchor}) | {task_label(run.task)} | "
                 f"{run.label()} | {number(p['pretext'])} | {number(p['rankme'])} | "
                 f"{alpha(p.get('alpha_req'))} | "
                 f"{link(p['top1'], run)} |")
  return lines + [""]


def figures_section(runs: Sequence[Run], tables, fig_dir: str, out: str
                    ) -> Tuple[List[str], List[str]]:
  """(report lines, file names of the figures drawn)."""
  lines, names = ["## Figures", ""], []

  def figure(name, caption, absent):
    number = caption.split(":")[0]
    if name:
      rel = os.path.relpath(os.path.join(fig_dir, name), out)
      lines.extend([f"![{number}]({rel})", "", f"*{caption}*", ""])
      names.append(name)
    else:
      lines.extend([f"*{number} not drawn: {absent}*", ""])

  figure(fig2_best_width(tables, fig_dir), "Fig. 2: linear top-1 % of each trunk's "
         "best width per task, one panel per table.", "no Table 1 cells.")
  # Figures 3 to 7 compare the runs of one dataset: the one with most runs.
  own = sorted({r.dataset for r in runs})
  main = main_dataset(runs)
  main_runs = table_runs(runs, main)
  if len(own) > 1:
    lines += [f"Figures 3 to 7 show the runs trained on {main}.", ""]
  pairs = mlp_pairs(main_runs)
  control_note = (f" Controls: pixels ×, the random trunk of the same architecture and "
                  f"width +; hollow and {controls_lib.MARK}: a trained cell not above "
                  f"both by more than {controls_lib.Z:g} standard errors.")
  figure(fig3_linear_vs_mlp(pairs, fig_dir, runs), "Fig. 3: MLP top-1 % (y) against "
         "linear top-1 % (x) of the same trunk, pre_logits, all labels; colour = trunk, "
         "marker = task, dashed: y = x." + control_note, "needs runs with an `mlp_sgd` "
         "or `mlp_sgd_features` entry next to the Table 1 entry (grid `fig3`, or the "
         "miniature's k = 2 cells).")
  failed = [p[0] for p in mlp_pairs(main_runs, keep_failed=True)
            if controls_lib.failed_fit(p[4])]
  if failed:
    lines += ["Failed fits (never left chance; in no point, correlation or ranking): "
              + ", ".join(f"[{r.anchor}](#{r.anchor})" for r in failed) + ".", ""]
  if pairs:
    lines += [f"Spearman ρ(linear, MLP) over {len(pairs)} runs (every fit that left "
              "chance; claim 4 counts only the converged ones not below their linear "
              "probe): " + rho_text([p[1] for p in pairs], [p[2] for p in pairs],
                                    len(pairs)), ""]
    rankings = ranking_lines(pairs, runs)
    if rankings:
      lines += rankings + [
          "", f"≈: within {controls_lib.Z:g} standard errors of the next (their order "
          f"is not told apart); {controls_lib.MARK}: not above both controls under that "
          "protocol.", ""]
  curves = claims.mlp_curves(main_runs)
  figure(claims.fig3_curves(curves, fig_dir), "Fig. 3 (curves): each MLP fit's "
         "top-1 % on its evaluated split by epoch, one panel per task and one for the "
         "pixels; dashed: not converged (its last "
         f"{claims.CONVERGENCE_TAIL:.0%} of epochs gained more than one standard error) "
         f"or below its linear probe by more than {controls_lib.Z:g} standard errors; "
         "grey: a failed fit.", "needs MLP entries with a "
         "`curve` (the SGD heads record one).")
  lines += claims.convergence_lines(curves) + ([""] if curves else [])
  points = selection_points(runs, main)
  figure(fig4_pretext(points, fig_dir, runs), "Fig. 4: pretext accuracy % on the "
         "held-out split (x) against linear top-1 % (y), one panel per task; colour = "
         "trunk, marker size = width; dashed: pixels, dotted: each trunk's random "
         f"trunk; hollow: not above both controls ({controls_lib.MARK}).", "needs "
         "trained runs with a pretext accuracy and a Table 1 entry.")
  for dataset in [main] + [d for d in own if d != main]:
    lines += selection_section(selection_points(runs, dataset), dataset)
  series = layer_series(main_runs)
  fractions = sorted({s[1] for s in series})
  on = ("" if fractions in ([], [1.0]) else
        " on " + ", ".join(f"{f:.0%}" for f in fractions) + " of the labels")
  sizes = {s[3] for s in series}
  if sizes and None not in sizes:
    dimension = (" At equal dimension: every end point pooled to "
                 + " / ".join(str(d) for d in sorted(sizes)) + " features "
                 "(`linear_eval.pool_to_features`), so a layer's number is what it "
                 "learned, not how many values it has.")
  else:
    dimension = (" Each end point at its own size (pooled to about 9000 values when "
                 "larger): a layer's number also reflects its dimension; "
                 "`linear_eval.pool_to_features` compares them at equal dimension.")
  figure(fig5_layers(series, fig_dir, runs), f"Fig. 5: linear top-1 % by end point"
         f"{on}, one line per trunk and width, its random trunk's curve dashed beside "
         "it, pixels dotted; hollow: not above both controls at that layer."
         + dimension, "needs runs with `linear_eval` entries for 3 or more layers "
         "(grid `fig5`).")
  bottleneck = claims.bottleneck_points(runs)
  figure(claims.fig6_axes(bottleneck, fig_dir, runs), "Fig. 6: linear top-1 % by "
         "width at each fixed representation size (left) and by representation size "
         "at each fixed width (right); dashed: the random trunk of the same model, "
         f"dotted: pixels; hollow: not above both controls ({controls_lib.MARK}).",
         "needs runs whose operative_config.gin sets `get_model.representation_size` "
         "at two or more widths or sizes (grid `fig6`, `miniature_fig6`).")
  steps = claims.fig6_lines(bottleneck, runs)
  if steps:
    lines += ["Fig. 6's steps (trained model, then its random trunk; a step is a "
              f"difference only beyond {controls_lib.Z:g} standard errors):", ""]
    lines += steps + [""]
  low_data = low_data_series(main_runs)
  if fig7_by_width(low_data):
    fig7_caption = ("Fig. 7: linear top-1 % by width with all and with a fraction of "
                    "the labels, one panel per task; dashed '+': the random trunk of "
                    "each width, the pixels levels by fraction")
  else:
    fig7_caption = ("Fig. 7: linear top-1 % by labelled fraction of train (one width), "
                    "one panel per task; dashed '+': each trunk's random trunk, "
                    "dotted 'x': the pixels")
  figure(fig7_low_data(low_data, fig_dir, runs), f"{fig7_caption}; hollow: not above "
         f"both controls ({controls_lib.MARK}).",
         "needs runs with `linear_lbfgs` entries of fraction < 1 (grid `fig7`).")
  figure(fig8_curves(runs, fig_dir), "Fig. 8: top-1 % against epoch of the linear "
         "SGD protocol's curves, one line per run.", "needs linear SGD entries with a "
         "`curve` (grid `fig8`).")
  return lines, names


def copy_run_files(runs: Sequence[Run], out: str, scrub: paths.Scrubber) -> None:
  """Copies each run's small files to <out>/runs/<rel>/ (no checkpoints or
  features), so a report can be shared or committed with what it was built
  from; every absolute path in them becomes a placeholder (paths.Scrubber).
  Copies of runs no longer in the sweep are removed (as old figures are)."""
  names = {name for name, _ in workdir_lib.Workdir(out).run_files()}
  keep = {os.path.normpath(run.rel) for run in runs}
  copies = os.path.join(out, "runs")
  for path, _, files in sorted(os.walk(copies), reverse=True):  # leaves first
    rel = os.path.normpath(os.path.relpath(path, copies))
    if rel not in keep:
      for name in names & set(files):
        os.remove(os.path.join(path, name))
    if path != copies and not os.listdir(path):
      os.rmdir(path)
  for run in runs:
    dest = os.path.join(out, "runs", run.rel)
    os.makedirs(dest, exist_ok=True)
    for name, path in workdir_lib.Workdir(run.path).run_files():
      if os.path.exists(path):
        with open(path) as f:
          text = scrub(f.read())
        with open(os.path.join(dest, name), "w") as f:
          f.write(text)


def main_dataset(runs: Sequence[Run]) -> str:
  """The dataset Figures 3 to 7 and the claims compare: the one most runs
  were trained on (the first by name among equals)."""
  own = sorted({r.dataset for r in runs})
  return max(own, key=lambda d: (sum(r.dataset == d for r in runs), -own.index(d)))


def scrubber_of(runs: Sequence[Run], root: str) -> paths.Scrubber:
  """paths.for_sweep over every command the runs recorded."""
  commands = [(c, run.rel) for run in runs
              for c in [run.meta.get("command")] + [
                  i.get("command") for i in run.meta.get("invocations", [])] if c]
  builder = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return paths.for_sweep(root, commands, builder)


def build_report(root: str, out: Optional[str] = None, title: str = "Sweep report",
                 with_gallery: bool = True, copy_runs: bool = False) -> Dict:
  """Writes <out>/report.md and <out>/figures/*.png.

  Returns:
    {runs: int, tables: int, figures: [file names], report: path}.

  Raises:
    NoRuns: no results.json under `root`.
  """
  root = os.path.abspath(root)
  out = os.path.abspath(out or root)
  runs, problems = load_runs(root)
  if not runs:
    raise NoRuns(f"no results.json under {root} (a run directory holds one); "
                 f"is this the sweep root?")
  scrub = scrubber_of(runs, root)
  fig_dir = os.path.join(out, "figures")
  # Figures of an earlier build whose data are gone must not linger.
  for old in glob.glob(os.path.join(fig_dir, "fig[0-9]_*.png")) + glob.glob(
      os.path.join(fig_dir, "gallery_*.png")):
    os.remove(old)
  own = sorted({r.dataset for r in runs})
  transfer = sorted({e["dataset"] for r in runs for e in r.evaluations} - set(own))
  table_lines, tables, n_tables = tables_section(runs)
  main = main_dataset(runs)
  main_cells = next((cells for source, target, cells in tables
                     if source == target == main), {})
  # Relative to the report when the root is the report's folder or under it;
  # else a placeholder: a committed report names no path of the machine.
  rel_root = os.path.relpath(root, out)
  lines = [f"# {title}", ""] + headline.opening(tables, runs) + [
      "- sweep root: " + (f"`{rel_root}`" if not rel_root.startswith("..") else
                          f"`{paths.ROOT}`" + (" (its runs' files are copied to "
                                               "`runs/`)" if copy_runs else "")),
      f"- runs read: {len(runs)}",
      *filter(None, [run_time_line(runs)]),
      headline.commits_line(runs),
      f"- datasets: trained on {', '.join(own)}"
      + (f"; transfer evaluations on {', '.join(transfer)}" if transfer else "")]
  lines += [f"- problem: {p}" for p in problems] + [""]
  lines += paper_claims.claims_section(main_cells, table_runs(runs, main), runs, main)
  figure_lines, figures = figures_section(runs, tables, fig_dir, out)
  lines += table_lines + figure_lines
  if with_gallery:
    # Here, not at the top: the gallery reads images (and neighbours) with
    # TensorFlow, which the rest of the report never imports.
    from study.report import gallery  # pylint: disable=g-import-not-at-top
    lines += ["## Nearest neighbours", ""] + gallery.gallery(runs, fig_dir, out) + [""]
    figures += sorted(os.path.basename(p) for p in
                      glob.glob(os.path.join(fig_dir, "gallery_*.png")))
  if copy_runs:
    copy_run_files(runs, out, scrub)
  lines += appendix(runs, files_dir="runs" if copy_runs else None)
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write(scrub("\n".join(lines) + "\n"))
  return dict(runs=len(runs), tables=n_tables, figures=figures, report=path)

