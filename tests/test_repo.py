"""The repository keeps its promises: the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    main_job, tests = _readme_commands()
    assert "tracekit explain --sample" in main_job
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_the_bundled_sample_ships_inside_the_package():
    from tracekit.cli import sample_path

    assert sample_path().is_file()
    assert sample_path().is_relative_to(ROOT / "tracekit")


def test_analysis_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, tracekit.cli, tracekit.explain, tracekit.report.terminal; "
            "from tracekit.explain import explain; from tracekit.cli import sample_path; "
            "explain(sample_path()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_repository_never_points_outside_itself():
    """Users clone this repository alone: no link or citation may lead to the team's shared notes
    (restated in docs/architecture.md instead)."""
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    forbidden = re.compile(r"\.\./shared|shared/(DESIGN|REFERENCE|STYLE|peer_traces)|"
                           r"\b(DESIGN|REFERENCE|STYLE)\.md")
    hits = []
    for name in files:
        p = ROOT / name
        if p.suffix in (".gz", ".png", ".sqlite") or not p.is_file():
            continue
        text = p.read_text(errors="replace")
        hits += [f"{name}: {m.group(0)}" for m in forbidden.finditer(text)]
    assert hits == []


def test_docs_links_resolve():
    """Every relative link in the README and docs/ names a file that exists."""
    bad = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if "://" in target:
                continue
            if not (md.parent / target).exists():
                bad.append(f"{md.relative_to(ROOT)} → {target}")
    assert bad == []


def test_the_readme_says_what_ci_adds_to_its_test_command():
    """The README's test command leaves out what only CI installs (HTA brings JupyterLab); the
    README says what CI adds, and CI adds exactly that."""
    setup = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    _, tests = _readme_commands()
    assert "hta" not in tests
    ci = (ROOT / ".ci" / "run").read_text()
    for what, in_ci in (("Chromium", "apt-get install -y -qq chromium"), ("atheris", "atheris"),
                        ("`hta` extra", ".[hta]")):
        assert what in setup, what
        assert in_ci in ci, in_ci


def test_docs_have_an_index_that_names_every_page():
    index = (ROOT / "docs" / "README.md").read_text()
    for heading in ("## Using tracekit", "## The definitions", "## The JSON contract",
                    "## How it is built"):
        assert heading in index
    linked = set(re.findall(r"\]\(([^)#\s]+)", index))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= linked, pages - linked


def test_docs_read_for_users_not_as_a_lab_notebook():
    """docs/ are for users: no machine this project borrowed, no load average, no issue numbers
    (benchmark numbers come from the benchmark scripts, which print them)."""
    notebook = re.compile(r"\blent\b|load average|\bissue \d+|\bissue #\d+|2-core test machine|"
                          r"this project's .*machine", re.IGNORECASE)
    hits = [f"{p.name}: {m.group(0)}" for p in sorted((ROOT / "docs").glob("*.md"))
            for m in notebook.finditer(p.read_text())]
    assert hits == []
