"""Tiny random causal LMs of several families and a byte-level tokenizer, for tests."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

VOCAB = 97

_COMMON = {"vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}

FAMILIES = {
    "llama": {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128,
    },
    "qwen2": {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
    },  # GQA
    "mistral": {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "sliding_window": None,
    },
    "gemma3_text": {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "max_position_embeddings": 128,
        "sliding_window": 4,
        "query_pre_attn_scalar": 8,
    },
    "gpt2": {"n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 128},
    "opt": {
        "hidden_size": 32,
        "ffn_dim": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
        "word_embed_proj_dim": 32,
    },
    "gpt_neox": {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
    },
    "phi": {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
    },
}

_MOE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "num_experts_per_tok": 2,
}
# mixture-of-experts families: fused [E, out, in] experts (gpt-oss: [E, in, out] with biases), a
# router module holding a plain weight Parameter; qwen2_moe and deepseek_v3 add shared experts,
# deepseek_v3 keeps its first block dense and routes through a float32 cast of the router weight
MOE_FAMILIES = {
    "mixtral": dict(_MOE, intermediate_size=24, num_local_experts=4),
    "qwen3_moe": dict(_MOE, intermediate_size=48, moe_intermediate_size=24, num_experts=4, head_dim=8),
    "olmoe": dict(_MOE, intermediate_size=24, num_experts=4),
    "gpt_oss": dict(
        _MOE,
        num_hidden_layers=3,
        intermediate_size=24,
        num_local_experts=4,
        head_dim=8,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    ),
    "qwen2_moe": dict(
        _MOE, intermediate_size=48, moe_intermediate_size=24, shared_expert_intermediate_size=40, num_experts=4
    ),
    "deepseek_v3": dict(
        _MOE,
        num_key_value_heads=4,
        intermediate_size=48,
        moe_intermediate_size=24,
        n_routed_experts=4,
        n_shared_experts=1,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=4,
        qk_nope_head_dim=4,
        v_head_dim=8,
    ),
}


def _build(cfg, seed: int):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    # random init of HF is tiny (std 0.02); widen it so activations are not all ~0
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return model.eval()


def _family(family: str) -> dict:
    return FAMILIES[family] if family in FAMILIES else MOE_FAMILIES[family]


def tiny_model(family: str, seed: int = 0):
    cfg = AutoConfig.for_model(family, **_COMMON, **_family(family))
    if family in FAMILIES:
        cfg._attn_implementation = "eager" if family == "gemma3_text" else "sdpa"
    return _build(cfg, seed)


class ByteTokenizer:
    """Deterministic toy tokenizer: one token per byte, BOS prepended."""

    bos_token_id = 1
    eos_token_id = 2
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        ids = [3 + (b % (VOCAB - 3)) for b in text.encode()]
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}


TEXTS = [
    "The quick brown fox jumps.",
    "def f(x): return x * 2",
    "Paris is the capital of France and a large city",
    "1 + 1 = 2",
    "Which parameters does this input activate?",
    "short",
    "A much longer sentence that will need padding for the others in a batch, surely.",
    "import torch",
]


def encode_ids(tok, text: str, continuation: str | None = None) -> tuple[list[int], int]:
    ids = tok(text)["input_ids"]
    n_prompt = len(ids)
    if continuation is not None:
        ids = ids + tok(continuation, add_special_tokens=False)["input_ids"]
    return ids, n_prompt


ANSWERS = [" yes", " no", " Paris", " 2", " many", " x", " indeed it is", " import"]


def save_tiny(path, family: str = "llama", seed: int = 0):
    """A loadable model directory: tiny random weights and a byte-level HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    cfg_over = dict(_family(family), vocab_size=len(vocab))
    cfg = AutoConfig.for_model(family, bos_token_id=1, eos_token_id=2, pad_token_id=0, **cfg_over)
    model = _build(cfg, seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
