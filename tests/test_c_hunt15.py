"""Hunt 15 (h15c): is the README true? Regression tests for what a literal reading found."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_benchmark_scripts() -> list[str]:
    # the README and the reference pages it links (docs/*.md)
    text = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    return sorted(set(re.findall(r"benchmarks/[a-z_0-9]+\.py", text)))


def test_every_benchmark_script_the_readme_names_exists_and_answers_help():
    # the README names benchmarks/mil_ablation_table.py as the maker of a table; its `--help` was
    # read as the records file (FileNotFoundError: '--help', exit 1)
    scripts = _readme_benchmark_scripts()
    assert "benchmarks/mil_ablation_table.py" in scripts
    missing = [s for s in scripts if not (ROOT / s).is_file()]
    assert not missing, f"README names benchmark scripts that do not exist: {missing}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    failed = []
    for i in range(0, len(scripts), 4):  # a few at a time: the --help runs are mostly start-up
        procs = [(s, subprocess.Popen([sys.executable, str(ROOT / s), "--help"], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for s in scripts[i:i + 4]]
        for s, p in procs:
            out, err = p.communicate(timeout=120)
            if p.returncode != 0 or "usage" not in (out + err).lower():
                failed.append(f"{s}: exit {p.returncode}: {(err or out).strip().splitlines()[-1:]}")
    assert not failed, "\n".join(failed)


def test_train_on_features_of_a_newer_weakstil_says_upgrade_not_embed_again(tmp_path):
    # README (Per-slide files): a file of a newer schema version is refused with one error line;
    # its fix must be to upgrade, as every reader of the file says. The cohort check said "embed
    # these slides again", which would throw away a newer version's features.
    import h5py
    import pytest
    from legacy_files import write_features
    from weakstil.cohort import CohortError, read_cohort

    features = tmp_path / "features"
    features.mkdir()
    for sid in ("S1", "S2"):
        write_features(features / f"{sid}.h5")
        with h5py.File(features / f"{sid}.h5", "a") as f:
            f.attrs["kind"] = "features"
            f.attrs["schema_version"] = 99
        (tmp_path / f"{sid}.svs").write_bytes(b"not read")
    csv = tmp_path / "cohort.csv"
    csv.write_text("slide_id,path,stil\nS1,S1.svs,10\nS2,S2.svs,40\n")
    with pytest.raises(CohortError) as err:
        read_cohort(csv, features_dir=features)
    assert "schema version 99" in err.value.message
    assert "upgrade weakstil" in err.value.fix and "embed" not in err.value.fix
