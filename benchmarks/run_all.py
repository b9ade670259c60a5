"""The whole benchmark suite in one command, written up as one Markdown report.

    python benchmarks/run_all.py                        every section; benchmarks/report.md
    python benchmarks/run_all.py --quick                fewer boxes, images and repeats
    python benchmarks/run_all.py --peers                also train ours and torchvision's peers
                                                        side by side (bench_peers.py, ~12 min)
    python benchmarks/run_all.py --runs runs            time the runs ``stages.compare`` wrote

The report, section by section (each script can also be run alone, with ``--help``):

    1. Operators: ours against torchvision     bench_ops.py: roi_pool, roi_align, nms, ... ms and ratio
    2. Proposals: speed and recall             bench_proposals.py: sliding windows, selective search;
                                               bench_rpn_proposals.py: the RPN of a trained stage 3
    3. Test time per image, stage by stage     bench_stages.py: every trained stage under --runs,
                                               and the ratios R-CNN -> Fast -> Faster, SS -> RPN
    4. Ours against torchvision's peers        bench_peers.py: trains both with --peers; otherwise
                                               the existing runs' metrics.json

A section whose runs are missing says so ("not run: train faster_rcnn first (...)"); a section
that fails records the error and the others still run. The header states the machine, the date,
the torch version and the threads, since every number below depends on them.

How it runs: each script's ``benchmark(...)`` (what its ``main(argv)`` calls after parsing its
flags) is called in this process with keyword arguments, and what it prints is both shown and
captured for the report (no subprocesses, no command lines parsed again: one torch import, and a
failure is a Python exception with its message). The report shows, for the reader, the command
line that runs the same script alone. torch's thread count is restored after each script.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io as text_io
import os
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the stages package, without an install
sys.path.insert(0, str(HERE))  # the bench_* scripts, imported as modules

import torch  # noqa: E402
import torchvision  # noqa: E402

from stages import files  # noqa: E402

DEFAULT_REPORT = HERE / "report.md"
HEADINGS = {  # section key -> heading in the report (the test checks each is there)
    "ops": "## 1. Operators: ours against torchvision",
    "proposals": "## 2. Proposals: speed and recall",
    "stages": "## 3. Test time per image, stage by stage",
    "peers": "## 4. Ours against torchvision's peers",
}
RPN_SCRIPT = "bench_rpn_proposals"  # written separately; the report says so while it is missing
# (full, --quick) settings of each script that take a size or a repeat count
SIZES = {
    "bench_ops": ({}, {"n": 300, "repeats": 3}),
    "bench_proposals": ({"n": 100}, {"n": 10}),
    "bench_rpn_proposals": ({"n": 100}, {"n": 10}),
    "bench_stages": ({"images": 50}, {"images": 10}),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/run_all.py",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", default="runs",
                        help="where the stage runs live (<runs>/<stage>/checkpoint.pt)")
    parser.add_argument("--out", default=str(DEFAULT_REPORT), help="the Markdown report")
    parser.add_argument("--quick", action="store_true", help="fewer boxes, images and repeats")
    parser.add_argument("--peers", action="store_true",
                        help="train ours and torchvision's peers side by side (bench_peers.py)")
    parser.add_argument("--budget", type=float, default=None,
                        help="with --peers: seconds of training per model (bench_peers' default)")
    parser.add_argument("--data", default="synthetic", help="the data the runs were trained on")
    parser.add_argument("--data-root", default="data")
    return parser


# ------------------------------------------------------------------------------------------------
# Calling one script and capturing what it prints
# ------------------------------------------------------------------------------------------------

class Tee(text_io.TextIOBase):
    """A stream that writes to several: the terminal (to watch) and a buffer (for the report)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@dataclass
class Output:
    text: str  # what the script printed
    seconds: float
    error: str | None  # None if it finished


def capture(work: Callable[[], object], echo: bool = True) -> Output:
    """Run ``work()`` and keep what it prints; an exception or exit becomes ``error``."""
    buffer = text_io.StringIO()
    stream = Tee(sys.stdout, buffer) if echo else buffer
    threads, error, t0 = torch.get_num_threads(), None, time.perf_counter()
    with contextlib.redirect_stdout(stream):
        try:
            work()
        except SystemExit as e:  # a script's own exit (bench_rpn_proposals: no run to load)
            if e.code not in (0, None):
                error = f"exited: {e.code}"
        except Exception as e:  # noqa: BLE001 (one section's failure must not lose the others)
            traceback.print_exc(file=sys.stderr)
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    torch.set_num_threads(threads)  # a script may have changed it (bench_ops --threads, ...)
    return Output(buffer.getvalue(), time.perf_counter() - t0, error)


# ------------------------------------------------------------------------------------------------
# The report's parts
# ------------------------------------------------------------------------------------------------

def as_markdown(text: str) -> str:
    """A script's Markdown output inside the report: its "# title" lines as bold lines (the
    report's own headings keep the structure), its "not run: ..." and "note ..." lines as list
    items (Markdown would join consecutive lines into one paragraph)."""
    text = re.sub(r"^#+ (.*)$", r"**\1**", text, flags=re.MULTILINE)
    return re.sub(r"^(not run:|note )", r"- \1", text, flags=re.MULTILINE)


def block(command: str, out: Output, markdown: bool) -> str:
    """One script's part of a section: its command, its output (Markdown, or fenced text)."""
    lines = [f"`{command}` ({out.seconds:.1f} s)", ""]
    text = out.text.strip("\n")
    if text:
        lines += [as_markdown(text) if markdown else f"```text\n{text}\n```", ""]
    if out.error:
        lines += [f"**failed**: {out.error}", ""]
    return "\n".join(lines)


def machine_header(args, argv: list[str]) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").open()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "\n".join([
        "# Benchmark report", "",
        f"- date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {cpu}; {usable} usable CPU cores of {os.cpu_count()}; {platform.platform()}",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"Python {platform.python_version()}",
        f"- threads: {torch.get_num_threads()} torch threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
        f"- runs: {args.runs}; data: {args.data} (root {args.data_root}); "
        f"{'quick' if args.quick else 'full'} mode",
        f"- command: `python benchmarks/run_all.py {' '.join(argv)}`".rstrip(),
        "",
        "Timings depend on the machine and its load: compare ratios from the same report.", ""])


def sizes(name: str, quick: bool) -> dict:
    full, fewer = SIZES[name]
    return dict(fewer if quick else full)


def command_line(name: str, **settings) -> str:
    """The command that runs ``benchmarks/<name>.py`` alone with these settings, for the reader:
    ``n=10, data_root="data"`` -> ``python benchmarks/<name>.py --n 10 --data-root data`` (a list
    gives its values one after another, True a bare flag)."""
    words = [f"python benchmarks/{name}.py"]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return " ".join(words)


def script(name: str):
    """The module ``benchmarks/<name>.py``, or None if that file does not exist."""
    return importlib.import_module(name) if (HERE / f"{name}.py").exists() else None


def section_ops(args) -> str:
    settings = sizes("bench_ops", args.quick)
    out = capture(functools.partial(script("bench_ops").benchmark, **settings))
    return block(command_line("bench_ops", **settings), out, markdown=True)


def section_proposals(args) -> str:
    data = {"data": args.data, "data_root": args.data_root}
    settings = {**sizes("bench_proposals", args.quick), **data}
    bench_proposals = script("bench_proposals")  # --data takes several sources: here one
    work = functools.partial(bench_proposals.benchmark, **{**settings, "data": [args.data]})
    parts = ["### Sliding windows and selective search", "",
             block(command_line("bench_proposals", **settings), capture(work), markdown=False),
             "### The RPN against selective search", ""]
    rpn = script(RPN_SCRIPT)
    run = Path(args.runs) / "faster_rcnn"
    if rpn is None:
        parts.append(f"not run: benchmarks/{RPN_SCRIPT}.py is missing (not written yet)\n")
    elif not (run / "checkpoint.pt").exists():
        parts.append(f"not run: train faster_rcnn first (python -m stages.faster_rcnn --out {run}): "
                     f"the RPN's proposals come from a trained stage 3\n")
    else:
        settings = {"run": str(run), **data, **sizes(RPN_SCRIPT, args.quick)}
        parts.append(block(command_line(RPN_SCRIPT, **settings),
                           capture(functools.partial(rpn.benchmark, **settings)), markdown=False))
    return "\n".join(parts)


def section_stages(args) -> str:
    settings = {"runs": args.runs, "data": args.data, "data_root": args.data_root,
                **sizes("bench_stages", args.quick)}
    out = capture(functools.partial(script("bench_stages").benchmark, **settings))
    return block(command_line("bench_stages", **settings), out, markdown=True)


def section_peers(args) -> str:
    bench_peers = script("bench_peers")
    summary = functools.partial(bench_peers.summarize, args.runs)
    if not args.peers:  # read what earlier runs measured; nothing is trained
        out = capture(summary)
        note = (f"From the runs under `{args.runs}` (not trained now; `--peers` trains ours and "
                f"the peers side by side for the same budget).")
        return note + "\n\n" + block(f"bench_peers.summarize({args.runs!r})", out, markdown=True)
    settings = {"runs": args.runs, "data": args.data, "data_root": args.data_root}
    settings |= {"budget": args.budget} if args.budget is not None else {}
    log = capture(functools.partial(bench_peers.benchmark, **settings))  # folded away below
    table = capture(summary, echo=False).text
    return "\n".join([block(command_line("bench_peers", **settings),
                            Output(table, log.seconds, log.error), markdown=True),
                      "<details><summary>training log</summary>", "",
                      f"```text\n{log.text.strip()}\n```", "", "</details>"])


SECTIONS = {"ops": section_ops, "proposals": section_proposals, "stages": section_stages,
            "peers": section_peers}


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    parts = [machine_header(args, argv)]
    for key, run_section in SECTIONS.items():
        print(f"\n[run_all] {HEADINGS[key].lstrip('# ')}", flush=True)
        try:
            body = run_section(args)
        except Exception as e:  # noqa: BLE001 (e.g. a script that cannot be imported)
            traceback.print_exc(file=sys.stderr)
            body = f"**failed**: {type(e).__name__}: {e}\n"
        parts += [HEADINGS[key], "", body.rstrip() + "\n"]
    report = "\n".join(parts)
    files.write_text(args.out, report)
    print(f"\n[run_all] wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
