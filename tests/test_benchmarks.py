"""The benchmark command's storage of partial runs."""

import json

import benchmarks.__main__ as cli


def test_store_merges_partial_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(cli, "REPOSITORY", tmp_path.parent)
    monkeypatch.setattr(cli, "describe_machine", lambda: {"date": "2026-12-05", "cpu": "Test CPU", "gpus": []})

    cli._store("accuracy", [{"topic": "a", "value": 1}], "python -m benchmarks accuracy --only a")
    cli._store("accuracy", [{"topic": "b", "value": 2}], "python -m benchmarks accuracy --only b")
    cli._store("accuracy", [{"topic": "a", "value": 3}], "python -m benchmarks accuracy --only a")

    stored = json.loads((tmp_path / "accuracy-cpu.json").read_text(encoding="utf-8"))
    assert stored["command"] == "python -m benchmarks accuracy --only b; python -m benchmarks accuracy --only a"
    assert sorted((row["topic"], row["value"]) for row in stored["rows"]) == [("a", 3), ("b", 2)]
    assert {row["measured on"] for row in stored["rows"]} == {"2026-12-05, Test CPU"}
