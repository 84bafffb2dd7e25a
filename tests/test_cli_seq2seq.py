"""``translate`` and ``evaluate`` on a tiny run trained on reverse-words, their errors, and the
dashboard's Sample page as Generate / Translate for that run (AppTest, no browser)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import test_dashboard
from test_dashboard import _app, _texts
from workbench.__main__ import main
from workbench.objectives.seq2seq_tasks import reverse_words
from workbench.overrides import apply_overrides
from workbench.pipeline import load_run_model, train
from workbench.presets import get_preset
from workbench.runstore import RunStore
from workbench.scoring import decode_scores, evaluate_run, evaluation_pairs
from workbench.seq2seq_decode import translate

local_visitor = test_dashboard.local_visitor  # autouse: a visitor on this machine

TINY_TASK = {"objective": "seq2seq", "objective.task": "reverse-words", "max_words": 4, "max_steps": 60,
             "eval_interval": 30, "eval_chars": 1024, "batch_size": 16, "n_embd": 32, "block_size": 32,
             "log_interval": 10, "warmup_steps": 5}


@pytest.fixture(scope="module")
def task_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with one finished reverse-words run (tests must not change it): (home, run id)."""
    home = tmp_path_factory.mktemp("seq2seq_home")
    run_id = train(apply_overrides(get_preset("t5-nano"), TINY_TASK), RunStore(home), progress=False)
    return home, run_id


@pytest.fixture
def wb(task_run, monkeypatch) -> tuple[Path, str]:
    monkeypatch.setenv("WORKBENCH_HOME", str(task_run[0]))
    return task_run


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- translate ------------------------------------------------------------------------------------

def test_translate_one_text_prints_the_decoded_target(wb, capsys) -> None:
    home, run_id = wb
    model, tok, _ = load_run_model(RunStore(home), run_id)
    code, out, err = _cli(capsys, "translate", "--run", run_id, "--text", "Now is the winter", "--beam-size", "1")
    assert code == 0, err
    assert out == translate(model, tok, ["Now is the winter"])[0] + "\n"  # beam 1 is greedy
    code, out, _ = _cli(capsys, "translate", "--run", run_id, "--text", "Now is the winter")  # default: beam 4
    assert code == 0 and out == translate(model, tok, ["Now is the winter"], beam_size=4)[0] + "\n"


def test_translate_several_texts_a_file_and_stdin(wb, capsys, tmp_path, monkeypatch) -> None:
    home, run_id = wb
    model, tok, _ = load_run_model(RunStore(home), run_id)
    sources = ["Now is the winter", "of our discontent"]
    expected = translate(model, tok, sources, beam_size=2)
    code, out, err = _cli(capsys, "translate", "--run", run_id, "--text", sources[0], "--text", sources[1],
                          "--beam-size", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for line, source, output in zip(lines, sources, expected):
        assert line.startswith(source) and line.rstrip().endswith("→" + (f" {output}" if output else ""))

    path = tmp_path / "sources.txt"
    path.write_text(f"{sources[0]}\n\n  {sources[1]}  \n", encoding="utf-8")  # blank lines are skipped
    code, from_file, _ = _cli(capsys, "translate", "--run", run_id, "--file", str(path), "--beam-size", "2")
    assert code == 0 and from_file == out
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(sources) + "\n"))
    code, from_stdin, _ = _cli(capsys, "translate", "--run", run_id, "--beam-size", "2")
    assert code == 0 and from_stdin == out


def test_translate_shows_the_rules_answer(wb, capsys) -> None:
    _, run_id = wb
    code, out, _ = _cli(capsys, "translate", "--run", run_id, "--text", "to be or not", "--show-expected")
    assert code == 0
    assert "✓" in out or f"✗ expected: {reverse_words('to be or not')}" in out


# --- evaluate -------------------------------------------------------------------------------------

def test_evaluation_pairs_are_the_pairs_the_run_scored(wb) -> None:
    from workbench.experiment import build_experiment

    home, run_id = wb
    _, tok, cfg = load_run_model(RunStore(home), run_id)
    pairs = evaluation_pairs(cfg)
    assert pairs and pairs == build_experiment(cfg, tokenizer=tok).objective.eval_pairs
    assert all(target == reverse_words(source) and len(source.split()) <= 4 for source, target in pairs)
    assert evaluation_pairs(cfg, "train")[0] != pairs[0]


def test_evaluate_prints_the_scores_and_json_matches_decode_scores(wb, capsys) -> None:
    home, run_id = wb
    model, tok, cfg = load_run_model(RunStore(home), run_id)
    scores = decode_scores(model, tok, evaluation_pairs(cfg), max_examples=12, beam_size=2)
    code, out, err = _cli(capsys, "evaluate", "--run", run_id, "--max-examples", "12", "--beam-size", "2", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert {k: got[k] for k in scores} == scores
    assert got["count"] == 12 and got["checkpoint"] == "best" and got["task"] == "reverse-words"
    assert evaluate_run(RunStore(home), run_id, beam_size=2, max_examples=12) == got

    code, out, err = _cli(capsys, "evaluate", "--run", run_id, "--max-examples", "12")
    assert code == 0, err
    for label in ("BLEU", "ROUGE-1", "ROUGE-2", "ROUGE-L", "exact match", "12 validation pairs", "greedy",
                  "source", "reference", "output"):
        assert label in out
    first = evaluation_pairs(cfg)[0]
    assert f"source     {first[0]}" in out and f"reference  {first[1]}" in out


# --- errors: exit 2, one line naming the flag, nothing written --------------------------------------

def _other_runs(home: Path, tmp_path: Path) -> dict[str, str]:
    """Store rows (no training) for the error cases: run ids by what is wrong with them."""
    store = RunStore(home)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"source {i}\ttarget {i}\n" for i in range(20)), encoding="utf-8")
    tsv_cfg = apply_overrides(get_preset("t5-nano"), {**TINY_TASK, "objective.task": f"tsv:{tsv}"})
    runs = {"span": store.create_run(get_preset("t5-nano").to_dict()),
            "gpt": store.create_run(get_preset("gpt-nano").to_dict()),
            "untrained": store.create_run(apply_overrides(get_preset("t5-nano"), TINY_TASK).to_dict()),
            "tsv": store.create_run(tsv_cfg.to_dict())}
    tsv.unlink()
    return runs


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_mistakes_exit_2_naming_the_flag(command, tmp_path, monkeypatch, capsys) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    runs = _other_runs(home, tmp_path)
    text = ["--text", "to be"] if command == "translate" else []
    cases = [
        (["--run", runs["untrained"], "--beam-size", "0"], ["--beam-size"]),
        (["--run", "nope"], ["--run", "unknown run id 'nope'"]),
        (["--run", runs["span"]], ["--run", "span corruption", "sample"]),
        (["--run", runs["gpt"]], ["--run", "continues text", "sample"]),
        (["--run", runs["untrained"]], ["--run", "no checkpoint yet"]),
    ]
    if command == "evaluate":  # its validation pairs are in the file; translate needs only the weights
        cases.append((["--run", runs["tsv"]], ["--run", "pairs.tsv", "gone"]))
    if command == "translate":
        cases.append((["--run", runs["untrained"], "--text", " "], ["--text", "empty"]))
        cases.append((["--run", runs["untrained"], "--file", str(tmp_path / "missing.txt")], ["--file"]))
    else:
        cases.append((["--run", runs["untrained"], "--max-examples", "0"], ["--max-examples"]))
    for args, said in cases:
        args = [*args, *text] if "--text" not in args and "--file" not in args else args
        code, out, err = _cli(capsys, command, *args)
        assert code == 2 and out == "", (args, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        for s in said:
            assert s in err, (args, err)
    assert sorted(p.name for p in (home / "runs").iterdir()) == sorted(runs.values())  # nothing new written


def test_scoring_refuses_a_run_without_a_task(tmp_path) -> None:
    store = RunStore(tmp_path)
    span = store.create_run(get_preset("t5-nano").to_dict())
    with pytest.raises(ValueError, match="fills gaps"):
        evaluate_run(store, span)
    with pytest.raises(ValueError, match="has no \\(source, target\\) pairs"):
        evaluation_pairs(get_preset("gpt-nano"))


# --- the dashboard's Sample page: Generate / Translate ----------------------------------------------

def test_sample_page_translates_a_task_run(wb) -> None:
    home, run_id = wb
    model, tok, cfg = load_run_model(RunStore(home), run_id)
    at = _app(run=run_id, page="sample")
    assert at.title[0].value == "Generate / Translate" and "reverse-words" in _texts(at.info)
    first = evaluation_pairs(cfg)[0][0]
    assert at.text_area(key="t_source").value == first  # the first source its evaluations decode

    at.button[0].click().run()  # greedy
    assert not at.exception and not at.error, _texts(at.error)
    assert at.code[0].value == translate(model, tok, [first])[0]
    assert "Expected (the task's rule)" in _texts(at.markdown) and at.code[1].value == reverse_words(first)
    assert "exact match" in _texts([*at.success, *at.warning]).lower()

    at.radio(key="t_method").set_value("beam search").run()
    at.number_input(key="t_beam").set_value(3)
    at.text_area(key="t_source").set_value("Now is the winter\n\nof our *discontent*")
    at.button[0].click().run()
    assert not at.exception and not at.error, _texts(at.error)
    table = at.dataframe[0].value
    assert list(table["source"]) == ["Now is the winter", "of our *discontent*"]  # a table: not Markdown
    assert list(table["output"]) == translate(model, tok, list(table["source"]), beam_size=3)
    assert list(table["expected"]) == [reverse_words(s) for s in table["source"]]
    assert "Exact match:" in _texts(at.markdown) and "beam 3" in _texts(at.caption)

    at.radio(key="t_method").set_value("sampling").run()
    at.text_area(key="t_source").set_value("to be or not")
    at.button[0].click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert at.code[0].value == translate(model, tok, ["to be or not"], temperature=0.8, seed=1337)[0]

    at.text_area(key="t_source").set_value("  \n ")
    at.button[0].click().run()
    assert not at.exception and "Write a source text" in _texts(at.error) and not at.code  # said, no traceback


def test_sample_page_for_a_tsv_task_shows_no_rule_and_reports_encoding_errors(wb, tmp_path, monkeypatch) -> None:
    import shutil

    import workbench.seq2seq_decode
    from workbench.tokenizers import TokenizerError

    home, run_id = wb
    store = RunStore(home)
    tsv = tmp_path / "private-folder" / "pairs.tsv"
    tsv.parent.mkdir()
    tsv.write_text("".join(f"word {i}\tmot {i}\n" for i in range(20)), encoding="utf-8")
    config = json.loads((store.run_dir(run_id) / "config.json").read_text(encoding="utf-8"))
    config["objective"]["task"] = f"tsv:{tsv}"  # the reverse-words weights, told they learned a TSV task
    other = store.create_run(config)
    store.update_run(other, status="finished")
    shutil.copytree(store.run_dir(run_id) / "ckpt", store.run_dir(other) / "ckpt")
    shutil.copy(store.run_dir(run_id) / "tokenizer.json", store.run_dir(other) / "tokenizer.json")
    (store.run_dir(other) / "config.json").write_text(json.dumps(config), encoding="utf-8")
    try:
        at = _app(run=other, page="sample")
        assert "tsv:.../pairs.tsv" in _texts(at.info) and "private-folder" not in _texts(at.info)
        assert at.text_area(key="t_source").value == "word 18"  # the file's last 10 %: its validation pairs
        at.button[0].click().run()
        assert not at.exception and not at.error, _texts(at.error)
        assert len(at.code) == 1 and "Expected" not in _texts(at.markdown) and not at.success

        def refuse(*args, **kwargs):
            raise TokenizerError("cannot encode '☃'")

        monkeypatch.setattr(workbench.seq2seq_decode, "translate", refuse)  # the page imports it on each run
        at.button[0].click().run()
        assert not at.exception and "cannot be encoded" in _texts(at.error) and not at.code
        monkeypatch.undo()
        monkeypatch.setenv("WORKBENCH_HOME", str(home))
        tsv.unlink()  # the file is gone: the run still loads and translates (the pairs are only for evaluate)
        code = main(["translate", "--run", other, "--text", "word 3", "--beam-size", "1"])
        assert code == 0
    finally:
        store.delete_run(other)
