"""The paper's experiment (Gebhart, Schrater and Hylton 2019), re-run end to end with actopo.

For each setting (dataset x network x edge threshold):
  1. `actopo run` over the test images with the attacks (each with its matched-noise control),
     input pixels left out of the graph, persistent subgraphs on;
  2. `actopo run` over clean training images: the fit run for the class representatives, the
     topological-uncertainty means and the SVC;
  3. `actopo analyze subgraphs TEST --fit TRAIN` and `actopo analyze uncertainty TEST --fit TRAIN`;
  4. scripts/bag_of_edges.py TRAIN TEST: the reference code's linear SVC on bag-of-edges vectors;
then writes the report (Markdown + PNG figures) from the Parquet tables.

Usage: python scripts/reproduce_paper.py [--quick] [SETTING ...]   (see --help)
SETTING is DATASET:NET:SPEC, e.g. fashion-mnist:ccff-relu:models/ccff.toml (the default).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional


import reproduce_report

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {  # name -> (test images, training images); extend with --data NAME=TEST,TRAIN
    "fashion-mnist": (
        "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
    ),
    # Installed by scripts/setup_mnist.sh (opt-in).
    "mnist": (
        str(ROOT / "data/mnist/t10k-images-idx3-ubyte"),
        str(ROOT / "data/mnist/train-images-idx3-ubyte"),
    ),
}
# The attacks the paper used that actopo has, plus FGSM and DeepFool. Each gradient attack and the
# blur get a matched-noise control (Gaussian noise of the same per-sample L2 size); Gaussian noise
# is itself random noise and has none.
ATTACKS = [
    ({"kind": "fgsm", "eps": 0.1}, "fgsm-0.1", True),
    ({"kind": "pgd", "eps": 0.1, "steps": 20}, "pgd-linf-0.1", True),
    ({"kind": "cw_l2"}, "cw_l2", True),
    ({"kind": "deepfool"}, "deepfool", True),
    ({"kind": "gaussian_noise", "sigma": 0.1}, "gaussian_noise-0.1", False),
    ({"kind": "gaussian_blur", "sigma": 1.0}, "gaussian_blur-1", True),
]
# --thresholds tokens: "0" no threshold; "P" issue 12's per-op edge percentile; "rP" the reference
# code's own cuts (graph.threshold = { reference_percentile = P }, docs/graph.md).
THRESHOLD_KEYS = {"": "percentile", "r": "reference_percentile"}


class Threshold(NamedTuple):
    token: str  # as given to --thresholds; also the run folder's suffix (t0, t90, tr90)
    label: str  # in the report: "none", "90", "reference 90"
    setting: Optional[str]  # the --set value, None for no threshold


def parse_threshold(token):
    prefix = "r" if token.startswith("r") else ""
    try:
        value = float(token[len(prefix):])
    except ValueError:
        sys.exit(f"reproduce_paper: --thresholds {token!r}: expected P or rP with P a percentile in [0, 100], e.g. 90 or r90")
    if not 0 <= value <= 100:
        sys.exit(f"reproduce_paper: --thresholds {token!r}: the percentile must lie in [0, 100]")
    if value == 0 and not prefix:
        return Threshold(token, "none", None)
    shown = f"{value:g}"
    label = f"reference {shown}" if prefix else shown
    return Threshold(token, label, f"graph.threshold={{ {THRESHOLD_KEYS[prefix]} = {shown} }}")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", default=["fashion-mnist:ccff-relu:models/ccff.toml"],
                    help="DATASET:NET:SPEC (default: fashion-mnist:ccff-relu:models/ccff.toml)")
    ap.add_argument("--quick", action="store_true", help="100 test and 200 training images")
    ap.add_argument("--test-limit", type=int, help="test images per setting (default 1000; quick 100)")
    ap.add_argument("--train-limit", type=int, help="training images for the fit (default 1000; quick 200)")
    ap.add_argument("--attacks", help="comma-separated attack kinds to keep (default: all six)")
    ap.add_argument("--thresholds", default="0,90,r90",
                    help="0 = no threshold; P = graph.threshold = { percentile = P }; rP = graph.threshold = "
                         "{ reference_percentile = P }, the reference code's cuts (each skipped, and said so "
                         "in the report, when the actopo binary does not accept it)")
    ap.add_argument("--takes", default="3,15,50", help="SVC bag sizes (generators per input)")
    ap.add_argument("--folds", type=int, default=10, help="SVC cross-validation folds")
    ap.add_argument("--top-k", type=int, default=100, help="subgraph.top_k (>= the largest take)")
    ap.add_argument("--min-fraction", type=float, default=0.2, help="analyze subgraphs --min-fraction")
    ap.add_argument("--data", action="append", default=[], help="NAME=TEST_IMAGES,TRAIN_IMAGES (repeatable)")
    ap.add_argument("--out", help="folder for the runs (default out/reproduction; quick: out/reproduction-quick)")
    ap.add_argument("--doc", help="report to write (default docs/reproduction.md; quick: OUT/reproduction.md, "
                                  "so a quick run never replaces the full report)")
    ap.add_argument("--actopo", default=os.environ.get("ACTOPO", str(ROOT / "target/release/actopo")))
    ap.add_argument("--device", default="auto", help="model.device")
    ap.add_argument("--fresh", action="store_true", help="delete earlier runs of these settings first")
    ap.add_argument("--reuse", action="store_true",
                    help="take a setting that an earlier invocation finished (its folder's result.json) as it is, "
                         "without re-running its analyses and SVC; the report still covers every setting")
    args = ap.parse_args()
    args.out = args.out or str(ROOT / ("out/reproduction-quick" if args.quick else "out/reproduction"))
    args.doc = args.doc or (str(Path(args.out) / "reproduction.md") if args.quick else str(ROOT / "docs/reproduction.md"))
    args.test_limit = args.test_limit or (100 if args.quick else 1000)
    args.train_limit = args.train_limit or (200 if args.quick else 1000)
    takes = [int(t) for t in args.takes.split(",")]
    if max(takes) > args.top_k:
        ap.error(f"--top-k {args.top_k} is below the largest take {max(takes)}; fix: --top-k {max(takes)}")
    for item in args.data:
        name, _, paths = item.partition("=")
        test, _, train = paths.partition(",")
        if not (name and test and train):
            ap.error(f"--data {item!r}: expected NAME=TEST_IMAGES,TRAIN_IMAGES")
        DATASETS[name] = (test, train)
    return args


def toml_value(value):
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def attack_tables(kinds):
    """The [[attacks]] entries and the (attack, control) variant names, in config order."""
    entries, pairs = [], []
    for attack, name, controlled in ATTACKS:
        if kinds and attack["kind"] not in kinds:
            continue
        entries.append(attack)
        control = None
        if controlled:
            entries.append({"kind": "matched_noise", "of": name})
            control = f"matched_noise-{name}"
        pairs.append((name, control))
    return entries, pairs


def config_text(spec, shard, limit, out_dir, top_k, device, attacks):
    lines = [
        "[model]", f"spec = {toml_value(str(spec))}", f"device = {toml_value(device)}", "",
        "[data]", f"shards = {toml_value([shard])}", f"limit = {limit}", "clip = [0.0, 1.0]", "",
        "[pipeline]", "batch_size = 128", "seed = 0", "",
        # the reference code left the input pixels out of the graph
        "[graph]", 'scopes = ["network", "layers"]', "include_input = false", "",
        "[output]", f"dir = {toml_value(str(out_dir))}", "subgraphs = true", "",
        "[subgraph]", f"top_k = {top_k}", "",
    ]
    if not attacks:
        lines.insert(lines.index("[model]"), "attacks = []")
    for attack in attacks:
        lines.append("[[attacks]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in attack.items()]
        lines.append("")
    return "\n".join(lines)


def actopo(args, *argv, log=None):
    cmd = [args.actopo, *argv]
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if log:
        Path(log).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"reproduce_paper: `{' '.join(cmd)}` failed (exit {result.returncode}):\n{result.stderr}")
    return result.stdout


def python_step(argv, log):
    """One of our Python scripts; its output goes to `log`, a failure stops the reproduction."""
    cmd = [sys.executable, *argv]
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    Path(log).write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"reproduce_paper: `{' '.join(cmd)}` failed (exit {done.returncode}); see {log}:\n{done.stdout[-2000:]}{done.stderr}")


def threshold_supported(args, config, threshold):
    probe = subprocess.run([args.actopo, "validate", str(config), "--set", threshold.setting],
                           capture_output=True, text=True)
    return probe.returncode == 0


def run_setting(args, dataset, net, spec, threshold, pairs_attacks):
    entries, pairs = pairs_attacks
    test_images, train_images = DATASETS[dataset]
    folder = Path(args.out) / f"{dataset}-{net}-t{threshold.token}"
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done_file = folder / "result.json"
    if args.reuse and done_file.exists():
        print(f"reproduce_paper: {folder.name} finished earlier; reusing it (--reuse)")
        return json.loads(done_file.read_text())
    spec = (ROOT / spec).resolve() if not Path(spec).is_absolute() else Path(spec)
    test_cfg, train_cfg = folder / "test.toml", folder / "train.toml"
    test_cfg.write_text(config_text(spec, test_images, args.test_limit, folder / "test", args.top_k, args.device, entries))
    train_cfg.write_text(config_text(spec, train_images, args.train_limit, folder / "train", args.top_k, args.device, []))
    extra = []
    if threshold.setting:
        if not threshold_supported(args, test_cfg, threshold):
            print(f"reproduce_paper: {args.actopo} does not accept `{threshold.setting}`; skipping threshold {threshold.label}")
            return {"dataset": dataset, "net": net, "threshold": threshold.label, "token": threshold.token,
                    "skipped": f"the actopo binary does not accept `{threshold.setting}`"}
        extra = ["--set", threshold.setting]
    started = time.time()
    actopo(args, "run", str(test_cfg), *extra, log=folder / "run_test.log")
    actopo(args, "run", str(train_cfg), *extra, log=folder / "run_train.log")
    fit = ["--fit", str(folder / "train")]
    actopo(args, "analyze", "subgraphs", str(folder / "test"), *fit, "--min-fraction", str(args.min_fraction),
           log=folder / "analyze_subgraphs.txt")
    actopo(args, "analyze", "uncertainty", str(folder / "test"), *fit, log=folder / "analyze_uncertainty.txt")
    python_step([str(ROOT / "scripts/paper_comparison.py"), str(folder / "test"), "--fit", str(folder / "train"),
                 "--min-fraction", str(args.min_fraction), "--check"], folder / "paper_comparison.txt")
    svc_json = folder / "svc.json"
    python_step([str(ROOT / "scripts/bag_of_edges.py"), str(folder / "train"), str(folder / "test"),
                 "--takes", args.takes, "--folds", str(args.folds), "--json", str(svc_json)], folder / "svc.txt")
    result = {"dataset": dataset, "net": net, "threshold": threshold.label, "token": threshold.token,
              "folder": str(folder), "pairs": pairs, "seconds": time.time() - started,
              "threshold_set": extra[1] if extra else None}
    done_file.write_text(json.dumps(result, indent=1) + "\n")  # written last: the setting is complete
    return result


def main():
    args = parse_args()
    if not os.access(args.actopo, os.X_OK):
        sys.exit(f"reproduce_paper: no actopo binary at {args.actopo}; fix: cargo build --release, or set "
                 "ACTOPO=/path/to/actopo (or --actopo PATH)")
    started = time.time()
    kinds = set(args.attacks.split(",")) if args.attacks else None
    pairs_attacks = attack_tables(kinds)
    results = []
    for setting in args.settings:
        parts = setting.split(":", 2)
        if len(parts) != 3 or parts[0] not in DATASETS:
            sys.exit(f"reproduce_paper: setting {setting!r}: expected DATASET:NET:SPEC with DATASET one of "
                     f"{sorted(DATASETS)} (add others with --data NAME=TEST_IMAGES,TRAIN_IMAGES)")
        for threshold in [parse_threshold(t.strip()) for t in args.thresholds.split(",")]:
            results.append(run_setting(args, *parts, threshold, pairs_attacks))
    total = time.time() - started
    reproduce_report.write(args, results, total)
    print(f"reproduce_paper: {len(results)} setting(s) in {total:.0f} s -> {args.doc}")


if __name__ == "__main__":
    main()
