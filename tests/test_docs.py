"""The documentation a user clones: every page reachable, every link resolving.

A user who clones the repository has only the repository: a link to a file outside
it (`../shared/...`, an absolute path) is dead for them, and a page nothing links to
is never found. The README is the front page and stays short.
"""
import glob
import os
import re
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
README_MAX_LINES = 220
# The protocol's top-level sections: code comments cite them by number ("§5").
PROTOCOL_SECTIONS = ("Architectures", "Pretext tasks", "Preprocessing vocabulary",
                     "Training", "Representation evaluation", "Export", "Data",
                     "Reference results", "Controls and the miniature")

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _rel(path):
  return os.path.relpath(path, ROOT).replace(os.sep, "/")


def doc_files():
  """Every markdown file a user reads, repository-relative (not the runs' copies)."""
  paths = [README, os.path.join(ROOT, "CHANGELOG.md"),
           os.path.join(ROOT, "BENCHMARKS.md")]
  paths += glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
  runs = os.path.join(ROOT, "docs", "miniature", "runs") + os.sep
  return sorted({_rel(p) for p in paths if not p.startswith(runs)})


def docs_pages():
  """The pages of docs/ (one subject each) and the miniature's front page."""
  pages = glob.glob(os.path.join(ROOT, "docs", "*.md"))
  pages += glob.glob(os.path.join(ROOT, "docs", "*", "README.md"))
  return sorted(_rel(p) for p in pages)


def _prose(text):
  """The text without code blocks and code spans (which hold no links)."""
  return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(rel_path):
  """Every link target in a markdown file, in order."""
  with open(os.path.join(ROOT, rel_path), encoding="utf-8") as f:
    text = _prose(f.read())
  return _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)


def is_external(target):
  return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)) and not re.match(
      r"^file:", target, re.I)


def slug(heading):
  """GitHub's anchor for a heading: '## §1 Architectures' -> '1-architectures'."""
  text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
  text = re.sub(r"[^\w\- ]", "", text.strip().lower())
  return text.replace(" ", "-")


def anchors(rel_path):
  """The anchors a markdown file defines: its headings (numbered as GitHub numbers
  repeats) and explicit <a id=...> tags."""
  with open(os.path.join(ROOT, rel_path), encoding="utf-8") as f:
    text = f.read()
  seen, result = {}, set(_HTML_ANCHOR.findall(text))
  for heading in _HEADING.findall(_FENCE.sub("", text)):
    base = slug(heading)
    n = seen.get(base, 0)
    seen[base] = n + 1
    result.add(base if n == 0 else f"{base}-{n}")
  return result


def _link_cases():
  cases = []
  for path in doc_files():
    for target in links(path):
      if not is_external(target):
        cases.append(pytest.param(path, target, id=f"{path}->{target}"))
  return cases


def test_the_readme_is_a_front_page():
  with open(README, encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert len(lines) <= README_MAX_LINES, (
      f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the "
      "reference material to a page under docs/ and link it")


@pytest.mark.parametrize("page", docs_pages())
def test_every_docs_page_is_linked_from_the_readme(page):
  readme_targets = {os.path.normpath(urllib.parse.unquote(t.split("#")[0]))
                    for t in links("README.md")}
  assert os.path.normpath(page) in readme_targets, (
      f"{page} is not linked from README.md: add it to the README's table of pages")


@pytest.mark.parametrize("path,target", _link_cases())
def test_every_link_resolves_inside_the_repository(path, target):
  file_part, _, fragment = target.partition("#")
  file_part = urllib.parse.unquote(file_part)
  assert not re.match(r"^file:", target, re.I) and not os.path.isabs(file_part), (
      f"{path} links {target}, an absolute path a user's clone does not have")
  resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(path), file_part))
  inside = os.path.relpath(resolved, ROOT)
  assert not inside.startswith(os.pardir), (
      f"{path} links {target}, outside the repository: link the page of docs/ that "
      "says it instead")
  assert os.path.exists(resolved), f"{path} links {target}, which does not exist"
  if fragment and resolved.endswith(".md"):
    assert fragment in anchors(os.path.relpath(resolved, ROOT)), (
        f"{path} links {target}: {inside} has no heading or anchor '{fragment}'")


@pytest.mark.parametrize("path", doc_files())
def test_no_page_cites_a_file_users_do_not_have(path):
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    text = f.read()
  for needle in ("../shared", "SPEC.md", "SPEC §"):
    assert needle not in text, (
        f"{path} mentions {needle!r}, which a user's clone does not have: cite "
        "docs/protocol.md (its sections keep SPEC's numbers) instead")


def test_the_protocol_keeps_the_section_numbers_the_code_cites():
  with open(os.path.join(ROOT, "docs", "protocol.md"), encoding="utf-8") as f:
    headings = re.findall(r"^## (§\d+ .*?)\s*$", f.read(), re.M)
  assert headings == [f"§{i} {title}" for i, title in
                      enumerate(PROTOCOL_SECTIONS, start=1)]


def test_the_link_checker_sees_what_it_must():
  # The helpers above decide what every other test checks: pin their behaviour.
  assert slug("§1 Architectures") == "1-architectures"
  assert slug("A run's workdir") == "a-runs-workdir"
  assert slug("Evaluation protocols (`evaluation/`)") == "evaluation-protocols-evaluation"
  assert slug("The miniature: Table 1 on Fashion-MNIST, on 2 CPU cores") == (
      "the-miniature-table-1-on-fashion-mnist-on-2-cpu-cores")
  text = ("[a](x.md) `[b](code.md)` ![c](fig.png \"title\")\n"
          "```\n[d](fenced.md)\n```\n[e]: ref.md\n")
  prose = _prose(text)
  assert _INLINE_LINK.findall(prose) == ["x.md", "fig.png"]
  assert _REFERENCE_LINK.findall(prose) == ["ref.md"]
  assert is_external("https://example.com") and not is_external("file:///etc/x")
  assert not is_external("../shared/SPEC.md")
