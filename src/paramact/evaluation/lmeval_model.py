"""lm-eval's HFLM whose log-likelihood requests are scored by paramact's forward.

lm-eval still builds every request (its task config, template, few-shot sampler, tokenisation
and left truncation) and aggregates the metrics; only `_loglikelihood_tokens`, the model call, is
replaced. `scoring.target_scores` computes a prompt prefix shared by several requests once (MMLU's
five demonstrations within a subject, an item's context before each choice), reads logits only at
the continuation positions and takes the log-softmax in float32. HFLM runs every request whole
(its one saving: requests whose continuations are one token share a forward). The log-likelihoods
agree with HFLM's up to float rounding (the test suite checks them on SmolLM2).

Imported only when lm-eval is installed (the `lmeval` extra).
"""

from __future__ import annotations

from lm_eval.models.huggingface import HFLM
from tqdm.auto import tqdm

from .scoring import Request, target_scores


class SharedPrefixLM(HFLM):
    """HFLM over a model in memory; its requests scored with shared prefixes computed once."""

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        reqs = []
        for _, context, continuation in requests:
            if not context or not continuation or len(continuation) > self.max_length:
                raise ValueError("lm-eval request with an empty context or continuation, or one over max_length")
            inp = (context + continuation)[-(self.max_length + 1) :][:-1]  # HFLM's left truncation
            start = len(inp) - len(continuation)
            reqs.append(Request(tuple(inp), tuple((start + k, t) for k, t in enumerate(continuation))))
        size = override_bs or self.batch_size
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with tqdm(total=len(reqs), disable=disable_tqdm or self.rank != 0, desc="loglikelihood requests") as bar:
            scores = target_scores(self.model, reqs, int(size) if str(size).isdigit() else 8, pad, bar)
        out = []
        for (key, _, _), s in zip(requests, scores, strict=True):
            answer = (float(s.logprobs.double().sum()), bool(s.greedy.all()))
            self.cache_hook.add_partial("loglikelihood", key, answer)
            out.append(answer)
        return out
