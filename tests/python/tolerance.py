"""How the Python checks compare actopo's numbers with an independent computation.

What "exact" means across code paths: counts are equal (edges, vertices, H0 pairs, essential classes,
H1, rows, predictions that are not near-ties), and every float is equal up to f32 rounding.

Why a tolerance: actopo's forward pass (libtorch, one intra-op thread) and PyTorch's in Python sum
the terms of a convolution or a linear layer in an order chosen by the CPU kernel (vector width,
blocking, thread count, batch size). f32 addition is not associative, so an activation can differ in
its last bits, and with it every edge weight |w * a| and every birth and death built from it; which
CPU, threads and batch size give identical bits is not something to rely on. An activation's
rounding error scales with the terms summed into it, not with its own size: a value near zero
(terms that cancelled) can be off by 1e-2 relative while off by only ~1e-7 absolute.
Measured on 64 Fashion-MNIST test images (trained CCFF, seeded small_conv and geometry nets), f32
forward vs f64 forward: every edge weight within 6.2e-7 times the largest edge weight of its scope;
f32 at batch 1 vs batch 64: within 6.1e-7; no edge appeared or vanished. Two f32 summation orders
differ by at most about twice the f32-vs-f64 error. So:

  - one value v of a diagram (a birth, a death, a killing edge's weight) matches when
        |ours - theirs| <= REL * |v| + SCALE_REL * (largest value of the diagram),
    with REL = 1e-5 (84 ulps of f32) and SCALE_REL = 5e-6 (4x the largest difference above); a
    single value with nothing to scale by (a confidence, a perturbation size) uses its own size;
  - a diagram matches when it has the same number of points (finite and essential), its sorted
    births, sorted deaths and sorted essential births match value by value (order statistics move
    by no more than the values do, so near-ties that swap places do not fail), and its bottleneck
    distance to the other diagram is within the tolerance of its largest value (this catches
    births paired with the wrong deaths);
  - a summary statistic (total and max persistence, entropy) matches the reference's within the
    error that the value tolerance propagates into it (a bound: summed over all pairs it can reach
    ~1e-3 relative for the total), and, where actopo's own diagram is at hand, matches the
    statistic recomputed from that diagram within 1e-9 relative (same values, f64 sums in another
    order), so a wrong formula cannot hide in the loose bound;
  - a prediction matches when it is the reference's argmax, or its logit is within tolerance of the
    largest logit (a near-tie that rounding may break either way).

self_test() plants real errors (a typical birth or death changed by 1e-3 relative, a point dropped,
two deaths swapped between pairs, a summary off by 1e-2 from the reference or 1e-6 from its own
diagram, a wrong prediction) and checks that each fails; the checks run it at start.
"""

import math

import gudhi
import numpy as np

REL = 1e-5
SCALE_REL = 5e-6
STATED = (f"counts exact; floats equal to f32 rounding: within {REL:g} of the value + {SCALE_REL:g} "
          f"of the largest value of its diagram")


def value_tol(v, scale):
    """Allowed deviation of a value v whose diagram's (or graph's) largest value is scale."""
    return REL * abs(v) + SCALE_REL * abs(scale)


def close(a, b, tol=None, scale=None):
    """a and b match within tol, or within the value tolerance (scale: a and b themselves)."""
    if tol is None:
        big = max(abs(a), abs(b))
        tol = value_tol(big, big if scale is None else scale)
    return abs(a - b) <= tol


def sorted_values_match(ours, theirs, scale):
    """Same length and equal value by value after sorting (robust to reordered near-ties)."""
    return len(ours) == len(theirs) and all(
        close(a, b, scale=scale) for a, b in zip(sorted(ours), sorted(theirs)))


def diagram_scale(*diagrams):
    """The largest |birth| or |death| over H0 diagrams of (birth, death or None) points."""
    return max((abs(v) for dgm in diagrams for p in dgm for v in p if v is not None), default=0.0)


def diagram_problems(ours, theirs):
    """What differs between two H0 diagrams, each a list of (birth, death) with death None for an
    essential class; an empty list when they match."""
    scale = diagram_scale(ours, theirs)
    o_fin = [(float(b), float(d)) for b, d in ours if d is not None]
    t_fin = [(float(b), float(d)) for b, d in theirs if d is not None]
    o_ess = [float(b) for b, d in ours if d is None]
    t_ess = [float(b) for b, d in theirs if d is None]
    problems = []
    if len(o_fin) != len(t_fin):
        problems.append(f"{len(o_fin)} finite pairs vs {len(t_fin)}")
    elif not (sorted_values_match([b for b, _ in o_fin], [b for b, _ in t_fin], scale)
              and sorted_values_match([d for _, d in o_fin], [d for _, d in t_fin], scale)):
        problems.append(f"births or deaths differ beyond tolerance (largest relative deviation "
                        f"{max_deviation(o_fin, t_fin):.3g})")
    elif o_fin:
        # GUDHI's bottleneck wants birth <= death: negate the superlevel values
        distance = gudhi.bottleneck_distance([(-b, -d) for b, d in o_fin], [(-b, -d) for b, d in t_fin])
        if distance > value_tol(scale, scale):
            problems.append(f"births paired with other deaths: bottleneck distance {distance:.3g} "
                            f"> {value_tol(scale, scale):.3g}")
    if len(o_ess) != len(t_ess):
        problems.append(f"{len(o_ess)} essential classes vs {len(t_ess)}")
    elif not sorted_values_match(o_ess, t_ess, scale):
        problems.append("essential births differ beyond tolerance")
    return problems


def max_deviation(ours, theirs):
    """Largest relative deviation between sorted births and sorted deaths of two pair lists (for
    messages and the printed summaries)."""
    worst = 0.0
    for k in (0, 1):
        for a, b in zip(sorted(float(p[k]) for p in ours), sorted(float(p[k]) for p in theirs)):
            worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-30))
    return worst


def summary_tolerances(finite, scale):
    """(total, max, entropy) tolerances for the summaries of the finite pairs `finite`, propagated
    from the value tolerance: a lifetime b - d may move by tol(b) + tol(d); the entropy, to first
    order, by sum_i dl_i * |log p_i + H| / T (doubled for the second order); plus a few f64 ulps."""
    slack = [value_tol(b, scale) + value_tol(d, scale) for b, d in finite]
    life = [float(b) - float(d) for b, d in finite]
    total = sum(life)
    tol_total = sum(slack) + 1e-12 * max(1.0, abs(total))
    tol_max = max(slack, default=0.0) + 1e-12
    tol_entropy = 1e-12
    if total > 0:
        h = -sum((l / total) * math.log(l / total) for l in life if l > 0)
        tol_entropy += 2 * sum(s * abs(math.log(max(l, 1e-300) / total) + h) / total
                               for s, l in zip(slack, life))
    return tol_total, tol_max, tol_entropy


SUMMARY_KEYS = ("h0_total_persistence", "h0_max_persistence", "h0_entropy")


def summary_problems(row, reference, tols, source):
    """Compares a summary row's (total, max, entropy) with `reference`, each within its tolerance."""
    return [f"{key} {row[key]} vs {source} {want} (tolerance {tol:.3g})"
            for key, want, tol in zip(SUMMARY_KEYS, reference, tols) if not close(row[key], want, tol)]


def reference_summary_problems(row, finite, reference, scale):
    """The row against an independent computation's summary `reference` of its pairs `finite`."""
    return summary_problems(row, reference, summary_tolerances(finite, scale), "reference")


def own_summary_problems(row, own_reference):
    """The row against the summary recomputed from actopo's own diagram: the same f32 values, so
    only the f64 summation order differs (1e-9 relative)."""
    return summary_problems(row, own_reference, [1e-9 * max(1.0, abs(v)) for v in own_reference],
                            "its own diagram's")


def argmax_agrees(pred, logits):
    """actopo's prediction agrees with the reference logits: it is their argmax, or its logit is
    within the tolerance of the largest (a near-tie the summation order may break either way)."""
    logits = [float(v) for v in logits]
    top = max(logits)
    return pred == int(np.argmax(logits)) or close(logits[pred], top, scale=max(abs(v) for v in logits))


def _entropy(life):
    total = sum(life)
    return -sum((l / total) * math.log(l / total) for l in life if l > 0)


def self_test():
    """The tolerant comparison must still fail on real errors; raises AssertionError if not."""
    rng = np.random.default_rng(0)
    deaths = rng.uniform(0.01, 1.0, 200)
    births = deaths + rng.uniform(0.001, 1.0, 200)
    diagram = [(float(b), float(d)) for b, d in zip(births, deaths)] + [(float(births.max()) + 1, None)]
    noisy = [(b * (1 + 3e-7), None if d is None else d * (1 - 3e-7)) for b, d in diagram]
    assert not diagram_problems(noisy, diagram), "f32-level noise must pass"
    typical = int(np.argsort(births)[len(births) // 2])
    for k, what in ((0, "birth"), (1, "death")):
        bumped = list(diagram)
        point = list(diagram[typical])
        point[k] *= 1 + 1e-3
        bumped[typical] = tuple(point)
        assert diagram_problems(bumped, diagram), f"a typical {what} changed by 1e-3 relative must fail"
    assert diagram_problems(diagram[1:], diagram), "a dropped pair must fail"
    assert diagram_problems(diagram[:-1], diagram), "a dropped essential class must fail"
    # two pairs far apart in birth and in death whose deaths can be swapped (birth > death stays)
    i, j = next((i, j) for i in range(len(births)) for j in range(len(births))
                if births[i] - births[j] > 0.1 and deaths[i] - deaths[j] > 0.1 and births[j] > deaths[i])
    swapped = list(diagram)
    swapped[i], swapped[j] = (diagram[i][0], diagram[j][1]), (diagram[j][0], diagram[i][1])
    assert diagram_problems(swapped, diagram), "births paired with the wrong deaths must fail"
    finite = diagram[:-1]
    life = [b - d for b, d in finite]
    reference = (sum(life), max(life), _entropy(life))
    row = dict(zip(SUMMARY_KEYS, reference))
    scale = diagram_scale(diagram)
    assert not reference_summary_problems({k: v * (1 + 1e-7) for k, v in row.items()}, finite, reference, scale)
    for key in SUMMARY_KEYS:
        assert reference_summary_problems({**row, key: row[key] * (1 + 1e-2)}, finite, reference, scale), \
            f"{key} off by 1e-2 from the reference must fail"
        assert own_summary_problems({**row, key: row[key] * (1 + 1e-6)}, reference), \
            f"{key} off by 1e-6 from its own diagram must fail"
    assert argmax_agrees(2, [0.0, 1.0, 3.0]) and not argmax_agrees(1, [0.0, 1.0, 3.0]), "a wrong prediction must fail"
    assert argmax_agrees(1, [0.0, 3.0, 3.0 + 1e-7]), "a near-tie may go either way"
