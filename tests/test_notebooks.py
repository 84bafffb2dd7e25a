"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, against a throwaway store.

The kernel is started from ``notebooks/`` (as ``jupyter lab notebooks/`` would) and inherits
``WORKBENCH_HOME`` pointing at a temporary folder, so a notebook that trains writes its run
there and never into the user's ``~/.workbench``. Beyond "no cell raised", each notebook can
register a check on what it really produced (runs in the store, printed samples, widgets).
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from workbench import apply_overrides, get_preset
from workbench.notebook import LiveLossPlot
from workbench.pipeline import train
from workbench.runstore import RunStore

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected exactly one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _check_quickstart(nb: nbformat.NotebookNode, home: Path) -> None:
    store = RunStore(home)
    runs = store.list_runs()
    assert len(runs) == 1, f"the quickstart should create exactly one run in {home}, found {len(runs)}"
    run = runs[0]
    assert run.status == "finished", run.error
    assert run.step == run.max_steps == run.config["train"]["max_steps"]

    series = store.metric_series(run.id)
    steps, val_losses = series["val/loss"]
    assert steps[0] == 0, "the untrained model is evaluated first"
    assert run.best_val_loss is not None and run.best_val_loss < val_losses[0] - 1.0, (
        f"best val loss {run.best_val_loss} is not clearly below the initial {val_losses[0]}"
    )
    assert math.isclose(run.best_val_loss, min(val_losses))
    assert store.artifacts(run.id, "attention"), "attention snapshots were saved"

    # the live chart was displayed as a widget in the training cell
    train_cell = _tagged(nb, "train")
    assert any(WIDGET_MIME in o.get("data", {}) for o in train_cell.outputs), "LiveLossPlot was not displayed"

    # the sample continues the prompt with real text
    sample = _stdout(_tagged(nb, "sample"))
    assert sample.startswith("ROMEO:\n")
    continuation = sample[len("ROMEO:\n"):]
    assert len(continuation.strip()) > 100, f"sample too short: {sample!r}"

    # every plotly figure the notebook shows came out as a figure
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 4, f"expected the lr chart, one heatmap and two grids; got {len(figures)} figures"


def _check_tokenization(nb: nbformat.NotebookNode, home: Path) -> None:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    pages = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(pages) >= 8, f"expected the token views and tables as HTML; got {len(pages)}"
    assert not any("<script" in p.lower() for p in pages), "the views must not contain scripts"
    assert any('class="wb-side-by-side"' in p for p in pages) and any('class="wb-merges"' in p for p in pages)
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 3, f"expected the merges, compression and length charts; got {len(figures)} figures"
    assert any(WIDGET_MIME in o.get("data", {}) for o in _tagged(nb, "slider").outputs), "the merge slider was not displayed"
    assert "same ids: True | without special tokens: True" in _stdout(_tagged(nb, "save-hf"))


def _check_objectives(nb: nbformat.NotebookNode, home: Path) -> None:
    # one finished run per family of the standard set, each with its objective
    runs = RunStore(home).list_runs()
    assert all(r.status == "finished" for r in runs), [(r.id, r.status, r.error) for r in runs]
    objectives = sorted((r.config["model"]["arch"], r.config["objective"]["name"]) for r in runs)
    expected = [("bert", "mlm"), ("gpt", "causal_lm"), ("lstm", "causal_lm"), ("ngram", "causal_lm")]
    assert objectives == expected, objectives

    # sparsity: one row per n; the unseen fraction never falls as n grows, and is higher with less training text
    rows = [m for line in _stdout(_tagged(nb, "sparsity")).splitlines()
            if (m := re.fullmatch(r"\s*(\d+)\s+[\d,]+\s+([\d.]+)%\s+([\d.]+)%\s*", line))]
    assert [int(m[1]) for m in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 8, rows
    whole, prefix = ([float(m[col]) for m in rows] for col in (2, 3))
    for fractions in (whole, prefix):
        assert fractions == sorted(fractions) and fractions[0] < 1 and fractions[-1] > 10, fractions
    assert all(p >= w for w, p in zip(whole, prefix)), (whole, prefix)

    # smoothing: add-1 has turned up again by the largest n; Kneser-Ney ends below it
    found = re.findall(r"^\s*(.+?): best at n = (\d+) \(([\d.]+) bpc\); at n = \d+: ([\d.]+) bpc$",
                       _stdout(_tagged(nb, "smoothing")), re.M)
    bpc = {name: (float(best), float(last)) for name, _, best, last in found}
    assert set(bpc) == {"add-1 (Laplace)", "add-0.01", "Kneser-Ney"}, bpc
    (add1_best, add1_last), (_, kn_last) = bpc["add-1 (Laplace)"], bpc["Kneser-Ney"]
    assert add1_last > add1_best and kn_last < add1_last, bpc

    # masking: about 15% of the text tokens selected, most of them replaced by [MASK]
    masking = _stdout(_tagged(nb, "masking"))
    picked, eligible = map(int, re.search(r"(\d+) of (\d+) text tokens selected", masking).groups())
    assert 0.08 < picked / eligible < 0.22, masking
    made = {how: int(n) for how, n in re.findall(r"(\[MASK\]|random|kept):\s+(\d+)", masking)}
    assert sum(made.values()) == picked and made["[MASK]"] > picked / 2, made

    # the comparison table has the four models, and says which predict the next token and which a masked one
    table = _stdout(_tagged(nb, "compare")).strip().splitlines()
    assert len(table) == 5 and table[0].split()[:3] == ["model", "objective", "predicts"], table
    assert [("next token" in line, "masked token" in line) for line in table[1:]].count((True, False)) == 3, table
    assert sum("masked token" in line for line in table) == 1, table

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "IsNext: B follows A" in text and "NotNext: B is from another document" in text
    pages = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert not any("<script" in p.lower() for p in pages), "the views must not contain scripts"
    assert sum('class="wb-batch"' in p for p in pages) >= 4, "expected the causal, masked and two pair batches"
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 7, f"expected sparsity, smoothing, two comparisons, three masks; got {len(figures)} figures"


def _check_xlnet_t5(nb: nbformat.NotebookNode, home: Path) -> None:
    # the PLM / CLM / MLM comparison and the reverse-words model, all finished
    runs = RunStore(home).list_runs()
    assert all(r.status == "finished" for r in runs), [(r.id, r.status, r.error) for r in runs]
    objectives = sorted((r.config["model"]["arch"], r.config["objective"]["name"]) for r in runs)
    assert objectives == [("bert", "mlm"), ("gpt", "causal_lm"), ("gpt", "plm"), ("seq2seq", "seq2seq")], objectives
    (s2s,) = [r for r in runs if r.config["objective"]["name"] == "seq2seq"]
    assert s2s.config["objective"]["task"] == "reverse-words"

    # two streams: no query sees its own token (mask), and replacing a predicted token's content leaves its
    # own logits exactly unchanged while the later predicted tokens, which see it, do change
    streams = _stdout(_tagged(nb, "two-stream"))
    query_self, total = map(int, re.search(r"query stream positions that see their own token \(mask\): (\d+) of (\d+)",
                                           streams).groups())
    content_self, _ = map(int, re.search(r"content stream positions that see their own token \(mask\): (\d+) of (\d+)",
                                         streams).groups())
    assert query_self == 0 and content_self == total > 0, streams
    own = float(re.search(r"own logits when its content is replaced: (\S+)", streams)[1])
    seen = float(re.search(r"later predicted tokens, which see it: (\S+)", streams)[1])
    assert own == 0.0 and seen > 0.0, streams
    assert "query stream never sees its own content: True" in streams
    per_row = re.search(r"predicted per row: \[([\d, ]+)\] \(ceil\((\d+)/(\d+)\) = (\d+)\)", streams)
    assert {int(n) for n in per_row[1].split(",")} == {int(per_row[4])} == {math.ceil(int(per_row[2]) / int(per_row[3]))}

    # the comparison: three models, each with a finite bits per character of what it predicts
    compare = _stdout(_tagged(nb, "plm-compare")).strip().splitlines()
    assert compare[0].split()[:3] == ["model", "objective", "predicts"], compare
    names = {"causal_lm", "mlm", "plm"}
    assert sorted(next(w for w in line.split() if w in names) for line in compare[1:4]) == sorted(names), compare
    bpc = {label: float(v) for label, v in re.findall(r"^(PLM|CLM|MLM): ([\d.]+) bpc", "\n".join(compare), re.M)}
    assert set(bpc) == {"PLM", "CLM", "MLM"} and all(0 < v < 10 for v in bpc.values()), bpc
    assert re.search(r"PLM costs [\d.]+x CLM's time per step", "\n".join(compare)), compare

    # span corruption: the spans put back give the window exactly; the measured noise is T5's counts
    assert "spans put back restore the original exactly: True" in _stdout(_tagged(nb, "fill-sentinels"))
    rows = re.findall(r"^\s*(\d+)\s+\((\d+), (\d+)\)\s+([\d.]+)\s+([\d.]+)\s*$", _stdout(_tagged(nb, "span-stats")), re.M)
    assert len(rows) >= 3, rows
    for length, noise, spans, fraction, mean_span in rows:
        length, noise, spans = int(length), int(noise), int(spans)
        assert math.isclose(float(fraction), noise / length, abs_tol=1e-4), (length, fraction)
        assert math.isclose(float(mean_span), noise / spans, abs_tol=1e-3), (length, mean_span)
        assert abs(float(fraction) - 0.15) < 0.01 and abs(float(mean_span) - 3.0) < 0.4, (length, fraction, mean_span)

    # bucketing: less padding than random batches
    padding = _stdout(_tagged(nb, "padding"))
    random_pad = float(re.search(r"random batches:\s+mean padding ([\d.]+)%", padding)[1])
    bucketed_pad = float(re.search(r"bucketed batches:\s+mean padding ([\d.]+)%", padding)[1])
    assert bucketed_pad < random_pad and random_pad > 10, padding

    # the reverse-words model: trained with a live chart, decoded and scored (whatever the scores are),
    # its cross-attention measured against chance
    assert any(WIDGET_MIME in o.get("data", {}) for o in _tagged(nb, "train").outputs), "LiveLossPlot was not displayed"
    scores = re.search(r"greedy decoding of (\d+) validation pairs: BLEU ([\d.]+), ROUGE-1 ([\d.]+), ROUGE-2 ([\d.]+), "
                       r"ROUGE-L ([\d.]+), exact match ([\d.]+)%", _stdout(_tagged(nb, "decode")))
    assert scores and int(scores[1]) > 0 and 0 <= float(scores[2]) <= 100, _stdout(_tagged(nb, "decode"))
    assert all(0 <= float(scores[i]) <= 1 for i in (3, 4, 5)) and 0 <= float(scores[6]) <= 100, scores.groups()
    mirror = _stdout(_tagged(nb, "mirror"))
    share, chance = map(float, re.search(r"mirrored source word, mean over heads: ([\d.]+) \(chance ([\d.]+)", mirror).groups())
    assert 0 <= share <= 1 and 0 < chance < 1, mirror
    assert re.search(r"anti-diagonal is there|has not learned where to look yet", mirror), mirror

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    pages = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert not any("<script" in p.lower() for p in pages), "the views must not contain scripts"
    assert sum('class="wb-batch"' in p for p in pages) >= 3, "expected the PLM, span-PLM and T5 tables"
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 8, (f"expected two orders, the two streams, the comparison, span lengths, padding and two "
                               f"cross-attention figures; got {len(figures)}")


def _figures(cell: nbformat.NotebookNode) -> list[dict]:
    return [o["data"]["application/vnd.plotly.v1+json"] for o in cell.outputs
            if "application/vnd.plotly.v1+json" in o.get("data", {})]


def _check_attention(nb: nbformat.NotebookNode, home: Path) -> None:
    # attention by hand matched the package's layer (assert_close raised otherwise), one and two heads
    assert "by hand == layers.SelfAttention: weights and output match" in _stdout(_tagged(nb, "by-hand"))
    assert "2 heads of size 4 by hand == layers.SelfAttention(n_head=2)" in _stdout(_tagged(nb, "multi-head"))

    # shuffling the input of a block without positions shuffles its output exactly; with positions it does not
    shuffle = _stdout(_tagged(nb, "shuffle"))
    no_pos = float(re.search(r"bidirectional, no positions:\s+shuffled output - output shuffled = (\S+)", shuffle)[1])
    with_pos = float(re.search(r"bidirectional, sinusoidal table:\s+shuffled output - output shuffled = (\S+)", shuffle)[1])
    assert no_pos < 1e-5 and with_pos > 1e-2, shuffle
    assert "without positions the block is permutation-equivariant: True; with them it is not: True" in shuffle
    rope = _stdout(_tagged(nb, "rope"))
    assert float(re.search(r"along a diagonal .*: (\S+)", rope)[1]) < 1e-4, rope
    assert "RoPE scores depend only on the relative position i - j: True" in rope

    # four finished runs, one per variant, and their loss curves in one chart; pre-LN's falls
    runs = RunStore(home).list_runs()
    assert all(r.status == "finished" for r in runs), [(r.id, r.status, r.error) for r in runs]
    variants = sorted((r.config["model"]["norm"], r.config["model"]["residual"]) for r in runs)
    assert variants == [("none", True), ("post", True), ("pre", False), ("pre", True)], variants
    (curves,) = _figures(_tagged(nb, "residual-ln"))
    traces = {t["name"]: t for t in curves["data"]}
    assert sorted(traces) == sorted(["pre-LN", "post-LN", "no LayerNorm", "no residual"]), list(traces)
    pre = traces["pre-LN"]["y"]
    assert len(pre) >= 3 and pre[-1] < pre[0] - 1.0 and pre[-1] <= min(pre) + 0.05, pre  # fell, and ends near its lowest

    # the pre-LN run's heads over training: the run is in the store, finished, with its snapshots
    over_time = _tagged(nb, "heads-over-time")
    run_id, status, step, n_snapshots = re.search(r"run (\S+): (\w+) at step (\d+); (\d+) snapshots",
                                                  _stdout(over_time)).groups()
    info = RunStore(home).get_run(run_id)
    assert status == info.status == "finished" and int(step) == info.step == info.config["train"]["max_steps"]
    assert int(n_snapshots) >= 3 and len(RunStore(home).artifacts(run_id, "attention")) == int(n_snapshots)
    assert _figures(over_time), "head_over_time drew no figure"
    induction = re.search(r"best induction score ([\d.]+) \(layer \d+, head \d+\): (.+)$",
                          _stdout(_tagged(nb, "induction")), re.M)
    assert induction and 0 <= float(induction[1]) <= 1, _stdout(_tagged(nb, "induction"))
    assert induction[2] == ("an induction head has formed" if float(induction[1]) >= 0.4 else "no induction head at this budget")

    # MiniLM, offline: the model view and the layer/head/text widgets, labels with its sink heads
    minilm = _tagged(nb, "minilm")
    assert _figures(minilm), "the model view was not shown"
    assert any(WIDGET_MIME in o.get("data", {}) for o in minilm.outputs), "the widgets were not displayed"
    heads = re.search(r"6 layers x 12 heads on (\d+) tokens: (.+)", _stdout(minilm))
    assert heads and re.search(r"\d+ sink", heads[2]), _stdout(minilm)

    # two head views in one notebook, both rendered as their own iframes (bertviz #45)
    frames = [o["data"]["text/html"] for o in _tagged(nb, "head-view").outputs if "text/html" in o.get("data", {})]
    assert len(frames) == 2 and all(f.startswith("<iframe") for f in frames) and frames[0] != frames[1], \
        [f[:80] for f in frames]
    ids = [re.search(r'id="([^"]+)"', f)[1] for f in frames]
    assert ids[0] != ids[1], ids

    # the export: a file outside the repository that opens offline
    exported = Path(re.search(r"kB to (.+)$", _stdout(_tagged(nb, "export")), re.M)[1].strip())
    assert exported.is_file() and NOTEBOOKS_DIR.parent not in exported.parents, exported
    page = exported.read_text(encoding="utf-8")
    assert "<html" in page.lower() and "https://cdn" not in page, "the exported view must not load from a CDN"


def _plotly_array(value: object) -> list:
    """A plotly JSON array as a list: plain, or the typed-array form ({"dtype", "bdata", "shape"})."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        import numpy as np

        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape).tolist()
    return list(value)  # type: ignore[call-overload]


def _check_finetuning(nb: nbformat.NotebookNode, home: Path) -> None:
    from workbench.finetune.run import confusion_snapshots, finetune_info

    store = RunStore(home)
    runs = store.list_runs()
    assert all(r.status == "finished" for r in runs), [(r.id, r.status, r.error) for r in runs]

    # one pretraining run (a BERT, masked LM, shown live); every other run fine-tunes it, with its model section
    (pre,) = [r for r in runs if not r.config.get("finetune")]
    assert (pre.config["model"]["arch"], pre.config["objective"]["name"]) == ("bert", "mlm")
    assert any(WIDGET_MIME in o.get("data", {}) for o in _tagged(nb, "pretrain").outputs), "LiveLossPlot was not displayed"
    assert f"trunk: run {pre.id}, bert" in _stdout(_tagged(nb, "pretrain"))
    tuned = [r for r in runs if r.config.get("finetune")]
    assert tuned and all(r.config["finetune"]["init"] == pre.id and r.config["model"] == pre.config["model"]
                         for r in tuned), [(r.id, r.config["finetune"]["init"]) for r in tuned]

    def reported(tag: str, task: str, kind: str) -> tuple[str, dict]:
        # the describe() lines agree with the run's finetune.json; scores are whatever they are, within range
        out = _stdout(_tagged(nb, tag))
        run_id, n, trained, total = re.search(rf"run (\S+): {task} \({kind}\) on (\d+) labelled examples, "
                                              r"([\d,]+) of ([\d,]+) parameters trained", out).groups()
        info = finetune_info(store, run_id)
        budget = store.get_run(run_id).config["finetune"]["labels"]  # 0 = every training example
        assert info["task"] == task and info["train_examples"] == int(n) == (budget or int(n)) > 0, (info, budget)
        assert int(trained.replace(",", "")) == info["trainable_params"] == info["total_params"] == int(total.replace(",", ""))
        for split in ("val", "test"):
            line = re.search(rf"^\s+{split}\s+(.+)$", out, re.M)[1]
            shown = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)", line)}
            assert shown == pytest.approx({k.split("/", 1)[1]: v for k, v in info[split].items()}, abs=6e-4), (shown, info)
            assert all(0 <= v <= 1 for k, v in shown.items() if k != "loss"), shown
        return run_id, info

    # 3 · classification, shown live, its validation scores at each evaluation and the test scores at the end
    genre_run, genre_info = reported("genre", "genre", "classification")
    assert any(WIDGET_MIME in o.get("data", {}) for o in _tagged(nb, "genre").outputs), "LiveLossPlot was not displayed"
    series = store.metric_series(genre_run)
    run = store.get_run(genre_run)
    assert series["val/acc"][0][0] == 0 and series["val/acc"][0][-1] == run.step == run.max_steps
    assert series["test/acc"] == ([run.step], [pytest.approx(genre_info["test"]["test/acc"])])

    # 4 · tagging: the tagger's names are the words it tagged, found in the line
    _, names_info = reported("names", "names", "tagging")
    assert re.search(r"words cut off by max_len = \d+: \{", _stdout(_tagged(nb, "names")))
    tagged_line, found_line = _stdout(_tagged(nb, "tag-line")).strip().splitlines()
    tags = [w.rsplit("/", 1)[1] if re.search(r"/[BI]-NAME$", w) else "O" for w in tagged_line.split()]
    starts = sum(t != "O" and (t.startswith("B-") or prev == "O") for prev, t in zip(["O", *tags], tags))
    found = ast.literal_eval(found_line.removeprefix("names found: "))  # a printed list of strings
    assert len(found) == starts and all(name.strip() for name in found), (tagged_line, found)

    # 5 · QA: the dropped examples are counted, and every answer is a span of its context
    _, qa_info = reported("qa", "qa", "qa")
    shown = re.search(r"dropped \(answer cut off by max_len = \d+\): (\{.*\})", _stdout(_tagged(nb, "qa")))[1]
    assert ast.literal_eval(shown) == qa_info["dropped"] and 0 <= qa_info["dropped"].get("given", 0) < qa_info["train_examples"]
    answers = re.findall(r"predicted: (.*) \(characters (\d+)-(\d+), score", _stdout(_tagged(nb, "answers")))
    assert len(answers) == 4 and all(int(b) - int(a) == len(ast.literal_eval(text)) for text, a, b in answers), answers

    # 6 · freeze: full, the lower blocks, the head only: fewer parameters trained each time, all accounted for
    rows = re.findall(r"^(.+?)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", _stdout(_tagged(nb, "freeze")), re.M)
    assert [r[0] for r in rows][0] == "full fine-tuning" and rows[-1][0] == "head only (trunk frozen)", rows
    trained = [int(r[1].replace(",", "")) for r in rows]
    frozen = [int(r[2].replace(",", "")) for r in rows]
    assert len(rows) == 3 and trained == sorted(trained, reverse=True) and trained[2] < trained[0] / 100, rows
    assert frozen[0] == 0 and all(t + f == trained[0] for t, f in zip(trained, frozen)), rows
    genre_kept = sorted(r.config["finetune"]["freeze"] for r in tuned
                        if r.config["finetune"]["task"] == "genre" and r.config["finetune"]["keep_weights"])
    assert genre_kept[0] == -1 and genre_kept[1] == 0 and len(genre_kept) == 3, genre_kept

    # 7 · the sweep: every arm at every budget, each a run without weights, as printed; the curve draws them
    printed = re.findall(r"^\s*(pretrained|frozen|scratch): +(\d+) labels, +(\d+) steps, test acc ([\d.]+)  \(run (\S+)\)$",
                         _stdout(_tagged(nb, "sweep")), re.M)
    budgets = sorted({int(n) for _, n, *_ in printed})
    assert len(budgets) >= 2 and len(printed) == 3 * len(budgets), printed
    arms = {"pretrained": (0, False), "frozen": (-1, False), "scratch": (0, True)}
    for arm, n, steps, acc, run_id in printed:
        fc = store.get_run(run_id).config["finetune"]
        assert (fc["freeze"], fc["reinit"], fc["labels"], fc["keep_weights"]) == (*arms[arm], int(n), False), (arm, fc)
        assert store.get_run(run_id).step == int(steps)
        assert float(acc) == pytest.approx(finetune_info(store, run_id)["test"]["test/acc"], abs=6e-4)
    assert re.search(r"labels\s+frozen\s+pretrained\s+scratch\s+\(test acc\)", _stdout(_tagged(nb, "sweep")))
    (curve,) = _figures(_tagged(nb, "sweep-figure"))
    assert {t["name"]: _plotly_array(t["x"]) for t in curve["data"]} == {arm: budgets for arm in arms}, curve["data"]
    assert curve["layout"]["xaxis"]["type"] == "log" and len(curve["layout"]["shapes"]) == 1  # the majority line

    # 8 · errors: the test confusion matrix shown is the stored one, and its diagonal is the test accuracy
    ((step, stored),) = confusion_snapshots(store, genre_run, "confusion_test")
    right, total, acc, run_acc = re.search(r"(\d+) of (\d+) test passages on the diagonal: accuracy ([\d.]+) "
                                           r"\(the run's test/acc: ([\d.]+)\)", _stdout(_tagged(nb, "confusion"))).groups()
    assert int(total) == genre_info["test_examples"] and acc == run_acc, (total, acc, run_acc)
    assert int(right) / int(total) == pytest.approx(genre_info["test"]["test/acc"])
    (heatmap,) = _figures(_tagged(nb, "confusion"))
    cells = [[int(text.replace(",", "")) for text in row] for row in heatmap["data"][0]["text"]]  # each cell: its count
    assert cells == stored["matrix"] and _plotly_array(heatmap["data"][0]["x"]) == stored["labels"], (cells, stored)
    steps_shown = re.search(r"validation confusion matrices at steps \[([\d, ]+)\]", _stdout(_tagged(nb, "confusion-steps")))[1]
    assert [int(s) for s in steps_shown.split(",")] == series["val/acc"][0], steps_shown
    assert any(WIDGET_MIME in o.get("data", {}) for o in _tagged(nb, "confusion-steps").outputs), "the slider was not shown"
    errors = _stdout(_tagged(nb, "errors"))
    n_wrong, n_scored, n_right = map(int, re.search(r"(\d+) of (\d+) test passages wrong \((\d+) right\)", errors).groups())
    assert n_wrong + n_right == n_scored > 0, errors
    shown = re.findall(r"^true (\w+), predicted (\w+) \((\d+)%\):$", errors, re.M)
    assert len(shown) == min(5, n_wrong) and all(t != p for t, p, _ in shown), shown
    assert [int(c) for *_, c in shown] == sorted((int(c) for *_, c in shown), reverse=True), shown
    probs = ast.literal_eval(_stdout(_tagged(nb, "try-it")).strip().splitlines()[0])  # a printed dict of probabilities
    assert list(probs) == genre_info["labels"] and sum(probs.values()) == pytest.approx(1, abs=0.01), probs
    assert any(WIDGET_MIME in o.get("data", {}) for o in _tagged(nb, "try-it").outputs), "the text box was not shown"

    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 4, f"expected validation scores, freeze bars, sweep curve, confusion matrix; got {len(figures)}"


ABLATION_VARIANTS = {"fast": {}, "learned positions": {"model.pos_encoding": "learned"}, "no QK-norm": {"model.qk_norm": False},
                     "GELU": {"model.activation": "gelu"}, "tied head": {"model.tie_weights": True, "model.zero_init": False},
                     "AdamW only": {"train.optimizer": "adamw"},
                     "gpt-cpu schedule": {"train.lr": 1e-3, "train.min_lr": 1e-4, "train.warmup_steps": 100}}


def _check_speed(nb: nbformat.NotebookNode, home: Path) -> None:
    store = RunStore(home)
    runs = store.list_runs()
    assert all(r.status == "finished" for r in runs), [(r.id, r.status, r.error) for r in runs]
    assert len(runs) == 2 + len(ABLATION_VARIANTS), [r.name for r in runs]

    # 1 · the race: gpt-cpu and fast under one wall-clock budget, each with its val/loss curve
    compared = {r.config["preset"]: r for r in runs if not r.name.startswith("05 ablation")}
    assert sorted(compared) == ["fast", "gpt-cpu"], [(r.name, r.config["preset"]) for r in runs]
    budget = compared["fast"].config["train"]["max_time_s"]
    for preset, run in compared.items():
        assert run.name == f"05 {preset}" and run.config["train"]["max_time_s"] == budget > 0, (run.name, run.config["train"])
        assert run.step == run.max_steps or run.ended_at - run.started_at >= budget, (preset, run.step, run.max_steps)
        steps, values = store.metric_series(run.id)["val/loss"]
        assert steps[0] == 0 and len(steps) >= 2 and all(math.isfinite(v) for v in values), (preset, steps, values)
    assert compared["fast"].config["model"]["zero_init"] and not compared["gpt-cpu"].config["model"]["zero_init"]
    assert compared["fast"].config["train"]["optimizer"] == "muon" and compared["gpt-cpu"].config["train"]["optimizer"] == "adamw"

    # the zero-initialised head: the fast run's untrained evaluation is ln V, from the store and by hand
    vocab = compared["fast"].config["model"]["vocab_size"]
    assert vocab > 50, vocab  # characters of Shakespeare
    first = store.metric_series(compared["fast"].id)["val/loss"][1][0]
    assert abs(first - math.log(vocab)) < 0.01, (first, math.log(vocab))
    by_hand = {name: float(v) for name, v in re.findall(r"^\s*(\S+): first loss ([\d.]+), ln V = ln \d+ = [\d.]+",
                                                        _stdout(_tagged(nb, "zero-init")), re.M)}
    assert abs(by_hand["fast"] - math.log(vocab)) < 1e-3 < abs(by_hand["gpt-cpu"] - math.log(vocab)), by_hand

    # Muon: orthogonalize flattens the spectrum (the smallest singular value comes up towards the largest)
    muon = _stdout(_tagged(nb, "muon"))
    after = re.search(r"after orthogonalize:\s+largest ([\d.]+), 9th ([\d.]+), smallest ([\d.]+)", muon)
    before = re.search(r"before \(norm 1\): largest ([\d.]+), 9th ([\d.]+), smallest ([\d.]+)", muon)
    assert float(before[2]) < 0.1 * float(before[1]) and 0.3 < float(after[3]) <= float(after[1]) < 1.5, muon

    # 2 · the ablation: one line per variant, each the run's last val/loss, its difference from fast's
    printed = re.findall(r"^\s*(.+?): val ([\d.]+) \(([+-][\d.]+)\) in ([\d.]+) s$", _stdout(_tagged(nb, "ablation")), re.M)
    assert [label for label, *_ in printed] == list(ABLATION_VARIANTS), printed
    loss = {label: float(v) for label, v, *_ in printed}
    ablated = {r.name.removeprefix("05 ablation "): r for r in runs if r.name.startswith("05 ablation ")}
    assert sorted(ablated) == sorted(ABLATION_VARIANTS), sorted(ablated)
    steps = {r.step for r in ablated.values()}
    assert len(steps) == 1 and steps == {r.max_steps for r in ablated.values()}, steps
    for label, value, diff, secs in printed:
        assert abs(float(diff) - (loss[label] - loss["fast"])) <= 0.0011, (label, value, diff)
        run = ablated[label]
        assert run.config["preset"] == "fast" and run.config["train"]["seed"] == ablated["fast"].config["train"]["seed"]
        for key, want in ABLATION_VARIANTS[label].items():
            section, field = key.split(".")
            assert run.config[section][field] == want, (label, key, run.config[section][field])
        assert abs(store.metric_series(run.id)["val/loss"][1][-1] - loss[label]) <= 5e-4, label
        assert abs(float(secs) - (run.ended_at - run.started_at)) <= 0.05, (label, secs)

    # 3 · the profile: matmuls lead; both precisions timed
    table = re.findall(r"^(aten::\S+)\s+([\d.]+)\s+([\d.]+)%$", _stdout(_tagged(nb, "profile")), re.M)
    assert len(table) >= 5 and any(name == "aten::mm" for name, *_ in table[:3]), table
    shares = [float(s) for *_, s in table]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.5, shares
    gflop, mm_ms, rate = map(float, re.search(r"aten::mm: about ([\d.]+) GFLOP per step in ([\d.]+) ms = (\d+) GFLOP/s",
                                              _stdout(_tagged(nb, "profile"))).groups())
    assert 3.0 < gflop < 4.5 and abs(gflop / mm_ms * 1000 - rate) <= max(1.0, 0.05 * rate), (gflop, mm_ms, rate)
    dtype = _stdout(_tagged(nb, "dtype"))
    assert re.search(r"^native bf16: (True|False)$", dtype, re.M), dtype
    ms = dict(re.findall(r"^\s*(float32|bfloat16): ([\d.]+) ms per step$", dtype, re.M))
    assert set(ms) == {"float32", "bfloat16"} and all(float(v) > 0 for v in ms.values()), dtype

    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 8, (f"expected the schedules, val/loss by seconds and by steps, RoPE, activations, singular "
                               f"values, the ablation bars, the profile bars; got {len(figures)}")


CHECKS: dict[str, Callable[[nbformat.NotebookNode, Path], None]] = {
    "00_quickstart.ipynb": _check_quickstart,
    "02_attention.ipynb": _check_attention,
    "01_tokenization.ipynb": _check_tokenization,
    "03_objectives.ipynb": _check_objectives,
    "03b_xlnet_t5.ipynb": _check_xlnet_t5,
    "04_finetuning.ipynb": _check_finetuning,
    "05_speed.ipynb": _check_speed,
}


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path: Path) -> None:
    """Notebooks are committed without outputs, so diffs show only what a person wrote."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, wb_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest's wb_home has set WORKBENCH_HOME to an empty tmp folder; the kernel inherits os.environ
    assert os.environ["WORKBENCH_HOME"] == str(wb_home)
    # One intra-op thread in the kernel: the notebooks' models are tiny, and on a shared 2-core
    # runner two torch threads per process stall each other (measured: quickstart ~20 s with 1
    # thread, ~100 s with 2 while other processes were busy). Results do not depend on it.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    try:
        client.execute()  # raises CellExecutionError, with the traceback, on the first failing cell
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed copy, for looking at a failure
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    check = CHECKS.get(path.name)
    if check is not None:
        check(nb, wb_home)


# --- LiveLossPlot -----------------------------------------------------------------------------

def test_live_loss_plot_tracks_the_store(wb_home: Path) -> None:
    store = RunStore(wb_home)
    cfg = apply_overrides(get_preset("gpt-nano"), {"max_steps": 20, "eval_interval": 10, "log_interval": 5, "eval_chars": 2048})
    live = LiveLossPlot()
    run_id = train(cfg, store, callbacks=[live], progress=False)

    series = store.metric_series(run_id)
    traces = {t.name: t for t in live.figure.data}
    assert list(traces) == ["train/loss", "val/loss"]
    for name in ("train/loss", "val/loss"):
        steps, values = series[name]
        assert list(traces[name].x) == steps == live.steps(name)
        assert list(traces[name].y) == pytest.approx(values)
        assert live.values(name) == pytest.approx(values)
    assert live.steps("train/loss") == [5, 10, 15, 20]
    assert live.steps("val/loss") == [0, 10, 20]
    assert live.figure.layout.title.text.endswith("finished at step 20")


def test_live_loss_plot_shares_the_package_chart_and_replaces_relogged_steps() -> None:
    from workbench.plots import loss_figure

    live = LiveLossPlot(title="t")
    reference = loss_figure({"train/loss": ([], []), "val/loss": ([], [])}, title="t")
    assert [t.line.color for t in live.figure.data] == [t.line.color for t in reference.data]
    assert live.figure.layout.yaxis.title.text == reference.layout.yaxis.title.text

    live.add(10, {"train/loss": 3.0, "lr": 1e-3})  # other metrics are ignored
    live.add(10, {"train/loss": 2.5})  # a resumed run re-logs step 10
    live.add(0, {"val/loss": 4.0})
    assert list(live.figure.data[0].x) == [10] and list(live.figure.data[0].y) == [2.5]
    assert list(live.figure.data[1].x) == [0] and list(live.figure.data[1].y) == [4.0]
    assert WIDGET_MIME in live._repr_mimebundle_()

    with pytest.raises(ValueError, match="val/ppl"):
        LiveLossPlot(metrics=("val/ppl",))
