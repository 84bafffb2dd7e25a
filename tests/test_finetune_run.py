"""Fine-tuning runs end to end: a RunConfig with a finetune section trains a head in the store,
from scratch, from a run of ours or from MiniLM; frozen weights stay bit-identical; the test
split is scored at the end; predictions read typed text; bad settings are refused naming the
field, before any run row is written."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from workbench.checkpoint import load_checkpoint
from workbench.config import ConfigError, RunConfig
from workbench.finetune import load_task
from workbench.finetune.predict import answer, classify, load_finetuned, predict_examples, tag
from workbench.finetune.run import build_finetune, confusion_snapshots, finetune_info, resolve
from workbench.finetune.settings import FinetuneConfig
from workbench.pipeline import checkpoint_path, load_run_model, prepare_resume, run_training, train
from workbench.runstore import RunStore

TINY_BERT = {"arch": "bert", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64}
TRAIN = {"max_steps": 12, "batch_size": 8, "eval_interval": 6, "log_interval": 3, "lr": 3e-3, "warmup_steps": 2,
         "device": "cpu"}


def finetune_cfg(model: dict | None = None, objective: str = "mlm", **ft) -> RunConfig:
    return RunConfig.from_dict({"model": model or TINY_BERT, "objective": {"name": objective},
                                "tokenizer": {"kind": "char"}, "train": TRAIN,
                                "finetune": {"max_len": 64, "max_eval": 16, **ft}})


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


@pytest.fixture
def mood_csv(tmp_path: Path) -> Path:
    """60 short texts whose label is in their words (happy / sad), with a split column."""
    rng = random.Random(0)
    words = {"happy": "joy merry glad sweet", "sad": "woe grief tears dark"}
    path = tmp_path / "mood.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "split"])
        for i in range(60):
            label = ["happy", "sad"][i % 2]
            text = " ".join(rng.choices(words[label].split(), k=4) + rng.choices("the a my lord".split(), k=3))
            w.writerow([text, label, "train" if i < 40 else "val" if i < 50 else "test"])
    return path


@pytest.fixture(scope="module")
def pretrained(pretrained_bert: tuple[RunStore, str]) -> tuple[RunStore, str]:
    return pretrained_bert


# --- config ---------------------------------------------------------------------------------------

def test_a_config_without_finetune_writes_no_finetune_key_and_one_with_it_round_trips() -> None:
    assert "finetune" not in RunConfig().to_dict()
    cfg = finetune_cfg(task="names", labels=64, freeze=-1, pooling="mean")
    back = RunConfig.from_json(cfg.to_json())
    assert back.finetune == cfg.finetune and back.finetune.labels == 64


@pytest.mark.parametrize("field, value", [("freeze", -2), ("labels", -1), ("pooling", "max"), ("max_len", 4),
                                          ("head_lr", -1.0), ("init", " "), ("dropout", 1.0)])
def test_bad_finetune_settings_name_their_field(field: str, value) -> None:
    with pytest.raises(ConfigError) as err:
        FinetuneConfig(**{field: value})
    assert err.value.field == field


# --- scratch: the whole run -----------------------------------------------------------------------

def test_a_scratch_classification_run_scores_test_and_keeps_confusion_matrices(store: RunStore, mood_csv: Path) -> None:
    run_id = train(finetune_cfg(task=f"csv:{mood_csv}"), store, progress=False)
    run = store.get_run(run_id)
    assert run.status == "finished" and run.step == 12
    info = finetune_info(store, run_id)
    assert info["kind"] == "classification" and info["labels"] == ["happy", "sad"]
    assert info["train_examples"] == 40 and info["val_examples"] == 10 and info["test_examples"] == 10
    assert info["frozen_params"] == 0 and info["trainable_params"] == info["total_params"] > 0
    assert set(info["test"]) == {"test/loss", "test/acc", "test/macro_f1"}
    series = store.metric_series(run_id)
    assert series["test/acc"] == ([12], [pytest.approx(info["test"]["test/acc"])])
    val = confusion_snapshots(store, run_id)
    assert [step for step, _ in val] == [0, 6, 12]  # the untrained model, then every evaluation
    assert all(sum(map(sum, m["matrix"])) == 10 for _, m in val)
    (step, test), = confusion_snapshots(store, run_id, "confusion_test")
    correct = sum(test["matrix"][i][i] for i in range(2))
    assert step == 12 and correct / 10 == pytest.approx(info["test"]["test/acc"])
    stored = RunConfig.from_dict(run.config)
    assert stored.finetune is not None and stored.model.vocab_size > 0  # the tokenizer's size, filled in


def test_the_head_learns_an_easy_task(store: RunStore, mood_csv: Path) -> None:
    cfg = finetune_cfg(task=f"csv:{mood_csv}", pooling="mean")
    cfg = RunConfig.from_dict({**cfg.to_dict(), "train": {**TRAIN, "max_steps": 60, "eval_interval": 60}})
    info = finetune_info(store, train(cfg, store, progress=False))
    assert info["val"]["val/acc"] >= 0.9  # the label is in the words: a working head gets it


# --- from a run of ours ---------------------------------------------------------------------------

def test_init_from_a_run_copies_its_sections_and_starts_from_its_weights(pretrained: tuple[RunStore, str]) -> None:
    store, base_id = pretrained
    cfg = resolve(finetune_cfg(model={"arch": "gpt"}, objective="causal_lm", init=base_id, task="genre"), store)
    assert cfg.model.arch == "bert" and cfg.objective.name == "mlm"  # what is being fine-tuned
    exp = build_finetune(cfg, store)
    base_model, base_tok, _ = load_run_model(store, base_id)
    assert [exp.tokenizer.id_to_token(i) for i in range(base_tok.vocab_size)] == \
        [base_tok.id_to_token(i) for i in range(base_tok.vocab_size)]
    for name, p in base_model.state_dict().items():
        assert torch.equal(exp.model.trunk.state_dict()[name], p), name


def test_frozen_blocks_are_bit_identical_after_fine_tuning(pretrained: tuple[RunStore, str], tmp_path: Path,
                                                           mood_csv: Path) -> None:
    store, base_id = pretrained
    run_id = train(finetune_cfg(init=base_id, task=f"csv:{mood_csv}", freeze=1), store, progress=False)
    info = finetune_info(store, run_id)
    assert 0 < info["frozen_params"] < info["total_params"]
    before = load_run_model(store, base_id)[0].state_dict()
    after = load_checkpoint(checkpoint_path(store, run_id, "last")).model_state
    frozen = [k for k in before if k.startswith(("trunk.embeddings", "trunk.layers.0."))]
    learned = [k for k in before if k.startswith("trunk.layers.1.") and k.endswith("weight")]
    assert frozen and learned
    for k in frozen:
        assert torch.equal(after[f"trunk.{k}"], before[k]), k
    assert any(not torch.equal(after[f"trunk.{k}"], before[k]) for k in learned)


def test_reinit_keeps_the_architecture_and_tokenizer_but_not_the_weights(pretrained: tuple[RunStore, str]) -> None:
    store, base_id = pretrained
    exp = build_finetune(resolve(finetune_cfg(init=base_id, reinit=True), store), store)
    base = load_run_model(store, base_id)[0].state_dict()
    trunk = exp.model.trunk.state_dict()
    assert trunk.keys() == base.keys()
    mats = [k for k, v in base.items() if v.dim() == 2 and "layers" in k]
    assert mats and all(not torch.equal(trunk[k], base[k]) for k in mats)


def test_a_gpt_trunk_classifies_from_its_last_token_and_answers_without_segments(store: RunStore) -> None:
    gpt = {"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 96}
    cls_id = train(finetune_cfg(model=gpt, objective="causal_lm", task="genre", labels=16, max_len=96), store,
                   progress=False)
    assert finetune_info(store, cls_id)["pooling"] == "last"
    qa_id = train(finetune_cfg(model=gpt, objective="causal_lm", task="qa", labels=16, max_len=96), store,
                  progress=False)
    info = finetune_info(store, qa_id)
    assert store.get_run(qa_id).status == "finished" and set(info["test"]) == {"test/loss", "test/exact_match", "test/f1"}
    ft = load_finetuned(store, qa_id)
    context = "ROMEO:\nBut soft, what light\n\nJULIET:\nAy me"
    got = answer(ft, "Who says 'Ay me'?", context)
    assert context[got["start"]:got["end"]] == got["text"] and got["text"]


# --- predictions ------------------------------------------------------------------------------------

def test_predictions_read_typed_text(store: RunStore, mood_csv: Path) -> None:
    ft = load_finetuned(store, train(finetune_cfg(task=f"csv:{mood_csv}"), store, progress=False))
    probs = classify(ft, "joy and merry")
    assert list(probs) == ["happy", "sad"] and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    rows = predict_examples(ft, load_task(f"csv:{mood_csv}").test)
    assert len(rows) == 10 and all(r["pred"] in ("happy", "sad") and 0 < r["prob"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="tag needs a tagging run"):
        tag(ft, "Romeo")


def test_tagging_predictions_give_a_tag_per_word_and_spans_of_the_text(store: RunStore) -> None:
    ft = load_finetuned(store, train(finetune_cfg(task="names", labels=32), store, progress=False))
    text = "Good morrow, Romeo, and fair Juliet!"
    got = tag(ft, text)
    assert [w for w, _ in got["words"]] == ["Good", "morrow", ",", "Romeo", ",", "and", "fair", "Juliet", "!"]
    assert all(t in ft.labels for _, t in got["words"])
    for label, a, b in got["spans"]:
        assert label == "NAME" and text[a:b].strip() == text[a:b]


def test_a_run_without_weights_says_so_when_loaded(store: RunStore, mood_csv: Path) -> None:
    run_id = train(finetune_cfg(task=f"csv:{mood_csv}", keep_weights=False), store, progress=False)
    assert finetune_info(store, run_id)["test"]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_finetuned(store, run_id)


def test_a_fine_tuning_run_is_not_loaded_as_a_language_model(store: RunStore, mood_csv: Path) -> None:
    run_id = train(finetune_cfg(task=f"csv:{mood_csv}"), store, progress=False)
    with pytest.raises(ValueError, match="fine-tuning run"):
        load_run_model(store, run_id)


def test_a_fine_tuning_run_resumes_from_its_checkpoint(store: RunStore, mood_csv: Path) -> None:
    run_id = train(finetune_cfg(task=f"csv:{mood_csv}"), store, progress=False)
    prepare_resume(store, run_id, {"max_steps": 18})
    assert run_training(store, run_id, resume=True) == "finished"
    assert store.get_run(run_id).step == 18
    assert [s for s, _ in confusion_snapshots(store, run_id, "confusion_test")] == [12, 18]


# --- bad input: refused before a run row exists ----------------------------------------------------

def _refused(store: RunStore, cfg: RunConfig, field: str, match: str) -> None:
    before = len(store.list_runs())
    with pytest.raises(ConfigError, match=match) as err:
        train(cfg, store, progress=False)
    assert err.value.field == field
    assert len(store.list_runs()) == before  # refused before a run row was written


def test_bad_inits_are_refused_naming_init(pretrained: tuple[RunStore, str], tmp_path: Path) -> None:
    store, base_id = pretrained
    _refused(store, finetune_cfg(init="nope"), "init", "unknown run id 'nope'")
    _refused(store, finetune_cfg(init="hf:/no/such/model"), "init", "could not find the model")
    lstm = train(RunConfig.from_dict({"model": {"arch": "lstm", "n_layer": 1, "n_embd": 16}, "tokenizer": {"kind": "char"},
                                      "data": {"eval_chars": 1024},
                                      "train": {**TRAIN, "max_steps": 2, "eval_interval": 2, "seq_len": 16}}),
                 store, progress=False)
    _refused(store, finetune_cfg(init=lstm), "init", "lstm model; task heads sit on gpt or bert")
    _refused(store, finetune_cfg(init=base_id, reinit=False, max_len=65), "max_len", "at most 64")
    _refused(store, finetune_cfg(init=base_id, freeze=3), "freeze", "the trunk has 2")
    _refused(store, finetune_cfg(reinit=True), "reinit", "scratch is already random")


def test_bad_task_files_are_refused_naming_task(store: RunStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    _refused(store, finetune_cfg(task=f"csv:{empty}"), "task", "empty")
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("words,label\nhi,a\n", encoding="utf-8")
    _refused(store, finetune_cfg(task=f"csv:{no_text}"), "task", "needs columns text,label .* found: words, label")
    _refused(store, finetune_cfg(task="poems"), "task", "unknown task 'poems'")


def test_hf_init_refuses_more_frozen_blocks_than_minilm_has_from_its_config(store: RunStore) -> None:
    cfg = finetune_cfg(init="hf:all-MiniLM-L6-v2", freeze=7)
    _refused(store, cfg, "freeze", "the trunk has 6")
    _refused(store, finetune_cfg(init="hf:all-MiniLM-L6-v2", max_len=600), "max_len", "at most 512")


# --- MiniLM, offline --------------------------------------------------------------------------------

def test_minilm_fine_tunes_offline_with_a_head_learning_rate(store: RunStore, mood_csv: Path) -> None:
    cfg = finetune_cfg(init="hf:all-MiniLM-L6-v2", task=f"csv:{mood_csv}", head_lr=1e-2, pooling="mean", freeze=4)
    cfg = RunConfig.from_dict({**cfg.to_dict(), "train": {**TRAIN, "lr": 1e-4, "min_lr": 1e-5, "max_steps": 4,
                                                           "eval_interval": 4}})
    exp = build_finetune(resolve(cfg, store), store)
    assert {g["name"]: g["lr_scale"] for g in exp.groups} == {"trunk": 1.0, "head": 100.0}
    run_id = train(cfg, store, progress=False)
    info = finetune_info(store, run_id)
    assert store.get_run(run_id).status == "finished" and info["frozen_params"] > 0
    assert not (store.run_dir(run_id) / "tokenizer.json").exists()  # an HF tokenizer comes back from its name
    ft = load_finetuned(store, run_id)
    assert set(classify(ft, "joy")) == {"happy", "sad"}
    assert json.loads((store.run_dir(run_id) / "config.json").read_text())["finetune"]["init"] == "hf:all-MiniLM-L6-v2"


def test_reinit_of_an_hf_model_is_the_same_minilm_from_random_weights(store: RunStore, mood_csv: Path) -> None:
    # the "same model from scratch" column: MiniLM's architecture and tokenizer, none of its weights
    from workbench.hf_attention import load_hf

    cfg = finetune_cfg(init="hf:all-MiniLM-L6-v2", task=f"csv:{mood_csv}", reinit=True)
    exp = build_finetune(resolve(cfg, store), store)
    pretrained = load_hf("all-MiniLM-L6-v2")
    ours, theirs = exp.model.trunk.state_dict(), pretrained.model.state_dict()
    assert ours.keys() == theirs.keys() and all(ours[k].shape == theirs[k].shape for k in ours)
    mats = [k for k, v in theirs.items() if v.dim() == 2 and "layer." in k]
    assert len(mats) >= 36 and all(not torch.equal(ours[k], theirs[k]) for k in mats)
    text = "Now is the winter of our discontent"
    assert exp.tokenizer.encode(text) == pretrained.tokenizer.encode(text)


def test_pooler_pooling_uses_the_trunk_s_own_pooler_and_is_auto_for_hf_encoders(store: RunStore, mood_csv: Path) -> None:
    from workbench.finetune.heads import SequenceClassifier, trunk_pooler
    from workbench.hf_attention import load_hf

    hf = load_hf("all-MiniLM-L6-v2").model
    head = SequenceClassifier(hf, 2)
    assert head.pooling == "pooler"  # as BertForSequenceClassification
    ids = torch.tensor([[101, 2000, 2003, 102]])
    hidden = hf(input_ids=ids).last_hidden_state
    expected = torch.tanh(hf.pooler.dense(hidden[:, 0]))
    assert torch.allclose(trunk_pooler(hf)(hidden), expected, atol=1e-6)
    head.eval()
    assert torch.allclose(head(ids)[0], head.head(expected), atol=1e-5)
    gpt = {"arch": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 64}
    with pytest.raises(ConfigError, match="has no pooler") as err:
        build_finetune(resolve(finetune_cfg(model=gpt, objective="causal_lm", task=f"csv:{mood_csv}",
                                            pooling="pooler"), store), store)
    assert err.value.field == "pooling"


def test_tagged_words_become_character_spans_of_the_text() -> None:
    from workbench.finetune.predict import entity_spans

    text = "Good morrow, Sir Toby Belch, and Maria!"
    words = [(m.start(), m.end()) for m in __import__("re").finditer(r"\w+|[^\w\s]", text)]
    tags = ["O", "O", "O", "B-NAME", "I-NAME", "I-NAME", "O", "O", "B-NAME", "O"]
    assert [text[a:b] for _, a, b in entity_spans(words, tags)] == ["Sir Toby Belch", "Maria"]
