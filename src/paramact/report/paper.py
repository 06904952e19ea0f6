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
    "boolq|mmlu": (
        0.5413,
        0.4746,
        0.6916,
        0.3700,
        0.4282,
        0.3578,
        0.3500,
        0.3295,
        0.3516,
        0.3435,
        0.3240,
        0.3133,
        0.2776,
        0.2680,
        0.2373,
        0.2664,
        0.2522,
        0.3099,
        0.2455,
        0.2009,
        0.2144,
        0.1829,
        0.2535,
        0.1645,
        0.1661,
        0.1567,
        0.2195,
        0.2529,
        0.4960,
        0.3206,
        0.4038,
        0.2882,
    ),
    "boolq|humaneval": (
        0.5610,
        0.4490,
        0.5693,
        0.3240,
        0.3301,
        0.2700,
        0.3080,
        0.3036,
        0.3179,
        0.3103,
        0.2521,
        0.2988,
        0.2815,
        0.2653,
        0.2029,
        0.2106,
        0.1713,
        0.1918,
        0.1719,
        0.1679,
        0.2324,
        0.1408,
        0.1846,
        0.3007,
        0.1139,
        0.2208,
        0.2057,
        0.1380,
        0.2754,
        0.3541,
        0.2639,
        0.3745,
    ),
    "hellaswag|c4": (
        0.3854,
        0.3597,
        0.5737,
        0.3069,
        0.3481,
        0.3234,
        0.3279,
        0.3201,
        0.3541,
        0.3389,
        0.3080,
        0.2877,
        0.2624,
        0.2535,
        0.2061,
        0.2015,
        0.1904,
        0.1678,
        0.1518,
        0.1432,
        0.1450,
        0.1219,
        0.1209,
        0.1203,
        0.1113,
        0.1029,
        0.1156,
        0.1363,
        0.2207,
        0.2315,
        0.2464,
        0.2515,
    ),
    "humaneval|c4": (
        0.3328,
        0.2889,
        0.5404,
        0.2282,
        0.2871,
        0.2342,
        0.2454,
        0.2716,
        0.2813,
        0.2603,
        0.2448,
        0.2297,
        0.2109,
        0.1579,
        0.1432,
        0.1316,
        0.1238,
        0.1299,
        0.1073,
        0.1035,
        0.1066,
        0.0906,
        0.0808,
        0.0809,
        0.0769,
        0.0744,
        0.0770,
        0.1054,
        0.2124,
        0.2203,
        0.1777,
        0.2468,
    ),
}
FINDING2_NOTE = "llm_test_grad.py end comment, LLaMA-7B (32 layers), per-layer mean over 64 pairs"

# Finding 1 (§2): C4 activated counts (mean |A| > 2e-6) per layer of a 32-layer model, of 202,375,168
# weights per layer (distribution_draw.py end comment).
C4_COUNTS = (
    1061292,
    6319729,
    14767367,
    19149928,
    21451890,
    22124198,
    21653518,
    22533946,
    22715992,
    23012050,
    23320873,
    21679099,
    21088533,
    21843715,
    21866557,
    22593499,
    23646562,
    22568772,
    21387521,
    20828237,
    21268883,
    18788506,
    17122682,
    15369127,
    14025833,
    12663446,
    12024558,
    10586793,
    10162286,
    8258830,
    8591076,
    8899162,
)
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
