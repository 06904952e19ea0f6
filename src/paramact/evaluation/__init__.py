"""Evaluation of (pruned) causal LMs, every result labelled with its protocol.

- ppl.py         Wanda's protocol: one token stream, non-overlapping windows of an explicit seqlen
                 (WikiText-2 test, C4 held-out documents, pydoc)
- choice.py      the paper's last-token letter scoring; lm-eval-style log-likelihood acc/acc_norm;
                 HumanEval canonical-solution NLL
- scoring.py     forwards that return log-probabilities only at the positions needed
- tasks.py       the task registry; prepare once, evaluate many models
"""

from .choice import code_nll, letter_accuracy, loglik_accuracy
from .ppl import perplexity, token_stream
from .tasks import PAPER_TASKS, TASKS, EvalConfig, evaluate, parse_tasks, prepare

__all__ = [
    "PAPER_TASKS",
    "TASKS",
    "EvalConfig",
    "code_nll",
    "evaluate",
    "letter_accuracy",
    "loglik_accuracy",
    "parse_tasks",
    "perplexity",
    "prepare",
    "token_stream",
]
