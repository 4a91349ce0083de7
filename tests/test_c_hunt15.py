"""Hunt 15 (h15c): is the README true? Regression tests for what a literal reading found."""
import json
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


#: Runs each script named on its command line as `python SCRIPT --help` and prints, as the last line of its
#: output, a JSON list of (exit code, stdout, stderr) for each.
_RUN_EACH_WITH_HELP = """
import contextlib, io, json, runpy, sys, traceback
results = []
for script in sys.argv[1:]:
    path, argv = list(sys.path), list(sys.argv)
    sys.argv, sys.path[0] = [script, "--help"], script.rsplit("/", 1)[0]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    sys.path[:], sys.argv = path, argv
    results.append((code, out.getvalue(), err.getvalue()))
print(json.dumps(results))
"""


def test_every_benchmark_script_the_readme_names_exists_and_answers_help():
    # the README names benchmarks/mil_ablation_table.py as the maker of a table; its `--help` was
    # read as the records file (FileNotFoundError: '--help', exit 1)
    scripts = _readme_benchmark_scripts()
    assert "benchmarks/mil_ablation_table.py" in scripts
    missing = [s for s in scripts if not (ROOT / s).is_file()]
    assert not missing, f"README names benchmark scripts that do not exist: {missing}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    # One Python process runs them all, one after another, each as `python benchmarks/X.py --help` would:
    # as __main__, with its own argv and its folder first on sys.path (restored after each). The --help runs
    # are mostly start-up and imports: 31 processes took about 7 s of CPU, one process takes 1.
    proc = subprocess.run([sys.executable, "-c", _RUN_EACH_WITH_HELP, *(str(ROOT / s) for s in scripts)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = []
    for s, (code, out, err) in zip(scripts, json.loads(proc.stdout.splitlines()[-1])):
        if code != 0 or "usage" not in (out + err).lower():
            failed.append(f"{s}: exit {code}: {(err or out).strip().splitlines()[-1:]}")
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
