"""Options shared by the pruning commands (one definition each) and their typed configs."""

from __future__ import annotations

from ..errors import UserError
from ..options import add_config_option, add_device_map_option, add_model_options, non_negative_int


def opt_int(s: str) -> int | None:
    """An integer >= 0; 0 means 'no limit' (None)."""
    return non_negative_int(s) or None


def names(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def model_args(p) -> None:
    add_model_options(p)
    add_device_map_option(p)
    add_config_option(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def calibration_args(p, nsamples: int = 32) -> None:
    p.add_argument("--calibration", default="c4", help="calibration dataset: c4, wikitext2, mmlu, siqa, ... (default c4)")
    p.add_argument("--nsamples", type=int, default=nsamples, help=f"calibration sequences (default {nsamples}; the paper: 128)")
    p.add_argument("--seqlen", type=int, default=256, help="tokens per calibration sequence (default 256; the paper: the context)")
    p.add_argument("--calibration-seed", type=int, default=0)
    p.add_argument("--calibration-split", default=None, help="default: the dataset's calibration split")
    p.add_argument("--batch-size", type=int, default=8, help="calibration sequences per forward")


def schedule_args(p, schedule_default: str = "uniform") -> None:
    from .schedules import SCHEDULES

    p.add_argument("--schedule", default=schedule_default, choices=list(SCHEDULES), help=f"layer-wise sparsity (default {schedule_default})")
    p.add_argument("--sparsity", type=float, default=None,
                   help="target mean sparsity in [0, 1) (default 0.5; N:M: N/M; file: the file's mean)")
    p.add_argument("--alpha", type=float, default=2.0, help="activation schedule: N' = σ(z + α/i) (default 2)")
    p.add_argument("--beta", type=float, default=0.2, help="activation schedule: S_i = S + βS(1 − N'L/ΣN') (default 0.2)")
    p.add_argument("--density", default="gamma:2e-06",
                   help="activation schedule N_i: gamma:<γ> (count above γ), mass50, mass90, above_mean (default gamma:2e-06)")
    p.add_argument("--schedule-data", default="c4", help="activation schedule: data measured by the engine (default c4)")
    p.add_argument("--schedule-samples", type=int, default=64, help="activation schedule: samples (default 64)")
    p.add_argument("--schedule-seqlen", type=int, default=256, help="activation schedule: tokens per corpus window (default 256)")
    p.add_argument("--schedule-seed", type=int, default=1)
    p.add_argument("--owl-lambda", type=float, default=0.08, help="OWL: sparsities span target ± λ (default 0.08)")
    p.add_argument("--owl-m", type=float, default=5.0, help="OWL: outlier = score > M × layer mean (default 5)")
    p.add_argument("--paper-model", default=None, help="paper schedule: llama_7b, llama2_7b, llama2_13b, llama3_8b")
    p.add_argument("--schedule-file", default=None, help="file schedule: JSON list or schedule.json")


def eval_args(p, items: int = 256, windows: int = 32) -> None:
    p.add_argument("--ppl-seqlen", type=int, default=256, help="perplexity window (default 256; Wanda: the context)")
    p.add_argument("--ppl-windows", type=opt_int, default=windows, help=f"perplexity windows per corpus (default {windows}; 0 = all)")
    p.add_argument("--items", type=opt_int, default=items, help=f"items per accuracy task (default {items}, as the paper; 0 = all)")
    p.add_argument("--humaneval-items", type=opt_int, default=None, help="HumanEval problems (default all 164)")
    p.add_argument("--max-length", type=opt_int, default=2048, help="prompts keep their last N tokens (default 2048; 0 = context)")
    p.add_argument("--eval-batch-size", type=int, default=8)
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--mmlu-shots", type=int, default=5)



def load_for(args):
    import torch

    from ..models import load_model

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    from .. import distributed

    device = args.device or distributed.device_for_rank()
    return load_model(args.model, dtype=args.dtype, device=device, trust_remote_code=args.trust_remote_code,
                      device_map=getattr(args, "device_map", None))


def schedule_config(args):
    from .config import ScheduleConfig

    return ScheduleConfig(name=args.schedule, alpha=args.alpha, beta=args.beta, density=args.density,
                          data=args.schedule_data, samples=args.schedule_samples, seqlen=args.schedule_seqlen,
                          seed=args.schedule_seed, owl_lambda=args.owl_lambda, owl_m=args.owl_m,
                          paper_model=args.paper_model, file=args.schedule_file)


def calibration_config(args):
    from .config import CalibrationConfig

    return CalibrationConfig(dataset=args.calibration, nsamples=args.nsamples, seqlen=args.seqlen,
                             seed=args.calibration_seed, split=args.calibration_split, batch_size=args.batch_size,
                             data_dir=args.data_dir)


def eval_config(args):
    from ..evaluation import EvalConfig

    return EvalConfig(ppl_seqlen=args.ppl_seqlen, ppl_windows=args.ppl_windows, items=args.items,
                      humaneval_items=args.humaneval_items, seed=args.eval_seed, batch_size=args.eval_batch_size,
                      max_length=args.max_length, mmlu_shots=args.mmlu_shots, data_dir=args.data_dir)


def progress(args) -> bool:
    return not getattr(args, "quiet", False)


def single_process(command: str) -> None:
    """Commands that hold one model and restore it between runs are not split over torchrun processes."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(f"{command} runs in one process; under torchrun use `paramact prune` or `paramact schedule`")
