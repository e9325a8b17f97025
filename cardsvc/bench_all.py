"""`cardsvc bench all`: every benchmark that exists, one after another, then one table.

Each benchmark is run as its own process (as a user would run it), so one that crashes or is over its
ceiling does not stop the others. A benchmark prints its figures as ``cardsvc.benchfig`` lines and exits 1
when a figure is outside its bound; this command reads those lines back (and, for a benchmark that prints
its own way, lines of the form "<label> <figure> [unit] ... ceiling|floor <bound>"), keeps the exit status
and the wall time, and prints every figure the same way, with its ratio to its bound.
Benchmarks run one at a time: the machine is shared, and parallel runs would distort each other.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from cardsvc.benchfig import Figure, FigureError, aligned, parse_line

REPO = Path(__file__).resolve().parent.parent

#: (name, command after the interpreter, what it measures). Missing scripts are reported, not fatal.
BENCHES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("apdu", ("bench/bench_apdu.py",), "card APDU round trip through pcscd + vpcd + pyscard"),
    ("card_sim", ("bench/bench_card_sim.py",), "card simulator: command cost, byte-rate model"),
    ("pki", ("-m", "cardsvc.pki.bench"), "certificate chains, signatures, officer-card operations"),
    ("matcher", ("bench/bench_matcher.py",), "matcher accuracy and speed"),
    ("fingers", ("bench/bench_fingers.py",), "synthetic fingers: generation and genuine/impostor scores"),
    ("fingers_capture", ("bench/bench_fingers_capture.py",), "sensor capture through pyfingerprint"),
    ("station", ("bench/bench_station.py",), "enrolment station time per household"),
    ("verify", ("bench/bench_verify.py",), "beneficiary card verification (APDUs, bytes, time)"),
    ("pos", ("bench/bench_pos.py",), "POS verification cost through pcscd + vpcd with the sensor"),
    ("ingest", ("bench/bench_ingest.py",), "central ingest rate against the signature-verification ceiling"),
    ("ingest_dedup", ("bench/bench_ingest_dedup.py",), "central de-duplication against the matcher alone"),
)


def _first_line(script: Path) -> str:
    """The first line of a script's docstring (what a benchmark not listed above measures)."""
    import ast

    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        doc = ""
    return doc.splitlines()[0].rstrip(".,:") if doc else script.stem


def benches(repo: Path = REPO) -> list[tuple[str, tuple[str, ...], str]]:
    """BENCHES, then any ``bench/bench_*.py`` added since (so a new benchmark is never left out)."""
    listed = {args[0] for _, args, _ in BENCHES}
    found = [
        (p.stem.removeprefix("bench_"), (f"bench/{p.name}",), _first_line(p))
        for p in sorted((repo / "bench").glob("bench_*.py"))
        if f"bench/{p.name}" not in listed
    ]
    return [*BENCHES, *found]


#: "<label>  <figure> [unit] [(note)]  ceiling|floor <bound>": how benchmarks printed before benchfig.
_FIGURE = re.compile(
    r"^(?P<label>.*?)\s+(?P<figure>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>[^\s\d()]*(?:\s[a-zA-Z/]+){0,2})(?:\s+\([^)]*\))?\s+"
    r"\(?(?P<kind>ceiling|floor|limit)\s*:?\s*(?P<bound>\d[\d,]*(?:\.\d+)?)",
    re.IGNORECASE,
)
#: A line that names a bound beside a number (kept as text when it is not read as a figure).
_NAMES_A_BOUND = re.compile(r"(ceiling|floor|limit|target)\s*:?\s*[<>=≤≥]*\s*\d", re.IGNORECASE)
CRASHED = "Traceback (most recent call last)"


@dataclass
class BenchResult:
    name: str
    what: str
    status: str  # "within ceilings" | "OVER a ceiling" | "failed (exit n)" | "missing" | "timed out"
    seconds: float
    exit_code: int | None
    figures: list[Figure] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)  # lines naming a bound not read as a figure

    @property
    def ok(self) -> bool:
        return self.status == "within ceilings"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "what": self.what,
            "status": self.status,
            "seconds": self.seconds,
            "exit_code": self.exit_code,
            "figures": [f.to_json() for f in self.figures],
            "unparsed": self.unparsed,
        }


def legacy_figure(line: str) -> Figure | None:
    """A figure from a line printed the old way ("<label> <figure> [unit] ... ceiling|floor <bound>")."""
    m = _FIGURE.match(line.strip())
    if m is None:
        return None
    try:
        return Figure(
            " ".join(m["label"].split()) or "figure",
            float(m["figure"].replace(",", "")),
            " ".join(m["unit"].split()),
            float(m["bound"].replace(",", "")),
            higher_is_better=m["kind"].lower() == "floor",
        )
    except FigureError:
        return None


def read_figures(output: str, limit: int = 40) -> tuple[list[Figure], list[str]]:
    """The figures a benchmark printed (benchfig lines, else old-style lines), and the lines that name a
    bound but could not be read as a figure."""
    figures: list[Figure] = []
    unparsed: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        figure = parse_line(line) or legacy_figure(line)
        if figure is not None:
            figures.append(figure)
        elif _NAMES_A_BOUND.search(line):
            unparsed.append(line)
    return figures[:limit], unparsed[:limit]


def status_of(exit_code: int | None, output: str = "") -> str:
    """A benchmark exits 0 within its ceilings, 1 over one; an uncaught exception also exits 1."""
    if exit_code is None:
        return "timed out"
    if exit_code != 0 and CRASHED in output:
        return f"failed (exit {exit_code}, exception)"
    if exit_code == 0:
        return "within ceilings"
    if exit_code == 1:
        return "OVER a ceiling"
    return f"failed (exit {exit_code})"


def run_bench(
    name: str,
    args: Sequence[str],
    what: str,
    *,
    timeout: float,
    echo: Callable[[str], None],
    python: str = sys.executable,
) -> BenchResult:
    """Run one benchmark, echoing its output as it comes."""
    script = args[0] if args[0] != "-m" else None
    if script is not None and not (REPO / script).is_file():
        return BenchResult(name, what, "missing", 0.0, None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [python, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    out: list[str] = []
    assert proc.stdout is not None
    deadline = t0 + timeout
    code: int | None
    for line in proc.stdout:
        out.append(line)
        echo(f"  [{name}] {line.rstrip()}")
        if time.perf_counter() > deadline:
            proc.kill()
            break
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    if time.perf_counter() > deadline and code not in (0, 1):
        code = None
    text = "".join(out)
    figures, unparsed = read_figures(text)
    seconds = round(time.perf_counter() - t0, 1)
    return BenchResult(name, what, status_of(code, text), seconds, code, figures, unparsed)


def run_all(
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    timeout: float = 900.0,
    echo: Callable[[str], None] = click.echo,
) -> list[BenchResult]:
    results = []
    for name, args, what in benches():
        if (only and name not in only) or name in skip:
            continue
        echo(click.style(f"==> bench {name}: {what}", fg="cyan"))
        results.append(run_bench(name, args, what, timeout=timeout, echo=echo))
    return results


def print_table(results: Sequence[BenchResult], echo: Callable[[str], None] = click.echo) -> None:
    """One block per benchmark: status, wall time, what it measures; then each figure's benchfig line,
    the columns aligned across every benchmark."""
    echo("")
    echo(click.style("Benchmarks (verdict, figure, bound, figure / bound)", bold=True))
    width = max((len(r.name) for r in results), default=4)
    every = [f for r in results for f in r.figures]
    lines = iter(aligned(every))
    for r in results:
        echo(f"  {r.name.ljust(width)}  {r.status:<16} {r.seconds:7.1f} s  {r.what}")
        for _ in r.figures:
            echo(f"      {next(lines)}")
        for line in r.unparsed:
            echo(f"      (as printed) {line}")


def register(main: click.Group) -> None:
    """Attach ``all`` to the ``bench`` group of ``cardsvc``."""
    bench = main.commands.get("bench")
    if not isinstance(bench, click.Group):
        return

    @bench.command("all")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results here.")
    @click.option(
        "--only", multiple=True, help="Run only these (repeatable): " + ", ".join(n for n, *_ in benches())
    )
    @click.option("--skip", multiple=True, help="Skip these (repeatable).")
    @click.option("--timeout", default=900.0, show_default=True, help="Seconds allowed per benchmark.")
    def bench_all(
        json_path: str | None, only: tuple[str, ...], skip: tuple[str, ...], timeout: float
    ) -> None:
        """Run every benchmark in turn; a table of figure / ceiling lines; exit 1 if any is over or failed."""
        unknown = (set(only) | set(skip)) - {n for n, *_ in benches()}
        if unknown:
            raise click.BadParameter(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        results = run_all(only=only, skip=skip, timeout=timeout)
        print_table(results)
        if json_path:
            Path(json_path).write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
        ran = [r for r in results if r.status != "missing"]
        sys.exit(0 if ran and all(r.ok for r in ran) else 1)
