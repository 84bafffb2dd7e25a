"""Named starting configs, a tiny debug one per family × objective (torchtitan's habit).

``get_preset(name)`` returns a fresh :class:`RunConfig`; every field can then be overridden
(``apply_overrides``, CLI flags, the dashboard form).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .config import DataConfig, RunConfig, TrainConfig, require
from .tokenizers import BPEConfig, WordConfig
from .models import BERTConfig, GPTConfig, GRUConfig, LSTMConfig, NGramConfig, Seq2SeqConfig
from .objectives import MaskedLMConfig, MLMNSPConfig, Seq2SeqTaskConfig, SpanCorruptionConfig


def _preset_gpt_nano() -> RunConfig:
    """A few seconds on a laptop CPU; what the tests and the first demo use."""
    return RunConfig(
        model=GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64),
        data=DataConfig(),
        train=TrainConfig(max_steps=200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                          eval_interval=50, log_interval=10),
        preset="gpt-nano",
    )


def _preset_gpt_cpu() -> RunConfig:
    """nanoGPT's CPU recipe for shakespeare-char: 4L/4H/128, ctx 64, batch 12 (val ~1.88 @ 2000)."""
    return RunConfig(
        model=GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False),
        data=DataConfig(),
        train=TrainConfig(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_interval=250, log_interval=10),
        preset="gpt-cpu",
    )


def _preset_fast() -> RunConfig:
    """gpt-cpu's shape and batch with the modded-nanogpt / nanochat recipe scaled down: RoPE,
    QK-norm, ReLU², an untied zero-initialised head, no biases, Muon for the hidden matrices and
    AdamW for the rest, a short warm-up and a decay to 0 over fewer steps. Reaches gpt-cpu's
    2000-step validation loss in a fraction of its time (``bench/vs_nanogpt.py``)."""
    return RunConfig(
        model=GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False, pos_encoding="rope",
                        qk_norm=True, activation="relu2", tie_weights=False, zero_init=True),
        data=DataConfig(),
        train=TrainConfig(max_steps=600, batch_size=12, optimizer="muon", lr=3e-3, min_lr=0.0, warmup_steps=20,
                          muon_lr=0.02, eval_interval=100, log_interval=10),
        preset="fast",
    )


def _preset_gpt_shakespeare_char() -> RunConfig:
    """nanoGPT's baby GPT: 6L/6H/384, ctx 256, dropout 0.2, no biases (val 1.4697 @ 5000 on an A100)."""
    return RunConfig(
        model=GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False),
        data=DataConfig(),
        train=TrainConfig(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_interval=250, log_interval=10),
        preset="gpt-shakespeare-char",
    )


def _preset_gpt_mini_bpe() -> RunConfig:
    """A small subword model: byte-level BPE with a 2048-token vocabulary, 4L/4H/128, ctx 128."""
    return RunConfig(
        model=GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=128),
        data=DataConfig(),
        tokenizer=BPEConfig(vocab_size=2048),
        train=TrainConfig(max_steps=1000, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=50,
                          eval_interval=100, log_interval=10),
        preset="gpt-mini-bpe",
    )


def _preset_lstm_nano() -> RunConfig:
    """A tiny LSTM language model (2 layers, 64 wide) on 64-token windows: seconds on a CPU."""
    return RunConfig(
        model=LSTMConfig(n_layer=2, n_embd=64),
        data=DataConfig(),
        train=TrainConfig(max_steps=200, batch_size=16, seq_len=64, lr=1e-2, min_lr=1e-3, warmup_steps=20,
                          eval_interval=50, log_interval=10),
        preset="lstm-nano",
    )


def _preset_lstm_cpu() -> RunConfig:
    """LSTM 2L/128 on 64-token windows, batch 32: learns visibly in a minute or two on a CPU (val ~1.66 @ 2000)."""
    return RunConfig(
        model=LSTMConfig(n_layer=2, n_embd=128),
        data=DataConfig(),
        train=TrainConfig(max_steps=2000, batch_size=32, seq_len=64, lr=1e-2, min_lr=1e-3, warmup_steps=100,
                          eval_interval=250, log_interval=10),
        preset="lstm-cpu",
    )


def _preset_gru_nano() -> RunConfig:
    """The same with GRU cells (fewer gates, no cell state)."""
    cfg = _preset_lstm_nano()
    return RunConfig(model=GRUConfig(n_layer=2, n_embd=64), data=cfg.data, train=cfg.train, preset="gru-nano")


def _preset_bert_nano() -> RunConfig:
    """A tiny BERT-style encoder trained with masked LM (15 % selected, 80/10/10): seconds on a CPU."""
    return RunConfig(
        model=BERTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64),
        objective=MaskedLMConfig(),
        data=DataConfig(),
        train=TrainConfig(max_steps=200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                          eval_interval=50, log_interval=10),
        preset="bert-nano",
    )


def _preset_bert_cpu() -> RunConfig:
    """BERT-style encoder 4L/4H/128, ctx 64, masked LM: learns visibly in a couple of minutes on a CPU."""
    return RunConfig(
        model=BERTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64),
        objective=MaskedLMConfig(),
        data=DataConfig(),
        train=TrainConfig(max_steps=400, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=40,
                          eval_interval=100, log_interval=10),
        preset="bert-cpu",
    )


def _preset_bert_mlm_nsp_nano() -> RunConfig:
    """BERT's pre-training, tiny: masked LM and next-sentence prediction together, seconds on a CPU."""
    cfg = _preset_bert_nano()
    return RunConfig(model=cfg.model, objective=MLMNSPConfig(), data=cfg.data, train=cfg.train, preset="bert-mlm-nsp-nano")


def _preset_bert_mlm_nsp_cpu() -> RunConfig:
    """BERT-style encoder 4L/4H/128 with masked LM + next-sentence prediction: a couple of minutes on a CPU."""
    cfg = _preset_bert_cpu()
    return RunConfig(model=cfg.model, objective=MLMNSPConfig(), data=cfg.data, train=cfg.train, preset="bert-mlm-nsp-cpu")


def _preset_ngram_nano() -> RunConfig:
    """A character trigram (Kneser-Ney) fitted by counting 50 steps of 512 tokens: about a second."""
    return RunConfig(
        model=NGramConfig(n=3),
        data=DataConfig(),
        train=TrainConfig(max_steps=50, batch_size=16, seq_len=32, eval_interval=10, log_interval=10),
        preset="ngram-nano",
    )


def _preset_ngram_cpu() -> RunConfig:
    """A character 5-gram (Kneser-Ney) counting the whole training split, 2048 tokens a step (~2100 steps,
    under a minute on a CPU; val ~2.08 bits per character on the built-in corpus)."""
    return RunConfig(
        model=NGramConfig(n=5),
        data=DataConfig(),
        train=TrainConfig(max_steps=2200, batch_size=32, seq_len=64, eval_interval=250, log_interval=10),
        preset="ngram-cpu",
    )


def _preset_t5_nano() -> RunConfig:
    """A tiny encoder-decoder (2+2 layers, 64 wide) pre-trained as T5 with span corruption
    (15 % of the tokens in spans of 3, each span a sentinel): seconds on a CPU."""
    return RunConfig(
        model=Seq2SeqConfig(n_layer=2, n_head=2, n_embd=64, block_size=64),
        objective=SpanCorruptionConfig(),
        data=DataConfig(),
        train=TrainConfig(max_steps=200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                          eval_interval=50, log_interval=10),
        preset="t5-nano",
    )


def _preset_t5_cpu() -> RunConfig:
    """Encoder-decoder 4+4 layers, 4 heads, 128 wide, span corruption: a few minutes on a CPU."""
    return RunConfig(
        model=Seq2SeqConfig(n_layer=4, n_head=4, n_embd=128, block_size=64),
        objective=SpanCorruptionConfig(),
        data=DataConfig(),
        train=TrainConfig(max_steps=1000, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=50,
                          eval_interval=100, log_interval=10),
        preset="t5-cpu",
    )


def _preset_seq2seq_reverse_words_nano() -> RunConfig:
    """Encoder-decoder 2+2 layers, 64 wide, reversing the words of lines cut to 6 words, one token
    per word (word tokenizer, 1024 words; rarer ones are [UNK]): seconds on a CPU, the loss falls.
    Trained ~1500 steps (under a minute) its last layer's cross-attention shows the anti-diagonal."""
    return RunConfig(
        model=Seq2SeqConfig(n_layer=2, n_dec_layer=2, n_head=4, n_embd=64, block_size=32),
        objective=Seq2SeqTaskConfig(task="reverse-words", max_words=6),
        data=DataConfig(),
        tokenizer=WordConfig(vocab_size=1024),
        train=TrainConfig(max_steps=300, batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=50,
                          eval_interval=100, log_interval=10),
        preset="seq2seq-reverse-words-nano",
    )


def _preset_seq2seq_reverse_words_cpu() -> RunConfig:
    """Encoder-decoder 2+2 layers, 8 heads, 128 wide, reversing the words of lines cut to 6 words
    (byte-level BPE 1024, so no word is [UNK]): 4500 steps, about 8 minutes on one CPU thread, to
    validation BLEU ~95 (greedy; bench/seq2seq_tasks.py). 8 heads learn it much faster than 4."""
    return RunConfig(
        model=Seq2SeqConfig(n_layer=2, n_dec_layer=2, n_head=8, n_embd=128, block_size=32),
        objective=Seq2SeqTaskConfig(task="reverse-words", max_words=6),
        data=DataConfig(),
        tokenizer=BPEConfig(vocab_size=1024),
        train=TrainConfig(max_steps=4500, batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=100,
                          eval_interval=500, log_interval=10),
        preset="seq2seq-reverse-words-cpu",
    )


def _preset_seq2seq_pig_latin_cpu() -> RunConfig:
    """The same encoder-decoder with 4 heads, translating lines cut to 6 words into Pig Latin
    (byte-level BPE 1024: a translated word is new text, which BPE can always spell): 4500 steps,
    about 8 minutes on one CPU thread, to validation BLEU ~76 greedy, ~79 beam 4 (8 heads: ~74)."""
    cfg = _preset_seq2seq_reverse_words_cpu()
    return RunConfig(model=replace(cfg.model, n_head=4), objective=Seq2SeqTaskConfig(task="pig-latin", max_words=6),
                     data=cfg.data, tokenizer=cfg.tokenizer, train=cfg.train, preset="seq2seq-pig-latin-cpu")

PRESETS: dict[str, Callable[[], RunConfig]] = {
    "gpt-nano": _preset_gpt_nano,
    "gpt-cpu": _preset_gpt_cpu,
    "fast": _preset_fast,
    "gpt-shakespeare-char": _preset_gpt_shakespeare_char,
    "gpt-mini-bpe": _preset_gpt_mini_bpe,
    "lstm-nano": _preset_lstm_nano,
    "lstm-cpu": _preset_lstm_cpu,
    "gru-nano": _preset_gru_nano,
    "bert-nano": _preset_bert_nano,
    "bert-cpu": _preset_bert_cpu,
    "bert-mlm-nsp-nano": _preset_bert_mlm_nsp_nano,
    "bert-mlm-nsp-cpu": _preset_bert_mlm_nsp_cpu,
    "ngram-nano": _preset_ngram_nano,
    "ngram-cpu": _preset_ngram_cpu,
    "t5-nano": _preset_t5_nano,
    "t5-cpu": _preset_t5_cpu,
    "seq2seq-reverse-words-nano": _preset_seq2seq_reverse_words_nano,
    "seq2seq-reverse-words-cpu": _preset_seq2seq_reverse_words_cpu,
    "seq2seq-pig-latin-cpu": _preset_seq2seq_pig_latin_cpu,
}


def get_preset(name: str) -> RunConfig:
    """A fresh copy of a named preset; unknown names list the known ones."""
    require(name in PRESETS, "preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def preset_description(name: str) -> str:
    return (PRESETS[name].__doc__ or "").strip()
