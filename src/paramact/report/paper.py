"""The paper's numbers that a paramact run can be set beside (Wang et al., "Exploring Activation
Patterns of Parameters in Language Models", AAAI 2025).

Every value is quoted from the paper with its section; layer lists are 0-based, as in the code.
"""

from __future__ import annotations

# Fig. 6 (§3.3): mean deep-layer LLMDcos, Llama-2-7B [inferred], layers [16, 30) [inferred].
FIG6_DATASETS = ("boolq", "c4", "gsm8k", "hellaswag", "humaneval", "mmlu", "piqa", "siqa", "wikitext2")
FIG6_MATRIX = (
    (0.44, 0.16, 0.23, 0.29, 0.16, 0.26, 0.29, 0.29, 0.16),
    (0.16, 0.14, 0.16, 0.17, 0.12, 0.15, 0.15, 0.16, 0.14),
    (0.23, 0.16, 0.36, 0.27, 0.19, 0.23, 0.26, 0.24, 0.17),
    (0.29, 0.17, 0.27, 0.80, 0.21, 0.63, 0.32, 0.57, 0.17),
    (0.16, 0.12, 0.19, 0.21, 0.72, 0.18, 0.16, 0.17, 0.12),
    (0.26, 0.15, 0.23, 0.63, 0.18, 0.70, 0.28, 0.57, 0.16),
    (0.29, 0.15, 0.26, 0.32, 0.16, 0.28, 0.51, 0.31, 0.15),
    (0.29, 0.16, 0.24, 0.57, 0.17, 0.57, 0.31, 0.77, 0.16),
    (0.16, 0.14, 0.17, 0.17, 0.12, 0.16, 0.15, 0.16, 0.16),
)
FIG6_NOTE = "Fig. 6, Llama-2-7B [inferred], mean LLMDcos over layers [16, 30) [inferred]"


def base(name: str) -> str:
    """A dataset spec without its split: 'wikitext2:test' -> 'wikitext2'."""
    return name.partition(":")[0]


def fig6(a: str, b: str) -> float | None:
    """The paper's Fig. 6 value for a dataset pair, or None when either is not in the figure."""
    a, b = base(a), base(b)
    if a in FIG6_DATASETS and b in FIG6_DATASETS:
        return FIG6_MATRIX[FIG6_DATASETS.index(a)][FIG6_DATASETS.index(b)]
    return None


def fig6_agreement(names: list[str], matrix: list[list[float]]) -> dict | None:
    """Spearman ρ between a run's dataset matrix and Fig. 6 over the cells (upper triangle with the
    diagonal, and off the diagonal alone) of the datasets both share; None below 3 shared datasets."""
    from scipy.stats import spearmanr

    shared = [i for i, n in enumerate(names) if base(n) in FIG6_DATASETS]
    if len(shared) < 3:
        return None
    cells = [(i, j) for k, i in enumerate(shared) for j in shared[k:]]
    out = {"datasets": [names[i] for i in shared]}
    for key, sel in (("all", cells), ("off_diagonal", [(i, j) for i, j in cells if i != j])):
        ours = [matrix[i][j] for i, j in sel]
        theirs = [fig6(names[i], names[j]) for i, j in sel]
        r = spearmanr(ours, theirs)
        out[key] = {"rho": float(r.statistic), "p": float(r.pvalue), "n_cells": len(sel)}
    return out


# Table 3 (§3.3): Spearman ρ between LLMDcos summed over [20, L-2) and gold scores, 256 pairs.
TABLE3 = {
    "stsb": {"Llama-7B": 0.30, "Llama2-7B": 0.66, "Llama2-13B": 0.43},
    "sick": {"Llama-7B": 0.52, "Llama2-7B": 0.51, "Llama2-13B": 0.52},
}
TABLE3_NOTE = "Table 3: Spearman ρ, LLMDcos summed over layers [20, L-2), 256 pairs, p ≤ 0.001"

# Finding 2 (§2): per-layer mean LLMDcos over 64 pairs, LLaMA-7B, an earlier code version
# (same-dataset values probably paired one item with itself under another context).
FINDING2_LAYERS = {
    "boolq|mmlu": (.5413, .4746, .6916, .3700, .4282, .3578, .3500, .3295, .3516, .3435, .3240, .3133, .2776,
                   .2680, .2373, .2664, .2522, .3099, .2455, .2009, .2144, .1829, .2535, .1645, .1661, .1567,
                   .2195, .2529, .4960, .3206, .4038, .2882),
    "boolq|humaneval": (.5610, .4490, .5693, .3240, .3301, .2700, .3080, .3036, .3179, .3103, .2521, .2988,
                        .2815, .2653, .2029, .2106, .1713, .1918, .1719, .1679, .2324, .1408, .1846, .3007,
                        .1139, .2208, .2057, .1380, .2754, .3541, .2639, .3745),
    "hellaswag|c4": (.3854, .3597, .5737, .3069, .3481, .3234, .3279, .3201, .3541, .3389, .3080, .2877, .2624,
                     .2535, .2061, .2015, .1904, .1678, .1518, .1432, .1450, .1219, .1209, .1203, .1113, .1029,
                     .1156, .1363, .2207, .2315, .2464, .2515),
    "humaneval|c4": (.3328, .2889, .5404, .2282, .2871, .2342, .2454, .2716, .2813, .2603, .2448, .2297, .2109,
                     .1579, .1432, .1316, .1238, .1299, .1073, .1035, .1066, .0906, .0808, .0809, .0769, .0744,
                     .0770, .1054, .2124, .2203, .1777, .2468),
}
FINDING2_NOTE = "llm_test_grad.py end comment, LLaMA-7B (32 layers), per-layer mean over 64 pairs"

# Finding 1 (§2): C4 activated counts (mean |A| > 2e-6) per layer of a 32-layer model, of 202,375,168
# weights per layer (distribution_draw.py end comment).
C4_COUNTS = (1061292, 6319729, 14767367, 19149928, 21451890, 22124198, 21653518, 22533946, 22715992, 23012050,
             23320873, 21679099, 21088533, 21843715, 21866557, 22593499, 23646562, 22568772, 21387521, 20828237,
             21268883, 18788506, 17122682, 15369127, 14025833, 12663446, 12024558, 10586793, 10162286, 8258830,
             8591076, 8899162)
C4_LAYER_PARAMS = 202_375_168
C4_NOTE = "distribution_draw.py: C4, 64 samples of 256 tokens, γ = 2e-6, a 32-layer LLaMA (unlabeled)"


def c4_share_above() -> list[float]:
    """The paper code's C4 counts as shares of a layer's weights (0-based layers)."""
    return [c / C4_LAYER_PARAMS for c in C4_COUNTS]


def pair_key(a: str, b: str, table: dict) -> str | None:
    a, b = base(a), base(b)
    for k in (f"{a}|{b}", f"{b}|{a}"):
        if k in table:
            return k
    return None
