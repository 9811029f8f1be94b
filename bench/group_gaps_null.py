"""How often ``compare --group-by`` finds a gap between groups that do not differ: faces given to
groups at random (and, apart, posers of several faces each, given to groups by poser: with and
without ``--cluster-by``), two models right on each face with its emotion's accuracy (the second agreeing
with the first on 80 % of faces, as two models on the same images do), and the share of gaps (and
of the two models' differences of gaps) whose unadjusted p is below 0.05. A test that holds its
level reads about 0.05; a higher share would call random groups unfair.

Run: python bench/group_gaps_null.py [--trials 400] [--out bench/results/group_gaps_null.json]
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pandas as pd
from _results import report

from fer_core.emotions import SIX_EMOTIONS
from fer_core.evaluation.groups import group_analysis

# about cnn-fer2013's recall per emotion on FER2013 val
RECALL = dict(zip(SIX_EMOTIONS, [0.53, 0.27, 0.85, 0.62, 0.66, 0.82]))
LAYOUTS = [(4, (0.5, 0.5)), (10, (0.5, 0.3, 0.2)), (20, (0.5, 0.3, 0.2)), (50, (0.5, 0.5))]


def false_gaps(per_emotion: int, shares: tuple[float, ...], trials: int, rng: np.random.Generator) -> dict:
    gaps, differences = [], []
    names = [chr(ord("A") + i) for i in range(len(shares))]
    for _ in range(trials):
        labels = np.repeat(SIX_EMOTIONS, per_emotion)
        first = rng.uniform(size=len(labels)) < np.array([RECALL[e] for e in labels])
        second = np.where(rng.uniform(size=len(labels)) < 0.2, ~first, first)
        correct = {"first": first, "second": second}
        comparison = SimpleNamespace(names=list(correct), n=len(labels), table=pd.DataFrame({"label": labels}),
                                     classes=tuple(SIX_EMOTIONS), correct=correct.__getitem__)
        groups = rng.choice(names, size=len(labels), p=shares)
        if len(set(groups)) < 2:
            continue
        analysis = group_analysis(comparison, list(groups), "random")
        gaps += [g.p_value < 0.05 for g in analysis.gaps]
        differences += [d.p_value < 0.05 for d in analysis.differences]
    return {"images_per_emotion": per_emotion, "group_shares": list(shares), "trials": trials,
            "gaps": len(gaps), "false_gap_share": round(float(np.mean(gaps)), 4),
            "differences": len(differences), "false_difference_share": round(float(np.mean(differences)), 4)}


def false_gaps_posers(spread: float, trials: int, rng: np.random.Generator, posers: int = 40,
                      per_emotion: int = 2) -> dict:
    """The same with each poser giving ``per_emotion`` images of each emotion and a difficulty of
    their own (``spread``: its SD in logits), groups drawn by poser: the share of gaps read p < 0.05
    with the images taken as independent and clustered by poser (``--cluster-by``)."""
    logits = np.log(np.array(list(RECALL.values())) / (1 - np.array(list(RECALL.values()))))
    alone, clustered, differences = [], [], []
    for _ in range(trials):
        who = np.repeat(np.arange(posers), len(SIX_EMOTIONS) * per_emotion)
        emotion = np.tile(np.repeat(np.arange(len(SIX_EMOTIONS)), per_emotion), posers)
        p = 1 / (1 + np.exp(-(logits[emotion] + rng.normal(0, spread, posers)[who])))
        first = rng.uniform(size=len(p)) < p
        second = np.where(rng.uniform(size=len(p)) < 0.2, ~first, first)
        groups = np.where(rng.uniform(size=posers) < 0.5, "F", "M")[who]
        if len(set(groups)) < 2:
            continue
        correct = {"first": first, "second": second}
        comparison = SimpleNamespace(names=list(correct), n=len(p), correct=correct.__getitem__,
                                     table=pd.DataFrame({"label": np.array(SIX_EMOTIONS)[emotion]}),
                                     classes=tuple(SIX_EMOTIONS))
        alone += [g.p_value < 0.05 for g in group_analysis(comparison, list(groups), "sex").gaps]
        analysis = group_analysis(comparison, list(groups), "sex", [f"P{w}" for w in who], "poser")
        clustered += [g.p_value < 0.05 for g in analysis.gaps]
        differences += [d.p_value < 0.05 for d in analysis.differences]
    return {"posers": posers, "images_per_poser_and_emotion": per_emotion, "poser_spread_logits": spread,
            "trials": trials, "false_gap_share_independent": round(float(np.mean(alone)), 4),
            "false_gap_share_clustered": round(float(np.mean(clustered)), 4),
            "false_difference_share_clustered": round(float(np.mean(differences)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [false_gaps(n, shares, args.trials, rng) for n, shares in LAYOUTS]
    posers = [false_gaps_posers(spread, args.trials // 2, rng) for spread in (0.0, 1.0, 1.5)]
    for row in rows + posers:
        print(row)
    report({"rows": rows, "posers": posers, "command": f"python bench/group_gaps_null.py --trials {args.trials}"
                                     + (f" --out {args.out}" if args.out else "")}, args.out)


if __name__ == "__main__":
    main()
