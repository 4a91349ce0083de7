"""The workflow's preflight (weakstil/pipeline_preflight.py, weakstil/slurm_cluster.py): the
cluster parsed from `scontrol` outputs captured on a real single-node SLURM 22.05 (tests/data/slurm,
made by pipelines/slurm/setup_localhost.sh with one fake GPU and without), each kind of job checked
against it, the cohort/encoder/tumour-bed checks, `weakstil preflight`, and the Snakefile stopping
before the first sbatch with a fake scontrol on PATH."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import snakemake_fork
from conftest import ROOT, TEST_DATA, importorskip_slurm_plugin, run_cli
from weakstil.files import TilesFile
import weakstil.pipeline_preflight as preflight
from weakstil.errors import WeakSTILError
from weakstil.pipeline_preflight import (ENCODER_PARAMS_M, PreflightError, check_cohort, check_encoder,
                                         check_slurm, check_tumorbed, embed_mem_mb, job_requests,
                                         load_workflow_config, memory_resource, train_mem_mb)
from weakstil.slurm_cluster import (JobRequest, check_request, parse_cluster, parse_gres, parse_nodes,
                                    parse_oneliner, parse_partitions, parse_time_minutes)

CAPTURED = TEST_DATA / "slurm"
DEFAULTS = ROOT / "pipelines" / "config.yaml"


@pytest.fixture(autouse=True)
def no_memory_caps(monkeypatch):
    """check_slurm records each partition's largest node for `auto` memory: none across tests."""
    monkeypatch.setattr(preflight, "PARTITION_MEMORY_MB", {})


def captured(kind: str) -> tuple[str, str]:
    return ((CAPTURED / f"partitions_{kind}.txt").read_text(), (CAPTURED / f"nodes_{kind}.txt").read_text())


def workflow_config(tmp_path: Path, *overrides: str, files: tuple[Path, ...] = ()) -> dict:
    return load_workflow_config([DEFAULTS, *files], [f"cohort={cohort_csv(tmp_path)}", "folds=3", *overrides])


def cohort_csv(tmp_path: Path, groups: tuple[str, ...] = ("a", "b", "c", "a"), header: str = "slide_id,path,stil,group",
               stil: str = "12.5") -> Path:
    """A cohort CSV whose slide files exist: tiny tiled TIFFs stating 0.5 µm/px (the preflight opens
    cohort slides, it reads no pixels)."""
    import tifffile

    csv = tmp_path / "cohort.csv"
    if not csv.exists():
        rows = [header]
        for i, g in enumerate(groups):
            tifffile.imwrite(tmp_path / f"s{i}.tiff", np.full((32, 32, 3), 255, np.uint8), tile=(16, 16),
                             photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
            rows.append(f"s{i},s{i}.tiff,{stil},{g}" if "group" in header else f"s{i},s{i}.tiff,{stil}")
        csv.write_text("\n".join(rows) + "\n")
    return csv


# --- parsing captured outputs ---------------------------------------------------------------
def test_captured_cluster_with_a_fake_gpu_parses() -> None:
    cluster = parse_cluster(*captured("fakegpu"))
    assert set(cluster.partitions) == {"cpu", "gpu"}
    assert cluster.partitions["cpu"].default and not cluster.partitions["gpu"].default
    assert cluster.partitions["gpu"].max_time_min is None and cluster.partitions["gpu"].state == "UP"
    (node,) = cluster.nodes.values()
    assert (node.cpus, node.memory_mb, node.gpus, node.partitions) == (2, 21695, {"": 1}, ("cpu", "gpu"))
    assert node.usable and node.state == "IDLE"


def test_captured_cluster_without_gpus_parses() -> None:
    cluster = parse_cluster(*captured("nogpu"))
    (node,) = cluster.nodes.values()
    assert node.gpus == {} and node.gpu_count == 0 and cluster.nodes_of("gpu") == [node]


def test_oneliner_values_with_spaces_and_equals_signs() -> None:
    (rec,) = parse_oneliner(captured("fakegpu")[1])
    assert rec["OS"].startswith("Linux ") and "#1 SMP" in rec["OS"]  # spaces inside a value
    assert rec["CfgTRES"] == "cpu=2,mem=21695M,billing=2,gres/gpu=1"  # '=' inside a value
    assert rec["AllocTRES"] == "" and rec["RealMemory"] == "21695"


@pytest.mark.parametrize(("text", "gpus"), [
    ("(null)", {}), ("gpu:1", {"": 1}), ("gpu:a100:4(S:0-1)", {"a100": 4}),
    ("gpu:a100:2(S:0,2),gpu:v100:2(S:1)", {"a100": 2, "v100": 2}), ("gpu:tesla:2,mps:100,shard:8", {"tesla": 2}),
    ("gpu", {"": 1}), ("gpu:h100", {"h100": 1}),
])
def test_gres_strings(text: str, gpus: dict) -> None:
    assert parse_gres(text) == gpus


@pytest.mark.parametrize(("text", "minutes"), [("UNLIMITED", None), ("INFINITE", None), ("2-00:00:00", 2880),
                                               ("12:30:00", 750), ("30:00", 30.0), ("90", 90), ("1-1", 1500),
                                               ("1-01:30", 1530)])
def test_time_limits(text: str, minutes) -> None:
    assert parse_time_minutes(text) == minutes


def test_nodes_and_partition_limits_of_a_bigger_cluster() -> None:
    parts = parse_partitions(
        "PartitionName=short MaxTime=01:00:00 MaxMemPerNode=64000 MaxCPUsPerNode=16 State=UP Default=YES Nodes=c[1-2]\n"
        "PartitionName=a100 MaxTime=2-00:00:00 MaxMemPerCPU=8000 State=DRAIN Nodes=g1\n")
    assert parts["short"].max_time_min == 60 and parts["short"].max_mem_per_node_mb == 64000
    assert parts["a100"].max_mem_per_cpu_mb == 8000 and parts["a100"].state == "DRAIN"
    nodes = parse_nodes("NodeName=g1 CPUTot=32 RealMemory=512000 Gres=gpu:a100:4(S:0-1) State=DOWN* Partitions=a100\n"
                        "NodeName=c1 CPUTot=64 RealMemory=256G State=IDLE+DRAIN Partitions=short\n")
    assert nodes["g1"].gpus_of("A100") == 4 and nodes["g1"].gpus_of("v100") == 0 and not nodes["g1"].usable
    assert nodes["c1"].memory_mb == 256 * 1024 and not nodes["c1"].usable


# --- checking job requests ------------------------------------------------------------------
def test_default_config_fits_the_fake_gpu_node_but_not_a_node_without_gpus(tmp_path: Path) -> None:
    """The issue's case: the default config asks a GPU per embed job; on a cluster without
    GPUs that is one clear error naming the key (before: sbatch refused every embed job)."""
    config = workflow_config(tmp_path)
    assert check_slurm(config, parse_cluster(*captured("fakegpu"))) == []
    with pytest.raises(PreflightError) as err:
        check_slurm(config, parse_cluster(*captured("nogpu")))
    line = err.value.one_line()
    assert "the embed jobs ask 1 GPU per job but partition 'gpu' (slurm.gpu_partition) has no GPUs" in line
    assert "Fix: set slurm.gpus_per_embed: 0 to run them on CPUs" in line and "\n" not in line


def test_readme_cluster_configs(tmp_path: Path) -> None:
    """The README's two `slurm:` sections: the CPU one fits a cluster without GPUs, the GPU one
    needs GPUs, and neither asks more memory or CPUs than the 2-CPU test node has."""
    slurm_dir = ROOT / "pipelines" / "slurm"
    cpu = workflow_config(tmp_path, files=(slurm_dir / "cpu_cluster.yaml",))
    gpu = workflow_config(tmp_path, files=(slurm_dir / "gpu_cluster.yaml",))
    assert check_slurm(cpu, parse_cluster(*captured("nogpu"))) == []
    assert check_slurm(gpu, parse_cluster(*captured("fakegpu"))) == []
    with pytest.raises(PreflightError, match="has no GPUs"):
        check_slurm(gpu, parse_cluster(*captured("nogpu")))
    readme = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    for name in ("cpu_cluster.yaml", "gpu_cluster.yaml"):
        assert f"pipelines/slurm/{name}" in readme


def test_every_problem_names_its_setting(tmp_path: Path) -> None:
    config = workflow_config(tmp_path, "threads=4", "slurm={mem_mb: 64000, gpu_partition: a100q, runtime: 90}")
    parts, nodes = captured("fakegpu")
    cluster = parse_cluster(parts.replace("MaxTime=UNLIMITED", "MaxTime=01:00:00"), nodes)
    with pytest.raises(PreflightError) as err:
        check_slurm(config, cluster)
    line = err.value.one_line()
    assert line.startswith("4 problems:") or line.startswith("5 problems:"), line
    assert "ask 64000 MB of memory but the largest node of partition 'cpu' has 21695 MB" in line
    assert "set slurm.mem_mb to 21695 or less" in line
    assert "the train job asks 4 CPUs but the nodes of partition 'cpu' have at most 2 (fix: set threads to 2" in line
    assert "asks 240 min but partition 'cpu' allows at most 60 min (fix: set slurm.train_runtime to 60" in line
    assert "partition 'a100q' (slurm.gpu_partition, for the embed jobs) does not exist" in line
    assert "set slurm.gpu_partition to one of cpu, gpu" in line


def test_gpu_model_and_count() -> None:
    cluster = parse_cluster("PartitionName=gpu State=UP Nodes=g1\nPartitionName=big State=UP Nodes=g2\n",
                            "NodeName=g1 CPUTot=16 RealMemory=100000 Gres=gpu:v100:2 State=IDLE Partitions=gpu\n"
                            "NodeName=g2 CPUTot=16 RealMemory=100000 Gres=gpu:a100:8 State=IDLE Partitions=big\n")
    embed = JobRequest(("embed",), "gpu", 4, 8000, 60, gpus=1, gpu_model="a100",
                       keys={"partition": "slurm.gpu_partition", "gpus": "slurm.gpus_per_embed"})
    (problem,) = check_request(embed, cluster)
    assert "ask 1 GPU (a100) per job but partition 'gpu' (slurm.gpu_partition) has no a100 GPUs" in problem.message
    assert "slurm.gpu_partition to a partition with them: big" in problem.fix
    assert check_request(JobRequest(("embed",), "gpu", 4, 8000, 60, gpus=2, gpu_model="v100"), cluster) == []
    (problem,) = check_request(JobRequest(("embed",), "gpu", 4, 8000, 60, gpus=3, gpu_model="v100"), cluster)
    assert "has at most 2 v100 GPUs per node" in problem.message and "to 2 or less" in problem.fix
    drained = parse_cluster("PartitionName=gpu State=DRAIN Nodes=g1\n", "NodeName=g1 CPUTot=16 RealMemory=1000\n")
    (problem,) = check_request(embed, drained)
    assert "is DRAIN and takes no jobs" in problem.message


# --- memory sizing --------------------------------------------------------------------------
def test_encoder_table_matches_the_networks() -> None:
    """The parameter counts that size embed jobs without importing torch are the real ones."""
    import torch

    from weakstil.encoders.cards import builtin_card_names, load_card
    from weakstil.encoders.factory import build_model

    assert set(ENCODER_PARAMS_M) == set(builtin_card_names())
    for name, params_m in ENCODER_PARAMS_M.items():
        with torch.device("meta"):
            model = build_model(load_card(name))
        assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=0.06), name


def test_slurm_defaults_are_the_workflow_config():
    """pipelines/config.yaml's `slurm:` section and the defaults for keys a config leaves out agree."""
    assert yaml.safe_load(DEFAULTS.read_text())["slurm"] == preflight.DEFAULT_SLURM


def test_memory_is_sized_from_the_work(tmp_path: Path) -> None:
    assert embed_mem_mb(ENCODER_PARAMS_M["small-cnn"], 256) == 2000  # measured peak 1.1 GB
    assert embed_mem_mb(ENCODER_PARAMS_M["uni"], 1024) == 5500  # measured peak 4.6 GB
    assert embed_mem_mb(ENCODER_PARAMS_M["uni"], 1024, n_tiles=100_000) > embed_mem_mb(ENCODER_PARAMS_M["uni"], 1024)
    assert train_mem_mb(0) == 2000 and train_mem_mb(10_000) == 17000

    tiles = TilesFile(coords=np.zeros((100_000, 2), np.int64), tissue_fraction=np.ones(100_000, np.float32),
                      tissue_mask=np.ones((8, 8), bool), tissue_mask_mpp=8.0).write(tmp_path / "s0.h5")
    config = workflow_config(tmp_path, "encoder=uni")
    embed = memory_resource(config, "embed")
    inputs = type("Input", (), {"tiles": str(tiles), "size_mb": 3000.0})()
    assert embed(None, inputs) == 6000  # 5140 for the weights, 819 for 100,000 1024-d features
    assert memory_resource(config, "train")(None, inputs) == 6500
    assert memory_resource(workflow_config(tmp_path, "slurm={embed_mem_mb: 12000}"), "embed") == 12000
    with pytest.raises(PreflightError, match="slurm.train_mem_mb is 'lots', not a number of MB or 'auto'"):
        memory_resource(workflow_config(tmp_path, "slurm={train_mem_mb: lots}"), "train")
    # on SLURM, `auto` never asks more than the partition's largest node has (SLURM would refuse it)
    huge = type("Input", (), {"tiles": str(tiles), "size_mb": 100_000.0})()
    assert memory_resource(config, "train")(None, huge) == 152000
    check_slurm(config, parse_cluster(*captured("fakegpu")))
    assert preflight.PARTITION_MEMORY_MB == {"cpu": 21695, "gpu": 21695}
    assert memory_resource(config, "train")(None, huge) == 21695 and embed(None, inputs) == 6000
    # no default asks more than the 2-CPU, 21.7 GB test node has
    for request in job_requests(workflow_config(tmp_path, "score_slides=[x.tiff]", "annotations=ann",
                                                "tumorbed=train")):
        assert request.mem_mb <= 4000 and request.cpus <= 2, request
    # a score slide outside the cohort has jobs of its own: its tiles on the CPUs, embedding and bed with the GPUs
    rules = {r.rules: r.gpus for r in job_requests(workflow_config(tmp_path, "score_slides=[x.tiff]", "slurm={gpus_per_embed: 1}"))}
    assert rules[("embed", "score_slide")] == 1 and rules[("tile", "score_slide_tiles", "evaluate", "report")] == 0
    assert ("embed",) in {r.rules for r in job_requests(workflow_config(tmp_path))}


# --- cohort, encoder, tumour bed ------------------------------------------------------------
def test_cohort_checks(tmp_path: Path) -> None:
    with pytest.raises(PreflightError) as err:
        check_cohort(workflow_config(tmp_path, "folds=5"))
    assert "the cohort has 3 groups in column 'group' but folds is 5" in err.value.one_line()
    assert "Fix: set folds to 3 or fewer, or group_column: none to split by slide" in err.value.one_line()
    assert len(check_cohort(workflow_config(tmp_path, "folds=4", "group_column=none"))) == 4
    with pytest.raises(PreflightError, match=r"missing column centre \(the group_column\)"):
        check_cohort(workflow_config(tmp_path, "group_column=centre"))
    with pytest.raises(PreflightError, match="missing column centre"):  # named in train_extra
        check_cohort(workflow_config(tmp_path, "train_extra='--group-column centre'"))
    with pytest.raises(PreflightError, match="folds is 1"):
        check_cohort(workflow_config(tmp_path, "folds=1"))
    with pytest.raises(WeakSTILError, match="missing.csv: cohort CSV not found"):
        check_cohort(workflow_config(tmp_path, f"cohort={tmp_path / 'missing.csv'}"))
    (tmp_path / "s2.tiff").unlink()
    with pytest.raises(PreflightError, match=r"row 4 \(s2\): file not found s2.tiff.*the `cohort` key"):
        check_cohort(workflow_config(tmp_path))


def test_misspelt_config_keys_are_named_not_ignored(tmp_path: Path) -> None:
    from weakstil.pipeline_preflight import check_keys

    check_keys(workflow_config(tmp_path))  # the defaults themselves
    for override, says in (("annotaions=ann", "unknown config key 'annotaions' (did you mean 'annotations'?)"),
                           ("fold=2", "'fold' (did you mean 'folds'?)"),
                           ("slurm={partiton: x}", "unknown config key 'slurm.partiton' (did you mean "
                                                   "'slurm.partition'?)")):
        with pytest.raises(PreflightError) as err:
            check_keys(workflow_config(tmp_path, override))
        assert says in err.value.one_line() and "pipelines/config.yaml" in err.value.one_line()


def test_bad_labels(tmp_path: Path) -> None:
    cohort_csv(tmp_path, stil="120")
    with pytest.raises(PreflightError, match="4 bad rows: row 2 \\(s0\\): stil 120 is outside 0-100"):
        check_cohort(workflow_config(tmp_path))


def test_encoder_checks(tmp_path: Path) -> None:
    check_encoder(workflow_config(tmp_path))  # small-cnn, random weights
    with pytest.raises(PreflightError, match="unknown encoder 'resnet9000'.*the `encoder` key"):
        check_encoder(workflow_config(tmp_path, "encoder=resnet9000"))
    with pytest.raises(PreflightError, match="nowhere.safetensors: encoder weights file not found"):
        check_encoder(workflow_config(tmp_path, "weights=nowhere.safetensors"))
    with pytest.raises(PreflightError, match="encoder 'small-cnn' has no published weights and `weights` is null"):
        check_encoder(workflow_config(tmp_path, "weights=null"))


def test_hub_weights_must_be_in_the_cache(tmp_path: Path, monkeypatch) -> None:
    """A hub encoder whose weights are not cached would make every embed job download them."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    config = workflow_config(tmp_path, "encoder=uni", "weights=null")
    with pytest.raises(PreflightError) as err:
        check_encoder(config)
    line = err.value.one_line()
    assert line.startswith("encoder 'uni': the weights of hf-hub:MahmoodLab/uni are not in the Hugging Face cache")
    assert "Fix: download them once" in line and "hf download MahmoodLab/uni" in line
    # as `hf download` leaves them: refs/main names the snapshot holding the file
    repo = cache / "models--MahmoodLab--uni"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "pytorch_model.bin").write_bytes(b"")
    check_encoder(config)


def test_tumorbed_checks(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="annotations folder not found"):
        check_tumorbed({"annotations": str(tmp_path / "none")}, ["s0"])
    with pytest.raises(PreflightError, match="tumorbed is 'train' but annotations is not set"):
        check_tumorbed({"tumorbed": "train"}, ["s0"])
    (tmp_path / "ann").mkdir()
    with pytest.raises(PreflightError, match="no cohort slide has an outline"):
        check_tumorbed({"tumorbed": "train", "annotations": str(tmp_path / "ann")}, ["s0"])
    # annotations that outline no cohort slide are misnamed (else every bed were the whole tissue, silently)
    (tmp_path / "ann" / "s0 annotations.geojson").write_text("{}")
    with pytest.raises(PreflightError, match="no cohort slide has an outline"):
        check_tumorbed({"annotations": str(tmp_path / "ann")}, ["s0"])
    (tmp_path / "ann" / "s0.svs.geojson").write_text("{}")  # QuPath names an export after the image file
    check_tumorbed({"annotations": str(tmp_path / "ann")}, ["s0"])
    (tmp_path / "ann" / "s0.geojson").write_text("{}")
    check_tumorbed({"tumorbed": "train", "annotations": str(tmp_path / "ann")}, ["s0"])
    with pytest.raises(PreflightError, match="not a tumour-bed detector"):
        check_tumorbed({"tumorbed": str(tmp_path / "ann")}, ["s0"])
    mil = tmp_path / "model"  # an MIL model folder given as the detector: refused before any job
    mil.mkdir()
    (mil / "model.json").write_text('{"kind": "weakstil-mil", "format_version": 1}')
    (mil / "model.safetensors").write_bytes(b"")
    with pytest.raises(PreflightError, match="kind 'weakstil-mil', not a tumour-bed detector.*`tumorbed` key"):
        check_tumorbed({"tumorbed": str(mil)}, ["s0"])


# --- the command and the Snakefile ----------------------------------------------------------
def test_preflight_refuses_and_warns_of_score_slides_as_the_workflow_does(tmp_path: Path, monkeypatch) -> None:
    """Outside fault hunt 7C #3: `weakstil preflight` passed a score slide with a cohort slide's id, or two
    score slides with one id, which the run refuses; and said nothing of unreadable score slides."""
    csv = cohort_csv(tmp_path)
    monkeypatch.chdir(tmp_path)  # score_slides are relative to the directory Snakemake runs in
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "s0.tiff").write_bytes(b"")  # a copy named like a cohort slide
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.tiff").write_bytes(b"")
    (tmp_path / "new" / "text.svs").write_text("not a slide")
    common = ["--config", f"cohort={csv}", "--config", "folds=3", "--config", "threads=1"]
    for listed in ("[other/s0.tiff]", "[new/a.tiff, other/a.tiff]"):
        if "other/a.tiff" in listed:
            (tmp_path / "other" / "a.tiff").write_bytes(b"")
        bad = run_cli("preflight", *common, "--config", f"score_slides={listed}")
        (line,) = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
        assert bad.returncode == 1 and "both have the slide id" in line and "Fix: rename one of the files" in line
    ok = run_cli("preflight", *common, "--config", "score_slides=[new/text.svs]")
    assert ok.returncode == 0, ok.stderr
    assert "warning: " in ok.stdout and "text.svs (score_slides)" in ok.stdout and "gets an error row" in ok.stdout


def test_preflight_command(tmp_path: Path, monkeypatch) -> None:
    csv = cohort_csv(tmp_path)
    ok = run_cli("preflight", "--config", f"cohort={csv}", "--config", "folds=3", "--config", "threads=1")
    assert ok.returncode == 0, ok.stderr
    assert "4 slides, 3 groups, 3 folds" in ok.stdout and "embed: partition gpu, 1 CPU, 2000 MB" in ok.stdout
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"cohort": str(csv), "folds": 4}))
    bad = run_cli("preflight", mine)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "error: " in bad.stderr and "3 groups in column 'group'" in bad.stderr
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol on it (in process: a fresh interpreter cost 0.5 s)
    no_slurm = run_cli("preflight", "--slurm", mine, "--config", "folds=3")
    assert no_slurm.returncode == 1
    assert "error: cannot read the SLURM cluster's partitions (scontrol not found" in no_slurm.stderr


def fake_slurm_bin(tmp_path: Path, kind: str) -> Path:
    """`scontrol` answering with the captured outputs; `sbatch` and friends record any call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    scripts = {
        "scontrol": f'echo "scontrol $*" >> {calls}\ncase "$*" in\n'
                    f'  *"show partition") cat {CAPTURED / f"partitions_{kind}.txt"} ;;\n'
                    f'  *"show node") cat {CAPTURED / f"nodes_{kind}.txt"} ;;\n'
                    '  *) echo "MinJobAge = 300 sec" ;;\nesac\n',
        **{cmd: f'echo "{cmd} $*" >> {calls}\nexit 1\n' for cmd in ("sbatch", "sacct", "squeue", "sinfo",
                                                                      "sacctmgr", "sshare")},
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_snakefile_stops_before_the_first_sbatch(tmp_path: Path) -> None:
    """The slurm profile with the default config on a cluster without GPUs: one error line from
    the preflight, no sbatch call, no output written."""
    importorskip_slurm_plugin()
    csv = cohort_csv(tmp_path)
    bin_dir = fake_slurm_bin(tmp_path, "nogpu")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = snakemake_fork.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "pipelines" / "Snakefile"),
                               "--profile", str(ROOT / "pipelines" / "profiles" / "slurm"), "--config",
                               f"cohort={csv}", "folds=3", "out=results"], cwd=tmp_path, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, log[-3000:]
    assert "the embed jobs ask 1 GPU per job but partition 'gpu' (slurm.gpu_partition) has no GPUs" in errors[0]
    calls = (tmp_path / "calls.txt").read_text()
    assert "scontrol --all --oneliner show node" in calls and "sbatch" not in calls
    assert not (tmp_path / "results").exists()


# --- every setting checked with the rules of the command its jobs run ----------------------
def problems_of(config: dict) -> str:
    with pytest.raises(PreflightError) as err:
        preflight.check_workflow(config)
    line = err.value.one_line()
    assert "\n" not in line
    return line


def test_bad_settings_are_all_named_with_their_file(tmp_path: Path) -> None:
    """The tester's config: every bad value passed the preflight and failed later in a cluster job."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("mpp: abc\ntile_size: -5\nthreshold: 150\naggregator: foo\nepochs: -3\n"
                    "score_slides: [nonexist.svs]\n")
    line = problems_of(workflow_config(tmp_path, files=(mine,)))
    assert line.startswith("6 problems in the workflow config: (1) mpp is 'abc' (in "), line
    assert f"tile_size is -5 (in {mine}): weakstil tile refuses it" in line and "from 16 to 4096 px" in line
    assert "threshold is 150" in line and "must be from 0 to 100 %" in line
    assert "aggregator is 'foo'" in line and "'mean', 'attention', 'stroma'" in line
    assert "epochs is -3" in line and "must be from 1 to 100000" in line
    assert f"nonexist.svs (score_slides in {mine}): no slide file matches" in line
    assert f"(fix: correct epochs in {mine}; pipelines/config.yaml documents it)" in line
    # through the command: one error line, exit 1, no job plan
    out = run_cli("preflight", mine, "-C", f"cohort={cohort_csv(tmp_path)}", "-C", "folds=3")
    assert out.returncode == 1 and out.stdout == "" and out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: 6 problems in the workflow config:")


def test_threads_and_device_overrides(tmp_path: Path) -> None:
    line = problems_of(workflow_config(tmp_path, "threads=-1", "device=foo"))
    assert line.startswith("2 problems")
    assert "device is 'foo' (from --config device=foo): weakstil embed refuses it" in line
    assert "unknown device 'foo': use auto, cpu, cuda" in line
    assert "threads is -1 (from --config threads=-1): weakstil train refuses it" in line
    assert "must be from 0 to 1024" in line and "correct threads in the override --config threads=-1" in line
    preflight.check_workflow(workflow_config(tmp_path, "threads=1", "device=cuda:1", "slide_mpp=null"))  # what the CLI takes
    # train takes --threads 0 (every core), but threads is also each job's share of --cores and its SLURM
    # cpus-per-task: a 0-thread job passed the dry run (fault hunt 2)
    line = problems_of(workflow_config(tmp_path, "threads=0"))
    assert line.startswith("threads is 0 (from --config threads=0): every job needs at least 1 thread")
    assert "Fix: set threads to 1 or more in the override --config threads=0" in line


@pytest.mark.parametrize(("override", "says"), [
    ("folds=abc", ("folds is 'abc' (from --config folds=abc): weakstil train refuses it: invalid value for "
                   "'--folds'")),
    ("slurm=3", "slurm is 3 (from --config slurm=3): not a section of settings. Fix: write slurm: as the keys"),
    ("cohort=[", "--config 'cohort=[': the value of cohort is not valid YAML (expected the node content"),
    ("foo", "--config 'foo' is not KEY=VALUE"),
    ("tile_size=[224, 256]", "tile_size is [224, 256] (from --config tile_size=[224, 256]): a list, not one value"),
    ("train_extra=--loss foo --bogus", "train_extra is '--loss foo --bogus'"),
    ("train_extra='--hidden \"8'", "train_extra is '--hidden \"8' (from --config"),
    ("slurm={preflight: 'no'}", "slurm.preflight is 'no'"),
    ("score_slides=3", "score_slides is 3 (from --config score_slides=3): not a list of slide files"),
    ("cohort=null", "cohort is null (from --config cohort=null): not set"),
    ("weights=3", "weights is 3 (from --config weights=3): not a path or name. Fix: set weights to a path"),
])
def test_bad_values_and_overrides_are_one_clear_line(tmp_path: Path, override: str, says: str) -> None:
    """They were "unexpected ValueError / TypeError / ParserError ... a bug in weakstil"."""
    out = run_cli("preflight", "-C", f"cohort={cohort_csv(tmp_path)}", "-C", "folds=3", "-C", override)
    # an override that is not KEY=VALUE with a YAML value is a wrong command line: exit 2 (fault hunt 3)
    usage = override in ("cohort=[", "foo")
    assert out.returncode == (2 if usage else 1) and out.stdout == "" and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: ") and says in out.stderr and "Fix: " in out.stderr, out.stderr
    assert "unexpected" not in out.stderr and "bug" not in out.stderr


def test_check_cohort_alone_refuses_a_non_number_of_folds(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="folds is 'abc', not a whole number. Fix: set folds to e.g. 5"):
        check_cohort(workflow_config(tmp_path, "folds=abc"))


def test_out_must_be_a_folder_and_train_extra_is_parsed(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    line = problems_of(workflow_config(tmp_path, f"out={tmp_path / 'taken'}"))
    assert f"out is '{tmp_path / 'taken'}' (from --config out=" in line and "is an existing file, not a directory" in line
    assert "Fix: correct out in the override --config out=" in line
    preflight.check_workflow(workflow_config(tmp_path, "train_extra='--loss huber --hidden 32 --stopping early'"))
    line = problems_of(workflow_config(tmp_path, "train_extra='--hidden 0'"))
    assert "train_extra is '--hidden 0'" in line and "weakstil train refuses it" in line


def test_training_settings_go_through_train_config_check(tmp_path: Path, monkeypatch) -> None:
    """The whole training command line, as the train job builds TrainConfig from it, is checked."""
    from weakstil.mil.config import TrainConfig

    seen = []

    def check(self):
        seen.append((self.epochs, self.loss, self.aggregator))
        raise WeakSTILError("a rule of TrainConfig.check", fix="follow it")

    monkeypatch.setattr(TrainConfig, "check", check)
    line = problems_of(workflow_config(tmp_path, "epochs=7", "aggregator=mean", "train_extra=--loss huber"))
    assert seen == [(7, "huber", "mean")]
    assert "the training settings (device, folds, aggregator, epochs, members, seed, threshold, threads" in line
    assert "a rule of TrainConfig.check. Fix: follow it" in line


def test_several_problems_of_different_checks_in_one_go(tmp_path: Path) -> None:
    line = problems_of(workflow_config(tmp_path, "annotaions=ann", "slurm={partiton: x, runtime: soon}",
                                       "weights=nowhere.safetensors", "epochs=0"))
    assert line.startswith("4 problems"), line
    assert ("unknown config keys 'annotaions' (did you mean 'annotations'?) in --config annotaions=ann, "
            "'slurm.partiton' (did you mean 'slurm.partition'?)") in line
    assert "epochs is 0" in line and "encoder weights file not found" in line
    assert "slurm.runtime is 'soon', not a whole number" in line


def test_shipped_configs_pass(tmp_path: Path) -> None:
    """pipelines/config.yaml alone and with each ready-made `slurm:` section: no problem."""
    for files in ((), *(((f,)) for f in sorted((ROOT / "pipelines" / "slurm").glob("*.yaml")))):
        config = workflow_config(tmp_path, files=files)
        assert len(preflight.check_workflow(config)) == 4
        assert config.sources["cohort"].startswith("--config cohort=")
        assert config.sources["mpp"] == str(DEFAULTS)


def test_a_job_command_line_out_of_date_is_not_the_users_problem(tmp_path: Path, monkeypatch, caplog) -> None:
    """Should a command's arguments change (BASE_ARGS out of date), its settings go unchecked with
    a warning instead of every run stopping on a problem the user cannot fix."""
    import weakstil.pipeline_settings_check as settings_check

    # an option the command no longer has (the slide argument left out parsed since `--slides LIST` made it optional)
    monkeypatch.setitem(settings_check.BASE_ARGS, "tile", ["slide.svs", "--out", ".", "--option-it-dropped", "1"])
    settings_check._base_parses.cache_clear()
    try:
        preflight.check_workflow(workflow_config(tmp_path, "mpp=abc"))
    finally:
        settings_check._base_parses.cache_clear()
    assert "the workflow settings passed to 'weakstil tile' are not checked before the run" in caplog.text


def test_train_extra_may_not_set_what_the_workflow_sets(tmp_path: Path) -> None:
    for extra in ("--folds 2", "--out /tmp/x", "--folds=2 --hidden 8"):
        line = problems_of(workflow_config(tmp_path, f"train_extra='{extra}'"))
        assert "which the workflow sets itself" in line, (extra, line)
    preflight.check_workflow(workflow_config(tmp_path, "train_extra='--hidden 64 --dropout 0.3'"))


def test_a_pretrained_encoder_folder_is_not_run_with_random_weights(tmp_path: Path) -> None:
    """`weights: random` (the default) with a pretrain folder as `encoder` would embed with a random init
    of its network, silently the random baseline (an outside tester's features were byte-identical)."""
    import yaml
    from safetensors.torch import save_file

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import build_model
    from weakstil.runtime import sha256_file

    folder = tmp_path / "pretrained"
    folder.mkdir()
    card = load_card("small-cnn")
    save_file(build_model(card).state_dict(), str(folder / "model.safetensors"))
    (folder / "card.yaml").write_text(yaml.safe_dump({**card.to_dict(), "name": "pretrained",
                                                      "weights_sha256": sha256_file(folder / "model.safetensors")}))
    with pytest.raises(PreflightError, match="holds its own pretrained weights, but weights is random"):
        check_encoder(workflow_config(tmp_path, f"encoder={folder}"))
    check_encoder(workflow_config(tmp_path, f"encoder={folder}", "weights=null"))  # its own: fine
