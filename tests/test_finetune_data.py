"""finetune's data side without a model: files, filters, secrets, split, examples, config."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finetune.config import CONFIG_DIR, FinetuneConfig, dump_yaml, load_yaml
from finetune.data.examples import documents, fim_hole, pack, pack_examples, spread, tokenize_fim
from lsp_server.completion.prompt import FORMATS, PREFIX_ONLY, build_prompt, fim_example
from lsp_server.errors import CodetailorError
from lsp_server.repo.corpus import SourceFile, collect, deduplicate
from lsp_server.repo.files import list_files, split_files
from lsp_server.repo.secrets import redact
from tests.fixtures.repo import SECRETS, make_repo


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo") / "repo")


def test_collect_keeps_source_and_skips_everything_else(fixture_repo: Path) -> None:
    corpus = collect(fixture_repo)
    paths = [f.path for f in corpus.files]
    assert "pkg/mod05.py" in paths and "pkg/settings.py" in paths and "README.md" in paths
    for dropped in ("poetry.lock", "vendor/lib.py", "static.min.js", "bundle.js", "logo.py"):
        assert dropped not in paths
    assert "ignored.py" not in paths  # .gitignore'd, so git does not list it
    # Of an exact pair, the first by path is kept; the near copy goes too.
    assert ("pkg/copy_of_mod00.py" in paths) != ("pkg/mod00.py" in paths)
    assert "pkg/near_mod01.py" not in paths
    assert corpus.skipped == Counter(
        binary=1,
        duplicate_exact=1,
        duplicate_near=1,
        generated=1,
        lock_file=1,
        minified=1,
        not_source=1,
        vendored=1,
    )
    assert corpus.redactions == Counter(
        aws_key=1, password=1, token=1, high_entropy=1, private_key=1
    )
    text = "\n".join(f.text for f in corpus.files)
    for secret in SECRETS.values():
        assert secret not in text


def test_plain_folder_follows_gitignore(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "plain", git=False)
    (repo / "sub").mkdir()
    (repo / "sub" / ".gitignore").write_text("*.tmp.py\n")
    (repo / "sub" / "keep.py").write_text("x = 1\n")
    (repo / "sub" / "drop.tmp.py").write_text("x = 2\n")
    files = list_files(repo)
    assert "sub/keep.py" in files and "pkg/mod03.py" in files
    assert "ignored.py" not in files and "sub/drop.tmp.py" not in files


def test_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CodetailorError, match="is not a folder"):
        collect(tmp_path / "missing")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('password = "s3cr3t-pass"', "password"),
        ("API_KEY: 'abcd1234efgh'", "password"),
        ("SECRET_KEY=django-insecure-8f7d6s5a4", "password"),
        ('"client_secret": "Zx9-y8w7"', "password"),
        ("key = 'AKIAIOSFODNN7EXAMPLE'", "aws_key"),
        ("t = 'xoxb-123456789012-abcdefghij'", "token"),
        ("k = 'sk-proj-abcdefghijklmnopqrstuvwx'", "token"),
        ("url = 'https://user:hunter22@example.com/x'", "url_password"),
        ("blob = 'Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo'", "high_entropy"),
    ],
)
def test_redact_finds_secrets(text: str, kind: str) -> None:
    clean, found = redact(text)
    assert found == Counter({kind: 1}), (clean, found)


@pytest.mark.parametrize(
    "text",
    [
        "password = user.password",
        "password = get_password()",
        'password = ""',
        'password = "<your password here>"',
        "api_key = os.environ['API_KEY']",
        'eos_token = "</s>"',
        "def test_something_really_quite_long_name(): pass",
        "from pkg.module_with_long_name import SomeVeryLongClassName",
    ],
)
def test_redact_leaves_ordinary_code(text: str) -> None:
    assert redact(text) == (text, Counter())


def test_split_is_deterministic_and_stable() -> None:
    paths = [f"src/m{i}.py" for i in range(200)]
    train, held = split_files(paths, 0.2)
    assert sorted(train + held) == sorted(paths) and not set(train) & set(held)
    assert 20 < len(held) < 60
    # Adding files never moves an existing one to the other side.
    train2, held2 = split_files(paths + [f"new/n{i}.py" for i in range(50)], 0.2)
    assert set(held) <= set(held2) and set(train) <= set(train2)
    assert split_files(list(reversed(paths)), 0.2) == (train, held)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=8, unique=True))
def test_split_gives_both_sides_a_file(paths: list[str]) -> None:
    train, held = split_files(paths, 0.1)
    assert train and held and sorted(train + held) == sorted(paths)


def test_split_without_holdout_trains_on_everything() -> None:
    assert split_files(["a.py", "b.py"], 0.0) == (["a.py", "b.py"], [])


def test_near_duplicates_go_and_different_files_stay() -> None:
    body = "\n".join(f"def f{i}(x):\n    return x * {i} + helper(x, {i})" for i in range(40))
    files = [
        SourceFile("a.py", body),
        SourceFile("b.py", body + "\n# one more line\n"),
        SourceFile("c.py", body.replace("helper", "other").replace("return", "yield")),
    ]
    skipped: Counter[str] = Counter()
    kept = deduplicate(files, 0.85, skipped)
    assert [f.path for f in kept] == ["a.py", "c.py"] and skipped == Counter(duplicate_near=1)


def test_documents_use_the_servers_prompt_layout() -> None:
    fmt = FORMATS["starcoder"]
    text = "def add(a, b):\n    total = a + b\n    return total\n"
    holes = [
        documents(fmt, [("m.py", text)], seq_len=512, seed=seed, fim_rate=1.0).fim[0]
        for seed in range(40)
    ]
    named = [h for h in holes if h.prompt.startswith("<file_sep><fim_prefix>m.py\n")]
    assert named and len(named) < len(holes)  # some examples stand without a path
    for hole in holes:
        # The prompt is exactly the server's for the text around the hole, whose trailing
        # whitespace the server holds back and the middle starts with.
        head = "<file_sep><fim_prefix>m.py\n" if hole in named else "<fim_prefix>"
        assert hole.prompt.startswith(head) and hole.prompt.endswith(fmt.middle)
        prefix, suffix = hole.prompt[len(head) : -len(fmt.middle)].split(fmt.suffix)
        path = "m.py" if hole in named else None
        assert hole.prompt == build_prompt(fmt, prefix, suffix, path=path)
        assert prefix == prefix.rstrip() and hole.middle.strip()
        assert text.find(prefix + hole.middle + suffix) >= 0
    plain = documents(fmt, [("m.py", text)], seq_len=512, fim_rate=0.0)
    assert plain.plain == ["<file_sep>m.py\n" + text] and plain.fim == []


def test_holes_stand_where_a_cursor_asks() -> None:
    text = "".join(f"def f{i}(x):\n    y = x * {i}\n    return y + {i}\n\n" for i in range(30))
    rng = random.Random(1)
    holes = [fim_hole(text, rng) for _ in range(400)]
    assert all(h is not None for h in holes)
    starts = ends = 0
    for prefix, middle, suffix in (h for h in holes if h):
        assert text.find(prefix + middle + suffix) >= 0 and middle.strip()
        # The prefix ends where the server's prompt would (no trailing whitespace) ...
        assert prefix == prefix.rstrip()
        # ... and the hole ends at a line's end, as an editor's completion does.
        assert suffix == "" or suffix.startswith("\n")
        starts += middle.startswith("\n")
        ends += middle.count("\n") > 1
    assert 0.5 < starts / 400 < 0.9  # mostly at a line's start, sometimes inside it
    assert 0.2 < ends / 400 < 0.6  # a share of multi-line holes
    assert fim_hole("\n\n   \n", rng) is None


def test_a_chunk_gives_as_many_holes_as_asked_each_its_own() -> None:
    fmt = FORMATS["starcoder"]
    files = [(f"m{i}.py", "".join(f"v{j} = {i} * {j}\n" for j in range(30))) for i in range(8)]
    one = documents(fmt, files, seq_len=512, fim_rate=1.0)
    three = documents(fmt, files, seq_len=512, fim_rate=1.0, holes=3)
    assert len(one.fim) == 8 and len(three.fim) == 24 and not three.plain
    for i in range(8):
        holes = {(h.prompt, h.middle) for h in three.fim[3 * i : 3 * i + 3]}
        assert len(holes) > 1  # drawn apart, not the same hole three times
    with pytest.raises(CodetailorError, match="fim_holes must be at least 1"):
        FinetuneConfig.from_dict({"repo": ".", "out": "o", "fim_holes": 0}).validate()


def test_fim_examples_keep_their_prompt_whole_and_learn_the_middle() -> None:
    class Chars:
        """A tokenizer with one id per character."""

        def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
            return {"input_ids": [[ord(c) for c in t] for t in texts]}

    fmt = FORMATS["starcoder"]
    text = "def add(a, b):\n    total = a + b\n    return total\n"
    fim = documents(fmt, [("m.py", text)], seq_len=512, fim_rate=1.0).fim
    pairs = tokenize_fim(Chars(), fim, eos_id=0)
    assert pairs[0] == ([ord(c) for c in fim[0].prompt], [*(ord(c) for c in fim[0].middle), 0])
    blocks = pack_examples(pairs * 3, seq_len=10_000)
    assert len(blocks.ids) == 1 and blocks.labels is not None
    learned = [t for t in blocks.labels[0] if t != -100]
    assert learned == pairs[0][1] * 3


def test_spm_variant_and_prefix_only() -> None:
    fmt = FORMATS["starcoder"]
    spm = fim_example(fmt, "PRE", "MID", "SUF", spm=True)
    assert spm == "<fim_prefix><fim_suffix>SUF<fim_middle>PREMID"
    with_path = fim_example(fmt, "PRE", "MID", "SUF", spm=True, path="m.py")
    assert with_path == "<file_sep><fim_prefix><fim_suffix>SUF<fim_middle>m.py\nPREMID"
    codestral = FORMATS["codestral"]
    assert fim_example(codestral, "P", "M", "S") == build_prompt(codestral, "P", "S") + "M"
    docs = documents(PREFIX_ONLY, [("a/b.py", "x = 1\n")], seq_len=64, fim_rate=1.0)
    assert docs.plain == ["# a/b.py\nx = 1\n"] and docs.fim == []
    docs = documents(PREFIX_ONLY, [("data.json", "{}\n")], seq_len=64)
    assert docs.plain == ["{}\n"]  # JSON has no comments: no header


def test_fim_choices_are_seeded_per_file() -> None:
    fmt = FORMATS["starcoder"]
    files = [(f"m{i}.py", f"x = {i}\n" * 20) for i in range(10)]
    a = documents(fmt, files, seq_len=64, seed=3, fim_rate=0.5)
    b = documents(
        fmt, files[:5] + [("extra.py", "y = 0\n")] + files[5:], seq_len=64, seed=3, fim_rate=0.5
    )
    assert [d for d in b.plain if "extra.py" not in d] == a.plain
    assert [d for d in b.fim if "extra.py" not in d.prompt] == a.fim
    assert a.plain and a.fim


def test_long_files_are_cut_into_block_sized_documents() -> None:
    text = "".join(f"line_{i} = {i}\n" for i in range(400))
    docs = documents(PREFIX_ONLY, [("big.py", text)], seq_len=64).plain
    assert len(docs) > 5 and all(d.startswith("# big.py\n") for d in docs)
    assert "".join(d.removeprefix("# big.py\n") for d in docs) == text


def test_pack_and_spread() -> None:
    blocks = pack([[1, 2, 3], [4, 5, 6, 7], [8]], seq_len=3, pad_id=0)
    assert blocks.ids == [[1, 2, 3], [4, 5, 6], [7, 8, 0]]
    assert blocks.lengths == [3, 3, 2] and blocks.tokens == 8
    assert spread(blocks, 2).ids == [[1, 2, 3], [4, 5, 6]]
    assert blocks.fingerprint() != pack([[1, 2, 3]], 3, 0).fingerprint()


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_yaml_loads_and_validates(path: Path) -> None:
    cfg = FinetuneConfig.from_dict(load_yaml(path) | {"repo": ".", "out": "x"}).validate()
    assert cfg.seq_len >= 16


def test_bundled_recipes_exist() -> None:
    names = {p.name for p in CONFIG_DIR.glob("*.yaml")}
    assert {"debug.yaml", "qwen2.5-coder-1.5b.yaml"} <= names
    assert load_yaml("debug.yaml")["device"] == "cpu"  # found by name
    assert load_yaml("qwen2.5-coder-1.5b.yaml")["model"] == "Qwen/Qwen2.5-Coder-1.5B"


def test_config_reports_every_problem_at_once() -> None:
    cfg = FinetuneConfig(repo=".", out="x", holdout=1.5, lora_r=0, lr=-1.0)
    with pytest.raises(CodetailorError) as err:
        cfg.validate()
    message = str(err.value)
    assert "holdout" in message and "lora_r" in message and "lr" in message
    assert "\n" not in message
    with pytest.raises(CodetailorError, match="patience"):
        FinetuneConfig(repo=".", out="x", holdout=0.0, match_samples=0).validate()
    with pytest.raises(CodetailorError, match="unknown config key"):
        FinetuneConfig.from_dict({"lora_rank": 4})


def test_config_coerces_yaml_values_and_round_trips(tmp_path: Path) -> None:
    cfg = FinetuneConfig.from_dict({"lr": "3e-4", "max_steps": "40", "target_modules": "q_proj"})
    assert cfg.lr == 3e-4 and cfg.max_steps == 40 and cfg.target_modules == ["q_proj"]
    saved = tmp_path / "c.yaml"
    saved.write_text(dump_yaml(cfg))
    assert FinetuneConfig.from_dict(load_yaml(saved)) == cfg
    assert "# peak learning rate" in saved.read_text()


def test_every_config_field_has_help() -> None:
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(FinetuneConfig))


def test_importing_finetune_is_cheap() -> None:
    code = (
        "import sys, finetune, finetune.cli, finetune.train, finetune.config;"
        "import lsp_server.repo.corpus;"
        "heavy = ('torch', 'transformers', 'peft', 'accelerate');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize(
    "path", sorted((CONFIG_DIR / "accelerate").glob("*.yaml")), ids=lambda p: p.name
)
def test_accelerate_configs_load(path: Path) -> None:
    import yaml

    config = yaml.safe_load(path.read_text())
    assert config["distributed_type"] == "FSDP"
    assert config["fsdp_config"]["fsdp_use_orig_params"] is True  # needed with LoRA


def test_lr_warms_up_then_decays_to_the_floor() -> None:
    from finetune.schedule import lr_schedule

    f = lr_schedule(100, 0.1, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert all(f(i) >= f(i + 1) for i in range(10, 99))
    assert f(100) == pytest.approx(0.1)


def test_block_order_visits_every_block_once_per_epoch() -> None:
    from finetune.schedule import BlockOrder

    order = BlockOrder(7, seed=1)
    first, second = order.rows(0, 7), order.rows(7, 7)
    assert sorted(first) == sorted(second) == list(range(7)) and first != second
    assert BlockOrder(7, seed=1).rows(5, 4) == (first + second)[5:9]  # a function of position
