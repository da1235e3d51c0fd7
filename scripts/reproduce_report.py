"""Writes the reproduction report (Markdown and PNG figures) from scripts/reproduce_paper.py's runs.

Everything here is read back from the Parquet tables and svc.json of each setting's folder; the
text above the GENERATED marker of an existing report (the hand-written introduction) is kept.
"""

import json
import math
import os
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw

GENERATED = "<!-- everything below is written by scripts/reproduce_paper.py; edit the text above only -->"
DEFAULT_INTRO = "# Reproducing Gebhart, Schrater and Hylton (2019)\n\n(introduction to be written)\n"
# SVC recovery on PGD inputs in the reference code's notebooks (tgebhart/pt_activation).
REFERENCE_PGD = {
    ("mnist", "ccff-relu"): 0.70,
    ("mnist", "ccff-sigmoid"): 0.83,
    ("fashion-mnist", "ccff-relu"): 0.80,
    ("fashion-mnist", "ccff-sigmoid"): 0.72,
}
ADVERSARIAL = ("fgsm", "pgd", "cw_l2", "deepfool")


def shown(path):
    """A path relative to the repository when it is inside it."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def load(folder):
    folder = Path(folder)
    summary = (
        pl.read_parquet(f"{folder}/test/summary/*.parquet")
        .filter(pl.col("scope") == "network")
        .select("shard", "index", "variant", "label", "pred", "perturbation_l2", "perturbation_linf")
    )
    clean = summary.filter(pl.col("variant") == "clean").select("shard", "index", pl.col("pred").alias("clean_pred"))
    summary = summary.join(clean, on=["shard", "index"], how="left")
    samples = pl.read_parquet(f"{folder}/test/analysis/subgraph_samples.parquet").join(
        clean, on=["shard", "index"], how="left"
    )
    return {
        "summary": summary,
        "variants": pl.read_parquet(f"{folder}/test/analysis/subgraph_variants.parquet"),
        "samples": samples,
        "uncertainty": pl.read_parquet(f"{folder}/test/analysis/uncertainty_counts.parquet").filter(
            pl.col("class").is_null()
        ),
        "representatives": pl.read_parquet(f"{folder}/test/analysis/subgraph_representatives.parquet"),
        "svc": json.loads((folder / "svc.json").read_text()),
    }


SUCCESS = (pl.col("clean_pred") == pl.col("label")) & (pl.col("pred") != pl.col("label"))


def model_rows(summary):
    return (
        summary.group_by("variant", maintain_order=True)
        .agg(
            pl.len().alias("n"),
            (pl.col("pred") == pl.col("label")).mean().alias("accuracy"),
            (pl.col("pred") != pl.col("label")).filter(pl.col("clean_pred") == pl.col("label")).mean().alias("success"),
            pl.col("perturbation_l2").filter(SUCCESS).median().alias("l2_success"),
            pl.col("perturbation_linf").filter(SUCCESS).median().alias("linf_success"),
            pl.col("perturbation_l2").median().alias("l2_all"),
        )
        .to_dicts()
    )


def svc_by(data):
    """{take: {variant: row}} and {take: cv row}."""
    return {r["take"]: {v["variant"]: v for v in r["variants"]} for r in data["svc"]}, {
        r["take"]: r for r in data["svc"]
    }


def section(result, data, figure_rel):
    name = f"{result['dataset']} / {result['net']} / threshold {result['threshold']}"
    lines = [f"### {name}", ""]
    models = model_rows(data["summary"])
    clean = next(r for r in models if r["variant"] == "clean")
    lines.append(
        f"{clean['n']} test images; clean accuracy {fmt(clean['accuracy'])}; run, fit, analyses and SVC "
        f"took {result['seconds']:.0f} s. Folder: `{shown(result['folder'])}`."
    )
    lines += ["", "**The model and the perturbations** (success: share of the clean-right inputs whose "
              "prediction the variant changed; sizes in raw pixel units, [0, 1] scale, medians over "
              "the successful ones; `L2 all`: median over all inputs)", "",
              "| variant | accuracy | success | L2 (succ.) | Linf (succ.) | L2 all |", "| --- | --- | --- | --- | --- | --- |"]
    for r in models[1:]:
        lines.append(f"| {r['variant']} | {fmt(r['accuracy'])} | {fmt(r['success'])} | {fmt(r['l2_success'])} | "
                     f"{fmt(r['linf_success'])} | {fmt(r['l2_all'])} |")
    svc, cv = svc_by(data)
    takes = sorted(svc)
    lines += ["", "**Subgraphs vs class representatives** (`actopo analyze subgraphs --fit`; n: clean-right "
              "inputs whose prediction the variant changed, all clean-right inputs for `clean`; overlap "
              "|S ∩ R| / |S| with the true-class and the predicted (adversarial) class representative; "
              "TU AUROC: `analyze uncertainty`, wrong vs right over all inputs of the variant)", "",
              "| variant | n | overlap true | overlap adv. | gained edges: true / adv. | recovery | retention | TU AUROC |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    auroc = {r["variant"]: r["auroc"] for r in data["uncertainty"].to_dicts()}
    for r in data["variants"].to_dicts():
        lines.append(
            f"| {r['variant']} | {r['n']} | {fmt(r['mean_overlap_true'])} | {fmt(r['mean_overlap_pred'])} | "
            f"{fmt(r['mean_diff_overlap_true'])} / {fmt(r['mean_diff_overlap_pred'])} | {fmt(r['recovery_rate'])} | "
            f"{fmt(r['retention_rate'])} | {fmt(auroc.get(r['variant']))} |"
        )
    cv_text = "; ".join(
        f"take {t}: {fmt(cv[t]['cv_accuracy_mean'])} ± {fmt(cv[t]['cv_accuracy_std'])} ({cv[t]['vocabulary']} edges)"
        for t in takes)
    lines += ["", f"**Bag-of-edges linear SVC** ({cv[takes[0]]['cv_folds']}-fold CV accuracy on "
              f"{cv[takes[0]]['fit_samples']} clean training inputs: {cv_text}). Per take: accuracy over all "
              "test inputs of the variant / recovery / retention over the successful perturbations "
              "(clean prediction right, perturbed prediction wrong; n as in the model table's success).", "",
              "| variant | n succ. | " + " | ".join(f"take {t}: acc / rec / ret" for t in takes) + " |",
              "| --- | --- | " + " | ".join("---" for _ in takes) + " |"]
    for variant in svc[takes[0]]:
        row = [variant, str(svc[takes[0]][variant]["n_successful"])]
        for t in takes:
            v = svc[t][variant]
            row.append(f"{fmt(v['accuracy'])} / {fmt(v['recovery'])} / {fmt(v['retention'])}")
        lines.append("| " + " | ".join(row) + " |")
    sizes = data["representatives"].group_by("class").agg(pl.len().alias("edges"), pl.col("support").first()).sort("class")
    lines += ["", "Class representatives (fitted on the training run): " + ", ".join(
        f"{r['class']}: {r['edges']} edges / {r['support']} inputs" for r in sizes.to_dicts()) + ".", ""]
    lines += [f"![overlap distributions]({figure_rel})", ""]
    return lines


def comparison(results, loaded):
    lines = ["## Beside the reference code's figures", "",
             "| figure | reference | ours |", "| --- | --- | --- |"]
    for (dataset, net), ref in REFERENCE_PGD.items():
        ours = []
        for result in results:
            if (result["dataset"], result["net"]) == (dataset, net) and result.get("folder") in loaded:
                svc, _ = svc_by(loaded[result["folder"]])
                ours.append(f"threshold {result['threshold']}: " + ", ".join(
                    f"take {t} {fmt(svc[t]['pgd-linf-0.1']['recovery'])}" for t in sorted(svc) if "pgd-linf-0.1" in svc[t]))
        lines.append(f"| SVC recovery on PGD, {net.upper()} {dataset} | {ref:.2f} | {'; '.join(ours) or 'not run'} |")
    lines.append("| SVC recovery on L-BFGS, CCFF fashion-mnist | 0.90 | not run: actopo has no L-BFGS attack |")
    for result in results:
        if (result["dataset"], result["net"]) == ("fashion-mnist", "ccff-relu") and result.get("folder") in loaded:
            data = loaded[result["folder"]]
            model = {r["variant"]: r for r in model_rows(data["summary"])}
            svc, _ = svc_by(data)
            noise = "matched_noise-pgd-linf-0.1"
            ours = f"model {fmt(model['clean']['accuracy'])} vs {fmt(model.get(noise, {}).get('accuracy'))}; SVC " + ", ".join(
                f"take {t} {fmt(svc[t]['clean']['accuracy'])} vs {fmt(svc[t].get(noise, {}).get('accuracy'))}"
                for t in sorted(svc))
            lines.append(f"| accuracy clean vs PGD-matched noise, CCFF-RELU fashion-mnist, threshold "
                         f"{result['threshold']} | 0.89 vs 0.89 | {ours} |")
    lines += ["", "The reference's noise figure does not say whose accuracy it is (the network's or the SVC's); "
              "we give both."]
    return lines + [""]


def pairs_text(variants, rates):
    return ", ".join(f"{v} {fmt(rates(v)[0])} vs {fmt(rates(v)[1])}" for v in variants)


def claims(result, data):
    """Plain per-claim statements from the numbers; 'supported' only where every attack agrees."""
    rows = {r["variant"]: r for r in data["variants"].to_dicts()}
    svc, _ = svc_by(data)
    take = max(svc)
    attacks = [v for v in rows if v.split("-")[0] in ADVERSARIAL]
    out = [f"**{result['dataset']} / {result['net']} / threshold {result['threshold']}**", ""]
    out.append(f"- Context: on clean test inputs the representatives name the true class of "
               f"{fmt(rows['clean']['recovery_rate'])} of the clean-right inputs and the SVC (take {take}) of "
               f"{fmt(svc[take]['clean']['accuracy'])} of all inputs (chance 0.1); recovery under attack is "
               f"bounded by these.")
    graph_wins = [v for v in attacks if (rows[v]["recovery_rate"] or 0) > (rows[v]["retention_rate"] or 0)]
    svc_wins = [v for v in attacks if (svc[take][v]["recovery"] or 0) > (svc[take][v]["retention"] or 0)]
    overlap_wins = [v for v in attacks if (rows[v]["mean_overlap_true"] or 0) > (rows[v]["mean_overlap_pred"] or 0)]
    gained_adv = [v for v in attacks if (rows[v]["mean_diff_overlap_pred"] or 0) > (rows[v]["mean_diff_overlap_true"] or 0)]
    dropped = [v for v in attacks if (rows[v]["mean_overlap_true"] or 0) < (rows["clean"]["mean_overlap_true"] or 0)]

    def verdict(wins):
        return "supported" if len(wins) == len(attacks) else ("partly supported" if wins else "not supported")

    out.append(f"- *A perturbed input's persistent subgraph still points at its true class* (representatives): "
               f"{verdict(graph_wins)}: recovery > retention for {len(graph_wins)} of {len(attacks)} attacks "
               f"({pairs_text(attacks, lambda v: (rows[v]['recovery_rate'], rows[v]['retention_rate']))}).")
    out.append(f"- The same with the bag-of-edges SVC (take {take}): {verdict(svc_wins)}: recovery > retention for "
               f"{len(svc_wins)} of {len(attacks)} attacks "
               f"({pairs_text(attacks, lambda v: (svc[take][v]['recovery'], svc[take][v]['retention']))}).")
    out.append(f"- *Overlap with the true class exceeds overlap with the adversarial class*: {verdict(overlap_wins)} "
               f"({len(overlap_wins)} of {len(attacks)}).")
    out.append(f"- *Perturbations alter the dominant structure* (overlap with the true class lower than clean "
               f"{fmt(rows['clean']['mean_overlap_true'])}): {verdict(dropped)} ({len(dropped)} of {len(attacks)}).")
    out.append(f"- *They do not add structure of the adversarial class* (the edges gained over the clean subgraph "
               f"overlap the true class at least as much as the adversarial one): "
               f"{verdict([v for v in attacks if v not in gained_adv])}; gained edges lean to the adversarial class "
               f"for {len(gained_adv)} of {len(attacks)} attacks.")
    right = data["samples"].filter(pl.col("clean_pred") == pl.col("label"))
    mean_true = dict(right.group_by("variant").agg(pl.col("overlap_true").mean()).iter_rows())
    controlled = [(a, c) for a, c in result["pairs"] if c and a.split("-")[0] in ADVERSARIAL]
    specific = [a for a, c in controlled if (mean_true.get(a) or 0) < (mean_true.get(c) or 0)]
    out.append(f"- *The alteration is the attack's, not any perturbation of its size* (over all clean-right inputs, "
               f"mean overlap with the true class lower under the attack than under its matched noise; clean "
               f"{fmt(mean_true.get('clean'))}): {verdict(specific) if len(controlled) == len(attacks) else 'partly checked'} "
               f"({', '.join(f'{a} {fmt(mean_true.get(a))} vs noise {fmt(mean_true.get(c))}' for a, c in controlled)}).")
    noise = "matched_noise-pgd-linf-0.1"
    if noise in svc[take]:
        model = {r["variant"]: r for r in model_rows(data["summary"])}
        for who, clean_acc, noisy_acc in [("network", model["clean"]["accuracy"], model[noise]["accuracy"]),
                                          (f"SVC (take {take})", svc[take]["clean"]["accuracy"], svc[take][noise]["accuracy"])]:
            word = "supported" if abs(clean_acc - noisy_acc) <= 0.03 else "not supported"
            out.append(f"- *Noise of the attack's size leaves the {who}'s accuracy unchanged* (within 0.03): {word}: "
                       f"{fmt(clean_acc)} clean vs {fmt(noisy_acc)} with PGD-matched noise.")
    ref = REFERENCE_PGD.get((result["dataset"], result["net"]))
    if ref is not None and "pgd-linf-0.1" in svc[take]:
        ours = max(svc[t]["pgd-linf-0.1"]["recovery"] or 0 for t in svc)
        out.append(f"- *SVC recovery on PGD of about {ref:.2f}*: our best take gives {fmt(ours)} "
                   f"({'matches or beats' if ours >= ref - 0.05 else 'falls short of'} it, tolerance 0.05).")
    return out + [""]


def histogram(values, bins=20):
    counts = [0] * bins
    for v in values:
        if v is not None:
            counts[min(int(v * bins), bins - 1)] += 1
    total = sum(counts) or 1
    return [c / total for c in counts]


CURVES = [("clean (clean-right inputs): true class", (0, 0, 0)),
          ("attacked (successful attacks): true class", (200, 30, 30)),
          ("attacked (successful attacks): adversarial class", (240, 150, 0)),
          ("its matched noise (all clean-right inputs): true class", (30, 90, 220))]


def overlap_figure(data, pairs, path, title):
    """One panel per attack: distributions of |S ∩ R| / |S| for clean, attacked, noise inputs."""
    samples = data["samples"]
    right = samples.filter(pl.col("clean_pred") == pl.col("label"))
    clean = right.filter(pl.col("variant") == "clean")["overlap_true"].to_list()
    pw, ph, pad = 300, 200, 40
    image = Image.new("RGB", (len(pairs) * (pw + pad) + pad, ph + 3 * pad + 20 * len(CURVES)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, 8), title, fill="black")
    for i, (attack, control) in enumerate(pairs):
        ok = right.filter((pl.col("variant") == attack) & (pl.col("pred") != pl.col("label")))
        noise = right.filter(pl.col("variant") == control)["overlap_true"].to_list() if control else []
        series = [clean, ok["overlap_true"].to_list(), ok["overlap_pred"].to_list(), noise]
        x0, y0 = pad + i * (pw + pad), 2 * pad
        draw.rectangle([x0, y0, x0 + pw, y0 + ph], outline="gray")
        draw.text((x0, y0 - 14), f"{attack} (n={ok.height})", fill="black")
        draw.text((x0, y0 + ph + 4), "0", fill="gray")
        draw.text((x0 + pw - 20, y0 + ph + 4), "1.0", fill="gray")
        heights = [histogram(s) for s in series]
        top = max(max(h) for h in heights) or 1
        for (label, colour), h in zip(CURVES, heights):
            if not any(h):
                continue
            step = pw / len(h)
            points = []
            for b, value in enumerate(h):
                y = y0 + ph - value / top * (ph - 5)
                points += [(x0 + b * step, y), (x0 + (b + 1) * step, y)]
            draw.line(points, fill=colour, width=2)
    for j, (label, colour) in enumerate(CURVES):
        y = 2 * pad + ph + 24 + 18 * j
        draw.line([(pad, y + 6), (pad + 30, y + 6)], fill=colour, width=3)
        draw.text((pad + 38, y), label + " representative, |S & R| / |S|", fill="black")
    image.save(path)


def write(args, results, total):
    doc = Path(args.doc)
    intro = DEFAULT_INTRO
    if doc.exists() and GENERATED in doc.read_text():
        intro = doc.read_text().split(GENERATED)[0]
    figures = doc.parent / doc.stem
    figures.mkdir(parents=True, exist_ok=True)
    loaded = {r["folder"]: load(r["folder"]) for r in results if "skipped" not in r}
    lines = [intro.rstrip("\n"), "", GENERATED, "", "## Run", "",
             f"`scripts/reproduce_paper.sh {' '.join(a for a in __import__('sys').argv[1:])}`".replace("`scripts/reproduce_paper.sh `", "`scripts/reproduce_paper.sh`"),
             f"with {args.test_limit} test and {args.train_limit} training images per setting, "
             f"`subgraph.top_k = {args.top_k}`, `--min-fraction {args.min_fraction}`, SVC takes {args.takes}, "
             f"{args.folds}-fold CV; total wall time {total:.0f} s ({total / 60:.1f} min) on "
             f"{os.cpu_count()} CPU cores (`model.device = \"{args.device}\"`), actopo `{shown(args.actopo)}`.", ""]
    lines += comparison(results, loaded)
    lines += ["## What our numbers say about the paper's claims", "",
              "Generated from the tables below by fixed rules (stated with each line); read them with the "
              "tables.", ""]
    for r in results:
        if "skipped" in r:
            lines += [f"**{r['dataset']} / {r['net']} / threshold {r['threshold']}**: not run: {r['skipped']}.", ""]
        else:
            lines += claims(r, loaded[r["folder"]])
    lines += ["## Settings", ""]
    for r in results:
        if "skipped" in r:
            continue
        name = f"overlap-{r['dataset']}-{r['net']}-t{r['token']}.png"
        overlap_figure(loaded[r["folder"]], r["pairs"], figures / name,
                       f"{r['dataset']} / {r['net']} / threshold {r['threshold']}: overlap distributions")
        lines += section(r, loaded[r["folder"]], f"{figures.name}/{name}")
        stem = f"{r['dataset']}-{r['net']}-t{r['token']}"
        attack = next((a for a, _ in r["pairs"] if a.startswith("pgd")), r["pairs"][0][0])
        drawn = subgraph_figures(r["folder"], loaded[r["folder"]]["representatives"], loaded[r["folder"]]["samples"],
                                 attack, figures / f"representatives-{stem}.png", figures / f"example-{stem}.png",
                                 f"{r['dataset']} / {r['net']} / threshold {r['threshold']}")
        lines += [f"![class representatives on the layer grid]({figures.name}/representatives-{stem}.png)", ""]
        if drawn:
            lines += [f"![an attacked input's subgraphs]({figures.name}/example-{stem}.png)", ""]
    doc.write_text("\n".join(lines) + "\n")


def layer_shape(count):
    """(channels, side) with count = channels * side^2 and the fewest channels; side 1 as a last resort."""
    for channels in range(1, count + 1):
        side = math.isqrt(count // channels)
        if count % channels == 0 and side * side * channels == count:
            return channels, side
    return count, 1


class LayerGrid:
    """Unit ids -> pixel positions: vertex layers left to right, channels stacked, each a side x side grid."""

    def __init__(self, vertex_layers, cell, gap=6, margin=20):
        self.layers, x = [], margin
        for name, first, count in vertex_layers:
            channels, side = layer_shape(count)
            self.layers.append((name, first, count, channels, side, x))
            x += side * cell + 4 * margin
        self.cell, self.gap, self.margin = cell, gap, margin
        self.width = x - 2 * margin
        self.height = max(c * (s * cell + gap) for _, _, _, c, s, _ in self.layers) + 2 * margin + 14

    def position(self, unit, x0=0, y0=0):
        for _, first, count, channels, side, x in self.layers:
            if first <= unit < first + count:
                local = unit - first
                channel, rest = divmod(local, side * side)
                row, col = divmod(rest, side)
                y = self.margin + 14 + channel * (side * self.cell + self.gap) + row * self.cell
                return x0 + x + col * self.cell + self.cell / 2, y0 + y + self.cell / 2
        return None

    def draw_frame(self, draw, x0, y0, title):
        draw.text((x0 + self.margin, y0 + 2), title, fill="black")
        for name, _, _, channels, side, x in self.layers:
            for c in range(channels):
                top = y0 + self.margin + 14 + c * (side * self.cell + self.gap)
                draw.rectangle([x0 + x, top, x0 + x + side * self.cell, top + side * self.cell], outline=(200, 200, 200))
            draw.text((x0 + x, y0 + self.height - 14), f"layer {name}", fill="gray")

    def draw_edges(self, draw, x0, y0, edges, colour, width=1):
        for src, dst in edges:
            a, b = self.position(src, x0, y0), self.position(dst, x0, y0)
            if a and b:
                draw.line([a, b], fill=colour, width=width)


def subgraph_figures(folder, representatives, samples, attack, path_reps, path_example, title):
    """Class representatives on the layer grid, and one attacked input's subgraphs beside its classes'."""
    manifest = json.loads((Path(folder) / "test/manifest.json").read_text())
    vertex_layers = manifest["model"]["vertex_layers"]
    grid = LayerGrid(vertex_layers, cell=3)
    classes = sorted(representatives["class"].unique().to_list())
    columns = 5
    image = Image.new("RGB", (columns * grid.width, math.ceil(len(classes) / columns) * grid.height + 20), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 4), title + ": class representatives (edges in >= min-fraction of the class's clean subgraphs)", fill="black")
    for i, c in enumerate(classes):
        x0, y0 = (i % columns) * grid.width, 20 + (i // columns) * grid.height
        grid.draw_frame(draw, x0, y0, f"class {c}")
        rep = representatives.filter(pl.col("class") == c)
        grid.draw_edges(draw, x0, y0, zip(rep["src"].to_list(), rep["dst"].to_list()), (30, 90, 220))
    image.save(path_reps)

    right = samples.filter((pl.col("clean_pred") == pl.col("label")) & (pl.col("variant") == attack)
                           & (pl.col("pred") != pl.col("label"))).sort("index")
    if right.height == 0:
        return False
    pick = right.row(0, named=True)
    subgraphs = pl.read_parquet(f"{folder}/test/subgraphs/*.parquet").filter(
        (pl.col("scope") == "network") & (pl.col("index") == pick["index"]))
    big = LayerGrid(vertex_layers, cell=6)
    image = Image.new("RGB", (2 * big.width, big.height + 40), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 4), f"{title}: test input {pick['index']}, label {pick['label']}, {attack} -> predicted "
              f"{pick['pred']}", fill="black")
    panels = [
        (f"clean subgraph (black) on class {pick['label']}'s representative (blue)", "clean", pick["label"], (30, 90, 220)),
        (f"{attack} subgraph (red) on class {pick['pred']}'s representative (orange)", attack, pick["pred"], (240, 150, 0)),
    ]
    for i, (caption, variant, cls, colour) in enumerate(panels):
        x0, y0 = i * big.width, 24
        big.draw_frame(draw, x0, y0, caption)
        rep = representatives.filter(pl.col("class") == cls)
        big.draw_edges(draw, x0, y0, zip(rep["src"].to_list(), rep["dst"].to_list()), colour)
        own = subgraphs.filter(pl.col("variant") == variant)
        big.draw_edges(draw, x0, y0, zip(own["src"].to_list(), own["dst"].to_list()),
                       (0, 0, 0) if variant == "clean" else (200, 30, 30), width=2)
    image.save(path_example)
    return True
