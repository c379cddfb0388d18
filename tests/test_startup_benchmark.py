"""benchmarks/startup.py runs end to end on the tiny model and reports every number it promises."""

import pytest

from benchmarks import startup

pytestmark = pytest.mark.slow  # full tier: it runs the command line in fresh interpreters


def test_startup_benchmark_runs(tmp_path, capsys):
    report = startup.main(["--rounds", "1", "--json", str(tmp_path / "startup.json")])
    assert report["import jinav3.encoder"]["jinav3.encoder"] > 0 and "torch" in report["import jinav3.encoder"]
    assert "peft" not in report["import jinav3.encoder"]  # peft is imported where an adapter folder loads
    assert report["jinav3 --help"] > 0 and report["jinav3 search"] > 0
    printed = capsys.readouterr().out
    assert "jinav3 --help" in printed and "jinav3 search" in printed and (tmp_path / "startup.json").is_file()
