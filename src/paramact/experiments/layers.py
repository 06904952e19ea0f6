"""Layer ranges as fractions of depth, so that the paper's ranges carry over to any model.

The paper's models have 32 layers (40 for Llama-2-13B). Its ranges, 0-based and end-exclusive:

- Finding 2 / Fig. 6 "deep": [L/2, L-2)            -> [16, 30) for 32 layers
- Validation 3 (STS):        [20, L-2)             -> [20, 30) for 32 layers
- the STS code also printed  [12|16|20, L-2 or L)

A range here is (start, stop) as fractions of the depth L; resolve() turns it into 0-based,
end-exclusive layer indices with round-half-up (x -> floor(x·L + 0.5)), so every paper range is
reproduced exactly at L = 32 (20/32 = 0.625, 30/32 = 0.9375). On SmolLM2 (30 layers) "deep" is
[15, 28) and "sts" [19, 28). A range never comes out empty: stop >= start + 1, inside [0, L].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError

INDEX_NOTE = "layer indices are 0-based; ranges are [start, stop), end-exclusive"


@dataclass(frozen=True)
class LayerRange:
    name: str
    start: float  # fraction of depth
    stop: float  # fraction of depth
    paper: str = ""  # the paper's range at 32 layers, 0-based
    absolute: bool = False  # start/stop are 0-based layer indices, not fractions

    def resolve(self, n_layers: int) -> tuple[int, int]:
        if n_layers < 1:
            raise UserError(f"a model needs at least one layer, got {n_layers}")
        if self.absolute:
            start, stop = int(self.start), int(self.stop)
            if stop > n_layers:
                raise UserError(
                    f"layer range [{start}, {stop}) is outside the model: it has {n_layers} layers "
                    f"(0-based indices 0-{n_layers - 1})"
                )
            return start, stop
        start = min(max(math.floor(self.start * n_layers + 0.5), 0), n_layers - 1)
        stop = min(max(math.floor(self.stop * n_layers + 0.5), start + 1), n_layers)
        return start, stop

    def indices(self, n_layers: int) -> list[int]:
        a, b = self.resolve(n_layers)
        return list(range(a, b))

    def describe(self, n_layers: int) -> dict:
        """Everything a table or a plot needs to say which layers these are."""
        a, b = self.resolve(n_layers)
        return {
            "name": self.name,
            "fraction": [self.start, self.stop],
            "start": a,
            "stop": b,
            "index_base": 0,
            "label": f"[{a}, {b}) 0-based = layers {a + 1}-{b} 1-based",
            "paper_at_32_layers": self.paper,
        }


def _r(name: str, start32: int, stop32: int, paper: str) -> LayerRange:
    return LayerRange(name, start32 / 32, stop32 / 32, paper)


SHALLOW = _r("shallow", 0, 16, "[0, L/2) = [0, 16)")
DEEP = _r("deep", 16, 30, "[L/2, L-2) = [16, 30) (Fig. 6, llm_test_grad.py)")
STS = _r("sts", 20, 30, "[20, L-2) = [20, 30) (Validation 3, Table 3)")
# every range llama_sts.py printed, named by their 32-layer bounds
STS_CODE = tuple(
    _r(f"{a}-{tag}", a, stop, f"[{a}, {tag}) = [{a}, {stop}) (llama_sts.py)")
    for a in (12, 16, 20)
    for tag, stop in (("L-2", 30), ("L", 32))
)

RANGES: dict[str, LayerRange] = {r.name: r for r in (SHALLOW, DEEP, STS, *STS_CODE)}


def parse_range(spec: str) -> LayerRange:
    """A named range (shallow, deep, sts, 12-L-2, ...), 'a:b' fractions of depth (0.5:0.9375), or
    'a:b' whole numbers: 0-based layer indices [a, b), checked against the model when resolved."""
    if spec in RANGES:
        return RANGES[spec]
    a, sep, b = spec.partition(":")
    if sep and a.strip().isdigit() and b.strip().isdigit() and (int(a) > 1 or int(b) > 1):
        if int(a) >= int(b):
            raise UserError(f"layer range {spec!r}: indices must satisfy start < stop")
        return LayerRange(spec, int(a), int(b), absolute=True)
    try:
        start, stop = float(a), float(b)
    except ValueError:
        raise UserError(
            f"layer range {spec!r}: give one of {', '.join(RANGES)}, fractions 'start:stop' "
            f"such as 0.5:0.9375, or 0-based layer indices such as 19:28"
        ) from None
    if not sep or not (0 <= start < stop <= 1):
        raise UserError(f"layer range {spec!r}: fractions must satisfy 0 <= start < stop <= 1")
    return LayerRange(spec, start, stop)
