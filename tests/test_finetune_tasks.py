"""Built-in fine-tuning tasks (split by play, labels right) and user CSV/JSONL files."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from workbench.corpora import Corpus, Document, load_shakespeare
from workbench.finetune import TASKS, load_task, load_user_task, play_slug, sample_budget
from workbench.finetune.tasks import (SPLITS, TEST_PLAYS, VAL_PLAYS, QAExample, TextExample, TokenExample,
                                      genre_task, lowercase_words, names_task, play_names, qa_task, speeches)

SPEAKER_LINE = re.compile(r"^[A-Z][A-Z '&.,-]*:$", re.M)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_shakespeare()


@pytest.fixture(scope="module")
def built(corpus):
    times, tasks = {}, {}
    for name, make in TASKS.items():
        t = time.perf_counter()
        tasks[name] = make(corpus)
        times[name] = time.perf_counter() - t
    print({k: round(v, 2) for k, v in times.items()})
    return tasks, times


@pytest.fixture(scope="module")
def tasks(built):
    return built[0]


def test_named_plays_exist_and_slugs_are_unique(corpus):
    slugs = [play_slug(d.title) for d in corpus.documents]
    assert len(set(slugs)) == len(slugs)
    assert set(TEST_PLAYS + VAL_PLAYS) <= set(slugs)
    assert play_slug("Henry IV, Part I") == "henry-iv-part-1"


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_are_disjoint_by_play_and_named_plays_land_right(tasks, name):
    task = tasks[name]
    plays = {s: {e.play for e in task.split(s)} for s in SPLITS}
    assert plays["test"] == set(TEST_PLAYS)
    assert plays["val"] == set(VAL_PLAYS)
    assert not plays["train"] & (plays["val"] | plays["test"])
    assert len(plays["train"]) == 38 - 9
    assert all(task.split(s) for s in SPLITS)


def test_tasks_build_fast_and_are_deterministic(built, corpus):
    tasks, times = built
    assert max(times.values()) < 4.0, times  # ~1 s each on a quiet 2-core machine; slack for a busy one
    again = genre_task(corpus, seed=0)
    assert again.train == tasks["genre"].train
    assert genre_task(corpus, seed=1).train != again.train  # same passages, another order
    assert sorted(genre_task(corpus, seed=1).train, key=repr) == sorted(again.train, key=repr)


def test_genre_passages(tasks, corpus):
    task = tasks["genre"]
    assert task.kind == "classification" and task.labels == ["comedy", "history", "tragedy"]
    lengths = []
    for s in SPLITS:
        for e in task.split(s):
            assert isinstance(e, TextExample) and e.label in task.labels
            assert not SPEAKER_LINE.search(e.text), e.text
            lengths.append(len(e.text))
    assert sum(280 <= n <= 320 for n in lengths) / len(lengths) > 0.9
    assert max(lengths) < 2 * 320 and Counter(e.label for e in task.test).keys() == set(task.labels)
    # whole lines of the play, never a word cut in two, and each play fully covered, in order
    macbeth = next(d for d in corpus.documents if d.title == "Macbeth")
    lines = [line for _, speech in speeches(macbeth) for line in speech]
    in_order = sorted((e for e in task.test if e.play == "macbeth"), key=lambda e: "\n".join(lines).index(e.text))
    assert "\n".join(e.text for e in in_order) == "\n".join(lines)
    summary = task.summary()
    print(summary)
    assert "test:" in summary and "majority history 43.6%" in summary  # Henry V + Richard III are the biggest


def test_names_tags(tasks, corpus):
    task = tasks["names"]
    common = lowercase_words(corpus)
    names = {d: play_names(doc, common) for doc in corpus.documents if (d := play_slug(doc.title))}
    without = 0
    for s in SPLITS:
        for e in task.split(s):
            assert isinstance(e, TokenExample) and len(e.tokens) == len(e.tags)
            assert set(e.tags) <= {"O", "B-NAME", "I-NAME"}
            for i, tag in enumerate(e.tags):
                if tag == "I-NAME":
                    assert i and e.tags[i - 1] != "O", e
                if tag != "O":
                    assert e.tokens[i] in names[e.play].tokens
                if tag == "B-NAME" and (i + 1 == len(e.tags) or e.tags[i + 1] == "O"):
                    assert e.tokens[i] in names[e.play].words  # a name alone is a proper-noun word
            without += "B-NAME" not in e.tags
    total = sum(len(task.split(s)) for s in SPLITS)
    assert 0.2 < without / total < 0.3  # a quarter of lines name nobody
    pairs = {(tuple(e.tokens[i:i + 2]), tuple(e.tags[i:i + 2])) for e in task.train for i in range(len(e.tokens))}
    assert (("Mistress", "Ford"), ("B-NAME", "I-NAME")) in pairs  # a full two-word speaker name
    assert (("Romeo", ","), ("B-NAME", "O")) in pairs  # punctuation split off
    assert (("Capulet", "'s"), ("B-NAME", "O")) in pairs  # a surname alone, possessive split off
    romeo = [e for e in task.train if e.play == "romeo-and-juliet"]
    assert not any(t == "Nurse" and g != "O" for e in romeo for t, g in zip(e.tokens, e.tags))


def test_qa_answers(tasks):
    task = tasks["qa"]
    n = 0
    for s in SPLITS:
        for e in task.split(s):
            assert isinstance(e, QAExample)
            assert e.context[e.answer_start:e.answer_start + len(e.answer_text)] == e.answer_text
            quote = re.fullmatch(r'Who says "(.+)"\?', e.question).group(1)
            assert e.context.count(quote) == 1
            at = e.context.index(quote)
            labels = [m for m in re.finditer(r"(?:^|(?<=\n\n))([^\n]+):\n", e.context) if m.start() < at]
            assert labels[-1].start() == e.answer_start and labels[-1].group(1) == e.answer_text
            assert len(e.context) <= 600
            n += 1
    assert n > 5000


def test_qa_example_validates():
    with pytest.raises(ValueError, match="not at offset"):
        QAExample("Who?", "ROMEO:\nhi", 1, "ROMEO")


def test_small_corpus_builds():
    text = "ROMEO:\nO Juliet, fair Juliet!\nI come.\n\nJULIET:\nAy me, Romeo.\n\nNURSE:\nMadam! madam!"
    corpus = Corpus("c", [Document(text, "Macbeth", "tragedies"), Document(text, "Pericles", "romances")])
    names = names_task(corpus)
    assert [e.tags for e in names.test if e.tokens[:2] == ["O", "Juliet"]] == [
        ["O", "B-NAME", "O", "O", "B-NAME", "O"]]
    assert {e.label for e in genre_task(corpus, chars=30).train} == {"comedy"}
    assert qa_task(corpus).test[0].answer_text in {"ROMEO", "JULIET", "NURSE"}


# --- user data ------------------------------------------------------------------------------------

CSV_CLS = "text,label\n" + "".join(f'"row {i}, with a comma",{"pos" if i % 2 else "neg"}\n' for i in range(20))
CSV_TAG = "tokens,tags\n" + "".join(f"Ann met Bob {i},B-PER O B-PER O\n" for i in range(20))
JSONL_CLS = "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(20))
JSONL_TAG = "".join(json.dumps({"tokens": ["New", "York", str(i)], "tags": ["B-LOC", "I-LOC", "O"]}) + "\n"
                    for i in range(20))


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


@pytest.mark.parametrize("name, content, kind, labels", [
    ("a.csv", CSV_CLS, "classification", ["neg", "pos"]),
    ("a.csv", CSV_TAG, "tagging", ["O", "B-PER"]),
    ("a.jsonl", JSONL_CLS, "classification", ["a", "b"]),
    ("a.jsonl", JSONL_TAG, "tagging", ["O", "B-LOC", "I-LOC"]),
])
def test_user_files_load(tmp_path, name, content, kind, labels):
    task = load_user_task(write(tmp_path, name, content))
    assert task.kind == kind and task.labels == labels
    assert (len(task.train), len(task.val), len(task.test)) == (16, 2, 2)
    assert load_user_task(write(tmp_path, name, content), kind=kind).train == task.train  # seeded
    spec = ("jsonl:" if name.endswith("jsonl") else "csv:") + str(tmp_path / name)
    assert load_task(spec).train == task.train
    if kind == "classification":
        assert task.train[0].text.startswith(("row ", "t"))
    else:
        assert all(len(e.tokens) == len(e.tags) for e in task.train)


def test_user_split_column_is_kept(tmp_path):
    rows = "".join(f"x{i},{'ab'[i % 2]},{['train', 'val', 'test'][i % 3] if i > 5 else 'train'}\n" for i in range(30))
    task = load_user_task(write(tmp_path, "s.csv", "text,label,split\n" + rows))
    assert (len(task.train), len(task.val), len(task.test)) == (14, 8, 8)


def test_auto_split_keeps_rare_labels_in_train(tmp_path):
    rows = "".join(f"x{i},{'rare' if i == 7 else 'common'}\n" for i in range(20))
    task = load_user_task(write(tmp_path, "r.csv", "text,label\n" + rows))
    assert "rare" in {e.label for e in task.train}


BAD = [
    ("empty.csv", "", None, "empty"),
    ("blank.csv", "   \n\n", None, "empty"),
    ("nolabel.csv", "text,lbl\n" + "a,b\n" * 12, "classification", "missing column 'label'.*found columns: text, lbl"),
    ("guess.csv", "words,labels\n" + "a,b\n" * 12, None, "text,label.*tokens,tags.*found: words, labels"),
    ("notext.csv", "text,label\n" + "a,b\n" * 5 + " ,b\n" + "a,b\n" * 6, None, "row 7: the text is empty"),
    ("nolabel2.jsonl", '{"text": "a", "label": ""}\n', None, "line 1: the label is empty"),
    ("len.csv", "tokens,tags\n" + "a b,O O\n" * 3 + "a b c,O O\n", None, "row 5: 3 tokens but 2 tags"),
    ("len.jsonl", '{"tokens": ["a"], "tags": ["O", "O"]}\n', None, "line 1: 1 tokens but 2 tags"),
    ("bio.csv", "tokens,tags\n" + "a b,O PER\n", None, "tag 'PER' .*not in BIO form"),
    ("bio2.csv", "tokens,tags\n" + "a b,O I-PER\n", None, "does not continue.*start the entity with B-PER"),
    ("unseen.csv", "text,label,split\n" + "a,x,train\n" * 10 + "b,y,test\nb,z,val\n", None,
     "labels in the val split never appear in train: z"),
    ("few.csv", "text,label\n" + "a,b\n" * 3, None, "too few examples \\(3\\); give at least 10"),
    ("latin.csv", "text,label\ncaf\xe9,b\n".encode("latin-1"), None, "not UTF-8.*re-save it as UTF-8"),
    ("json.jsonl", '{"text": "a", "label": "b"}\n{oops\n', None, "line 2: not valid JSON"),
    ("arr.jsonl", '["a", "b"]\n', None, "line 1: expected a JSON object"),
    ("split.csv", "text,label,split\n" + "a,b,train\n" * 11 + "a,b,dev\n", None, "split 'dev' is not one of"),
    ("header.csv", "text,label\n", None, "no examples"),
]


@pytest.mark.parametrize("name, content, kind, message", BAD, ids=[b[0] for b in BAD])
def test_bad_user_files_say_what_to_fix(tmp_path, name, content, kind, message):
    with pytest.raises(ValueError, match=message):
        load_user_task(write(tmp_path, name, content), kind=kind)


def test_user_file_limits(tmp_path):
    with pytest.raises(ValueError, match="too big.*use fewer rows"):
        load_user_task(write(tmp_path, "big.csv", CSV_CLS), max_bytes=100)
    with pytest.raises(ValueError, match="no such file"):
        load_user_task(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="unknown task 'nope'.*csv:PATH"):
        load_task("nope")
    with pytest.raises(ValueError, match="cannot be read from a file"):
        load_user_task(write(tmp_path, "q.csv", CSV_CLS), kind="qa")


# --- label budgets --------------------------------------------------------------------------------

def test_sample_budget_balances_and_is_seeded(tasks):
    train = tasks["genre"].train
    picked = sample_budget(train, 99, seed=0)
    assert Counter(e.label for e in picked) == {"comedy": 33, "history": 33, "tragedy": 33}
    assert sample_budget(train, 99, seed=0) == picked
    assert sample_budget(train, 99, seed=1) != picked
    assert len(set(map(id, picked))) == 99
    assert Counter(e.label for e in sample_budget(train, 100)).most_common() [-1][1] == 33
    assert sample_budget(train, None) == train and sample_budget(train, "all") == train
    assert len(sample_budget(tasks["qa"].train, 50)) == 50  # other kinds: a plain seeded sample


def test_sample_budget_short_labels_and_overflow():
    examples = [TextExample(str(i), "rare" if i < 3 else "common") for i in range(50)]
    with pytest.warns(UserWarning, match="'rare' \\(3\\)"):
        picked = sample_budget(examples, 20)
    assert Counter(e.label for e in picked) == {"rare": 3, "common": 17}
    everything = sample_budget(examples, 500)
    assert sorted(everything, key=lambda e: int(e.text)) == examples  # more than there are: all, no error
    with pytest.raises(ValueError, match="whole number"):
        sample_budget(examples, -1)
