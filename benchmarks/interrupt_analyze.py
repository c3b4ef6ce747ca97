"""Every `analyze` feature, interrupted at random points and started again, gives the same tables.

Trains four tiny runs (resnet8, alpha 0 and -1, seeds 0 and 1, the SI
recorded while training, checkpoints kept along training), then:

1. an earlier analysis (selectivity only) into a template output directory:
   the outputs an interrupted analysis must leave as they were;
2. the full-feature analysis (every stage: the null, Figure 3 under every
   measure and its maps, ablation curves and single-unit importance, the
   unit pages, training curves, generated corruptions, FGSM and PGD,
   selectivity, ablation and linearity over training)
   uninterrupted, into a reference directory, timed;
3. `--cycles` times per signal (SIGINT, SIGTERM, SIGKILL): the template
   copied, the full-feature analysis started over it, the signal sent after
   a random delay in [0.3 s, 1.1 x the reference's time], then checked:

   * SIGINT/SIGTERM: exit status 130/143 and one line on stderr; no partial
     file or folder left (``.analysis-*``, ``*.tmp``); the earlier outputs
     byte for byte as they were;
   * SIGKILL: the earlier outputs as they were, or (a kill in the few
     renames that move a finished analysis into place) completed by the
     rerun;

   then the same command again, uninterrupted: every table (``*.csv``,
   ``*.parquet``), every figure, every unit page file and the report (but
   its date line) must equal the reference's byte for byte, and nothing
   partial may be left.

A process that finished before its signal counts as "finished first".
Prints one line per cycle and a JSON summary; exit status 1 on any
difference::

    python benchmarks/interrupt_analyze.py --cycles=2 --seed=0

Takes the reference's time about 2 + 6 x cycles times (tiny data: about a
minute per cycle on the 2-core VM).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "synthetic:train=200,test=80,size=8,classes=4"
COMMAND = [sys.executable, "-m", "tf_selectivity.analyze"]
# Every stage, small enough for seconds per run.
FULL = [
    "--cca=true", "--similarity=pwcca,svcca,linear_cka,debiased_cka,procrustes", "--cca_pwcca_variant=both",
    "--similarity_maps", "--selectivity_null=20", "--ablation", "--unit_ablation", "--ablation_random_orders=2",
    "--ablation_fractions=0,0.5,1", "--ablation_max_samples=40", "--units_page", "--gallery_k=4",
    "--training_curves", "--robustness=corruptions:generated,fgsm,pgd", "--corruptions=gaussian_noise,contrast",
    "--severities=1,3", "--attack_epsilons=0,2", "--pgd_steps=2", "--robustness_max_samples=40",
    "--over_training", "--over_training_max_samples=40", "--over_training_null=10",
    "--over_training_linearity_pairs=8",
    "--bootstrap_resamples=200", "--verbose=0",
]
EARLIER = ["--cca=false", "--bootstrap_resamples=200", "--verbose=0"]
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}


def train_runs(root: str) -> None:
    from tf_selectivity.training import TrainConfig, train

    for alpha in (0.0, -1.0):
        for seed in (0, 1):
            train(TrainConfig(model="resnet8", alpha=alpha, seed=seed, dataset=DATASET, epochs=2, batch_size=50,
                              lr_milestones=(), selectivity_every=1, keep_checkpoints=(0, 0.5, 1, 2),
                              output_dir=os.path.join(root, f"a{alpha:g}_s{seed}")), verbose=0)


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}


def analyze(runs: str, out: str, flags: list) -> subprocess.Popen:
    return subprocess.Popen([*COMMAND, f"--runs={runs}", f"--output_dir={out}", *flags], env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def digest(path: str) -> str:
    with open(path, "rb") as f:
        if path.endswith("report.md"):  # but its date line
            return hashlib.sha256(b"\n".join(line for line in f.read().split(b"\n")
                                             if not line.startswith(b"_Generated"))).hexdigest()
        return hashlib.sha256(f.read()).hexdigest()


def outputs(out: str) -> dict:
    """Every output of the analysis in `out` (cache, lock and marker aside): relative path -> hash."""
    found = {}
    for directory, dirs, files in os.walk(out):
        relative = os.path.relpath(directory, out)
        if relative.split(os.sep)[0] == "cache":
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(directory, name)
            key = os.path.normpath(os.path.join(relative, name))
            if key not in ("analysis.json", ".lock"):
                found[key] = digest(path)
    return found


def partial(out: str) -> list:
    """What a stopped process left half-done: staging folders, temporaries (cache included)."""
    left = []
    for directory, dirs, files in os.walk(out):
        for name in dirs + files:
            if name.startswith(".analysis-") or ".tmp" in name or name.endswith(".partial"):
                left.append(os.path.relpath(os.path.join(directory, name), out))
    return left


def run_to_end(runs: str, out: str, flags: list) -> float:
    start = time.monotonic()
    process = analyze(runs, out, flags)
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"analysis into {out} failed ({process.returncode}): {stderr[-2000:]}")
    return time.monotonic() - start


def tables(found: dict) -> dict:
    return {k: v for k, v in found.items() if k.endswith((".csv", ".parquet")) and os.sep not in k}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2, help="Interrupted analyses per signal.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random delays.")
    parser.add_argument("--work_dir", default=None, help="Where the runs and analyses go (default: a temporary folder).")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.work_dir or tempfile.mkdtemp(prefix="interrupt_analyze_")
    runs = os.path.join(work, "runs")
    if not os.path.isdir(runs):
        train_runs(runs)
    template = os.path.join(work, "earlier")
    shutil.rmtree(template, ignore_errors=True)
    run_to_end(runs, template, EARLIER)
    earlier = outputs(template)
    reference_dir = os.path.join(work, "reference")
    shutil.rmtree(reference_dir, ignore_errors=True)
    seconds = run_to_end(runs, reference_dir, FULL)
    reference = outputs(reference_dir)
    print(f"reference: {len(reference)} files ({len(tables(reference))} tables) in {seconds:.0f} s", flush=True)

    cycles, failures = [], []
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        for cycle in range(args.cycles):
            name = signal.Signals(number).name
            out = os.path.join(work, f"{name.lower()}_{cycle}")
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(template, out, symlinks=True)
            delay = rng.uniform(0.3, 1.1 * seconds)
            process = analyze(runs, out, FULL)
            time.sleep(delay)
            finished_first = process.poll() is not None
            if not finished_first:
                process.send_signal(number)
            _, stderr = process.communicate()
            lines = [line for line in stderr.splitlines() if line.strip()]
            problems = []
            if finished_first:
                outcome = "finished first"
                if process.returncode != 0:
                    problems.append(f"exit {process.returncode}: {stderr[-500:]}")
            else:
                outcome = f"exit {process.returncode}"
                if process.returncode != EXIT[number]:
                    problems.append(f"exit {process.returncode}, not {EXIT[number]}: {stderr[-500:]}")
                if number != signal.SIGKILL:
                    if len(lines) != 1 or "interrupted; " not in lines[0]:
                        problems.append(f"stderr is not one line: {lines}")
                    if partial(out):
                        problems.append(f"left behind: {partial(out)}")
                now = outputs(out)
                if now != earlier and not (number == signal.SIGKILL and now == reference):
                    changed = sorted(k for k in set(now) | set(earlier) if now.get(k) != earlier.get(k))
                    if number == signal.SIGKILL:
                        outcome += " (killed while moving the analysis into place)"
                    else:
                        problems.append(f"earlier outputs changed: {changed[:5]}")
            rerun_seconds = run_to_end(runs, out, FULL)
            after = outputs(out)
            if tables(after) != tables(reference):
                problems.append("tables differ: " + ", ".join(sorted(
                    k for k in set(tables(after)) | set(tables(reference)) if after.get(k) != reference.get(k))))
            elif after != reference:
                problems.append("files besides the tables differ: " + ", ".join(sorted(
                    k for k in set(after) | set(reference) if after.get(k) != reference.get(k)))[:500])
            if partial(out):
                problems.append(f"left behind after the rerun: {partial(out)}")
            record = {"signal": name, "delay_s": round(delay, 2), "outcome": outcome,
                      "rerun_s": round(rerun_seconds, 1), "identical": not problems}
            cycles.append(record)
            print(json.dumps({**record, **({"problems": problems} if problems else {})}), flush=True)
            failures += problems
            shutil.rmtree(out, ignore_errors=True)
    summary = {
        "cycles": len(cycles), "identical": sum(c["identical"] for c in cycles),
        "finished_first": sum(c["outcome"] == "finished first" for c in cycles),
        "reference_s": round(seconds, 1), "tables": len(tables(reference)), "files": len(reference),
        "machine": platform.platform(), "cpus": os.cpu_count(),
    }
    print(json.dumps(summary), flush=True)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
