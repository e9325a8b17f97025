"""`cardsvc bench all`: every benchmark that exists, one after another, then one table.

Each benchmark is run as its own process (as a user would run it), so one that crashes or is over its
ceiling does not stop the others. A benchmark prints its own figures beside their ceilings and exits 1 when a
figure is over; this command keeps the lines that name a ceiling, the exit status and the wall time.
Benchmarks run one at a time: the machine is shared, and parallel runs would distort each other.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

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


CEILING_WORDS = ("ceiling", "floor", "ratio", "limit", "target", "<=", "≤")
#: "<label>  <figure> [unit] [(note)]  ceiling|floor <bound>": the layout most benchmarks print.
_FIGURE = re.compile(
    r"^(?P<label>.*?)\s+(?P<figure>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>[^\s\d()]*(?:\s[a-zA-Z/]+){0,2})(?:\s+\([^)]*\))?\s+"
    r"\(?(?P<kind>ceiling|floor|limit|target)\s*:?\s*(?P<bound>\d[\d,]*(?:\.\d+)?)",
    re.IGNORECASE,
)
CRASHED = "Traceback (most recent call last)"


@dataclass
class BenchResult:
    name: str
    what: str
    status: str  # "within ceilings" | "OVER a ceiling" | "failed (exit n)" | "missing" | "timed out"
    seconds: float
    exit_code: int | None
    figures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "within ceilings"


def with_ratio(line: str) -> str:
    """``line`` with "= <figure/ceiling> of ceiling" appended when it reads as figure-then-ceiling."""
    m = _FIGURE.match(line)
    if m is None:
        return line
    bound = float(m["bound"].replace(",", ""))
    if bound == 0:
        return line
    ratio = float(m["figure"].replace(",", "")) / bound
    kind = "floor" if m["kind"].lower() == "floor" else "ceiling"
    return f"{line}   [{ratio:.2f} x {kind}]"


def figure_lines(output: str, limit: int = 16) -> list[str]:
    """The lines of a benchmark's output that compare a figure with its ceiling, with the ratio."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    picked = [with_ratio(ln) for ln in lines if any(w in ln.lower() for w in CEILING_WORDS)]
    return picked[:limit]


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
    return BenchResult(
        name, what, status_of(code, text), round(time.perf_counter() - t0, 1), code, figure_lines(text)
    )


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
    echo("")
    echo(click.style("Benchmarks", bold=True))
    width = max((len(r.name) for r in results), default=4)
    for r in results:
        echo(f"  {r.name.ljust(width)}  {r.status:<16} {r.seconds:7.1f} s  {r.what}")
        for line in r.figures:
            echo(f"  {'':{width}}    {line}")


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
            Path(json_path).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
        ran = [r for r in results if r.status != "missing"]
        sys.exit(0 if ran and all(r.ok for r in ran) else 1)
