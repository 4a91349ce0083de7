"""Shared fixtures: the committed CMU slide, the real files in ../shared/data, made-up bad inputs."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
#: Real slides that may not be committed live beside the project (see ../shared/data/README.md).
SHARED = ROOT.parent / "shared" / "data"
CMU = TEST_DATA / "CMU-1-Small-Region.svs"
#: Tests never reach the Hugging Face hub (the CLI subprocesses inherit this too).
os.environ["HF_HUB_OFFLINE"] = "1"

#: The cyclic garbage collector runs less often in the test processes (CPython's default: a young collection
#: every 700 new objects, a full one every 100 young ones). A test process holds about 400,000 objects once
#: every module is collected (torch, napari, scipy, the test modules) and each full collection walks all of
#: them: 9 % of a process's CPU went to the collector (6.5 of 70 s over 199 tests after a full collection,
#: most of it while the modules were imported), about half that with these thresholds. Garbage cycles are
#: still collected, later; tests that need them gone call ``gc.collect()`` (test_decode.py, napari's viewer
#: fixture). Commands run by :func:`run_cli` inherit the setting; subprocesses keep the interpreter's defaults.
gc.set_threshold(50_000, 20, 20)


#: Distributions whose modules pytest would rewrite for their pytest plugin (see :func:`pytest_configure`).
NOT_REWRITTEN = ("napari", "npe2", "napari_plugin_engine", "anyio", "platformdirs")


def pytest_configure(config):
    """napari's assertions are napari's: its modules are imported as they are, not with pytest's assertion rewriting.
    pytest rewrites every module of a distribution that registers a pytest plugin (napari's ``make_napari_viewer``
    comes with napari), and with ``PYTHONDONTWRITEBYTECODE`` set (or a read-only site-packages) it parses, rewrites and
    compiles the 600 napari modules a test process imports again in every process: about 2 s of CPU each.
    Our tests' and conftests' assertions are still rewritten; napari's own fixture module is already imported."""
    for hook in sys.meta_path:  # pytest's import hook (its marks are not public: nothing changes where they moved)
        must = getattr(hook, "_must_rewrite", None) if type(hook).__name__ == "AssertionRewritingHook" else None
        if isinstance(must, set):
            must.difference_update({name for name in must if name.split(".")[0] in NOT_REWRITTEN})
            getattr(hook, "_marked_for_rewrite_cache", {}).clear()


def pytest_collection_finish(session):
    """Every object alive once the tests are collected (the modules of torch, napari, scipy, the tests') moves to
    the collector's permanent generation (``gc.freeze``), and so does what is alive after each test's teardown
    (:func:`pytest_runtest_teardown`): a full collection walks only what was made since. napari collects at every
    layer removal (its canvas's Windows OpenGL workaround), up to 0.5 s a call over the 500,000+ objects that torch,
    Qt and napari leave alive, and the thresholds above still give full collections over everything. Garbage a test
    makes is collected before the freeze; frozen objects were alive then."""
    freeze_the_living()


def freeze_the_living() -> None:
    """Collect, then freeze what is left (see :func:`pytest_collection_finish`)."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a test's fixtures are torn down: its garbage collected, what is left frozen (only what the test made
    since the last freeze is walked)."""
    yield
    freeze_the_living()


from napari_plugin_fixtures import make_napari_viewer  # noqa: E402,F401  (a fixture: napari's, its plugins found once)


def no_slurm_controller_env(tmp_dir: Path) -> dict[str, str]:
    """The environment for a Snakemake run that must not wait on a SLURM controller.

    Snakemake builds its command line from every installed executor plugin, and the SLURM plugin's
    help text asks ``scontrol show config`` (10 s time-out). Where the SLURM client is installed but
    no controller runs (a CI machine between ``make test-slurm`` runs), each start waited those 10 s:
    about 200 s of the suite's worker time. A SLURM config whose controller refuses at once gives
    the same answer (no controller) without the wait; the local profile never uses SLURM."""
    conf = tmp_dir / "unreachable-slurm.conf"
    conf.write_text("ClusterName=unreachable\nSlurmctldHost=localhost\nSlurmctldPort=9\nMessageTimeout=1\n")
    return {**os.environ, "SLURM_CONF": str(conf)}


def importorskip_slurm_plugin():
    """``pytest.importorskip`` of Snakemake's SLURM executor plugin, imported under :func:`no_slurm_controller_env`'s
    config. The plugin asks ``scontrol show config`` for a help text when it is imported: here (the SLURM client
    installed, no controller running) every pytest process that collected test_pipeline.py waited 9 s on it,
    with no CPU used, before its first test. The answer is only that help text."""
    import tempfile

    saved = os.environ.get("SLURM_CONF")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SLURM_CONF"] = no_slurm_controller_env(Path(tmp))["SLURM_CONF"]
        try:
            return pytest.importorskip("snakemake_executor_plugin_slurm")
        finally:
            if saved is None:
                del os.environ["SLURM_CONF"]
            else:
                os.environ["SLURM_CONF"] = saved


#: The napari plugin's tests (``testpaths``: collected after tests/).
PLUGIN_TESTS = ROOT / "plugins" / "napari_weakstil" / "tests"

#: The modules that take longest on 2 cores, longest first (measured with ``--durations``). ``make
#: test`` hands modules to its two pytest-xdist processes in collection order
#: (``--no-loadscope-reorder``), so these start first and the short ones fill in beside them:
#: started last, the 4-minute demo module ran alone on one core at the end of the run.
#: The demo end to end (a smaller plan since) took 105 s alone; test_score starts beside test_pipeline so that
#: test_faults finds test_pipeline's slides made (:func:`synth_cohort`).
LONGEST_MODULES = ("test_pipeline.py", "test_score.py", "test_faults.py", "test_mil.py", "test_train_cli.py",
                   "test_embed.py", "test_demo.py", "test_tumorbed_veto.py", "test_tumorbed_apply.py", "test_qc.py")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slurm`` need a real SLURM cluster (pipelines/slurm/setup_localhost.sh) and
    minutes: they run only when selected with ``-m slurm`` (``make test-slurm``). The longest
    modules go first (:data:`LONGEST_MODULES`), then the napari plugin's (:data:`PLUGIN_TESTS`); the order within
    a module is kept."""
    if "slurm" not in (config.getoption("markexpr") or ""):
        deselected = [item for item in items if item.get_closest_marker("slurm")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("slurm")]
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}

    def place(item) -> int:
        if item.path.name in rank and item.path.parent == TEST_DATA.parent:
            return rank[item.path.name]
        # the napari plugin's modules next: collected last, their viewers (about 20 s a module) ended the run on
        # one worker while the other had finished; the short modules of tests/ now fill in at the end
        return len(rank) + (0 if PLUGIN_TESTS in item.path.parents else 1)

    items.sort(key=place)  # stable: module order kept otherwise


def shared_file(relative: str) -> Path:
    """A file from ../shared/data; the test is skipped with a clear reason when it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared real data)")
    return path


@dataclass
class CliResult:
    """What a user sees of a command: its exit code, standard output and standard error."""

    returncode: int
    stdout: str
    stderr: str


_typer_commands: dict[int, object] = {}


def _cache_typer_command() -> None:
    """typer's test runner builds the click command from the app's functions at every call (their
    signatures' annotations evaluated again: about 60 ms of CPU a call, 11 % of test_faults.py and
    test_report.py under a profiler); the console script builds it once per process, as this does."""
    import typer.main
    import typer.testing

    if getattr(typer.testing._get_command, "weakstil_cached", False):
        return

    def get_command(typer_app):
        key = id(typer_app)
        if key not in _typer_commands:
            _typer_commands[key] = (typer_app, typer.main.get_command(typer_app))  # the app kept: its id stays its own
        return _typer_commands[key][1]

    get_command.weakstil_cached = True
    typer.testing._get_command = get_command


def run_cli(*args: str, check: bool = False) -> CliResult:
    """Run ``weakstil ARGS`` in this interpreter through typer's test runner: the same parsing,
    error lines and exit codes as the console script, without a second torch import per call.
    An unexpected exception (a traceback for the user) fails the test. The console script itself
    runs in a fresh interpreter in test_cli_tile.py."""
    import signal

    from typer.testing import CliRunner

    from weakstil.cli import app

    _cache_typer_command()
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    sigterm, sighup = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        signal.signal(signal.SIGTERM, sigterm)  # every command turns SIGTERM and SIGHUP into KeyboardInterrupt
        signal.signal(signal.SIGHUP, sighup)
        if threads is not None:  # embed sets torch's thread count for its run
            sys.modules["torch"].set_num_threads(threads)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    out = CliResult(result.exit_code, result.stdout, result.stderr)
    if check and out.returncode != 0:
        raise AssertionError(f"weakstil {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out


def run_console_script(*args: str) -> subprocess.CompletedProcess:
    """``python -m weakstil ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "weakstil", *map(str, args)], capture_output=True, text=True)


def write_tiff_slide(path: Path, rgb: np.ndarray, mpp: float = 0.5, levels: int = 3) -> Path:
    """A pyramidal tiled TIFF that OpenSlide opens with the given mpp."""
    import tifffile

    opts = dict(tile=(256, 256), compression="jpeg", photometric="rgb", resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, subifds=0, resolution=(1e4 / mpp, 1e4 / mpp), **opts)
        for k in range(1, levels):
            f = 4**k
            if min(rgb.shape[:2]) // f < 16:
                break
            tw.write(rgb[::f, ::f], subfiletype=1, resolution=(1e4 / (mpp * f), 1e4 / (mpp * f)), **opts)
    return path


def write_disc_slide(path: Path) -> Path:
    """A small brightfield slide: a pink disc of tissue with dark nuclei on white glass, 0.5 µm/px."""
    rng = np.random.default_rng(0)
    rgb = np.full((1024, 1024, 3), 240, np.uint8)
    yy, xx = np.mgrid[:1024, :1024]
    disc = (yy - 512) ** 2 + (xx - 512) ** 2 < 380**2
    rgb[disc] = (205, 120, 180)
    rgb[disc & (rng.random(disc.shape) < 0.1)] = (80, 40, 120)
    return write_tiff_slide(path, rgb, mpp=0.5, levels=2)


#: The side in mm of the seed-0 synthetic slides the workflow and fault modules share (:func:`synth_cohort`):
#: 0.7 mm, about 25 tiles a slide, where 1 mm (about 50) took more CPU in every tile, embed, train, score and
#: report step of their commands and Snakemake jobs, and none of their checks needs the larger tissue.
WORKFLOW_SLIDE_MM = 0.7

#: The files of one synthetic slide, the truth file last (its presence marks a complete slide).
_SLIDE_FILES = ("slides/{sid}.tiff", "truth/{sid}_tumorbed.geojson", "truth/{sid}_preview.png", "truth/{sid}.h5")


@pytest.fixture(scope="session")
def synth_cohort(tmp_path_factory):
    """``synth_cohort(out, slides, seed, size_mm, groups)``: ``weakstil synth`` into ``out``, where the slides
    that this test session made already with the same seed, size and centre are copied in first
    (the generator keeps a complete slide of the same identity: the same files, labels and cohort.json).
    Several workflow modules make the same slides of seed 0 (:data:`WORKFLOW_SLIDE_MM`); each 1 mm slide took
    about 1.3 s of CPU.
    The copies are shared by the xdist workers of one run (their common base folder) and never
    outlive it."""
    import shutil

    root = tmp_path_factory.getbasetemp()
    cache = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "synth-cache"

    def make(out: Path, slides: int, seed: int = 0, size_mm: float = 1.0, groups: int = 4) -> Path:
        from weakstil.outputdir import mark

        keys = [cache / f"seed{seed}-{size_mm}mm-{i}-centre{i % groups}" for i in range(slides)]
        mark(out, "synth")  # as a run stopped half-way leaves it: a rerun keeps the complete slides
        for i, key in enumerate(keys):
            if (key / "done").is_file():
                for name in _SLIDE_FILES:
                    rel = name.format(sid=f"synth_{i:04d}")
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(key / rel, out / rel)
        run_cli("synth", out, "--slides", slides, "--seed", seed, "--size-mm", size_mm, size_mm, "--groups", groups,
                check=True)
        for i, key in enumerate(keys):
            if not key.exists():
                tmp = cache / f".{key.name}.{os.getpid()}"
                for name in _SLIDE_FILES:
                    rel = name.format(sid=f"synth_{i:04d}")
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(out / rel, tmp / rel)
                (tmp / "done").touch()
                try:
                    tmp.rename(key)  # atomic: another worker's copy of the same slide may be there first
                except OSError:
                    shutil.rmtree(tmp)
        return out

    return make



#: The quick demo's plan, smaller (the user's `demo --quick`: 40 slides of 1 mm, 25 pretraining steps, 40 epochs,
#: about 100 s of the suite's CPU): every stage still runs on synthetic slides, three folds, held-out slides
#: scored by `weakstil score`; 8 training slides, the fewest test_demo's cross-validation check takes.
SMALL_DEMO = dict(n_slides=12, size_mm=0.8, held_out=4, pretrain_steps=4, tumorbed_slides=4, epochs=10)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once per test run into a folder shared by the xdist workers (their common
    base folder, under a lock: a worker that needs it while another makes it waits for it rather than
    making it too): that folder. Tests only read it and copy what they change."""
    import fcntl
    import shutil

    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    cache.mkdir(parents=True, exist_ok=True)
    folder, done = cache / "build", cache / "done"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> tuple[Path, CliResult]:
    """``weakstil demo --quick`` of the :data:`SMALL_DEMO` plan, run once per test run (:func:`built_once`,
    about 20 s): its folder (cohort with truth, features, model with its encoder and tumour-bed detector,
    held-out scores) and the run's output."""
    import dataclasses
    import json

    from weakstil import demo

    def build(folder: Path) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(demo, "QUICK", dataclasses.replace(demo.QUICK, **SMALL_DEMO))
            proc = run_cli("demo", "--quick", "--out", folder / "demo")
        assert proc.returncode == 0, proc.stderr
        (folder / "run.json").write_text(json.dumps(dataclasses.asdict(proc)), encoding="utf-8")

    folder = built_once(tmp_path_factory, "small-demo", build)
    return folder / "demo", CliResult(**json.loads((folder / "run.json").read_text(encoding="utf-8")))


def embedded_cohort(root: Path, slides: int, seed: int, size_mm: tuple[float, float]):
    """A synthetic cohort in ``root/cohort`` and its embeddings (seeded random small CNN) in
    ``root/features``: ``(cohort, labels, features)``."""
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.synth import generate_cohort

    cohort, features = root / "cohort", root / "features"
    labels = generate_cohort(cohort, slides, seed=seed, size_mm=size_mm, progress=False)
    encoder = create_encoder("small-cnn", weights="random")
    for path in labels["path"]:
        embed_slide(cohort / path, encoder, out_dir=features)
    return cohort, labels, features


def without_tumour(generate_layout):
    """The synthetic generator's ``generate_layout`` with the tumour nests made stroma and the bed
    emptied: a slide with no invasive tumour (patch it in with ``monkeypatch.setattr``)."""
    from weakstil.synth.constants import STROMA, TUMOR

    def layout(rng, shape, params):
        lay = generate_layout(rng, shape, params)
        lay.regions[lay.regions == TUMOR] = STROMA
        lay.bed[:] = False
        return lay

    return layout


def write_training_csv(path: Path, labels, cohort: Path, columns: tuple[str, ...] = ("slide_id", "path", "stil")) -> Path:
    """``labels`` rows as a cohort CSV with absolute slide paths."""
    rows = labels.copy()
    rows["path"] = [str((cohort / p).resolve()) for p in rows["path"]]
    rows[list(columns)].to_csv(path, index=False)
    return path


def one_epoch_model(root: Path, seed: int, slides: int = 4, size_mm: tuple[float, float] = (0.6, 0.6)):
    """A model trained for one epoch (one fold) on a small embedded cohort (:func:`embedded_cohort`):
    ``(root / "model", cohort, labels, features)``."""
    cohort, labels, features = embedded_cohort(root, slides, seed=seed, size_mm=size_mm)
    write_training_csv(root / "train.csv", labels, cohort)
    run_cli("train", root / "train.csv", "-f", features, "-o", root / "model", "--folds", "1", "--epochs", "1",
            check=True)
    return root / "model", cohort, labels, features


@pytest.fixture
def cmu() -> Path:
    return CMU


@pytest.fixture
def white_slide(tmp_path: Path) -> Path:
    """An all-white (blank glass) slide."""
    return write_tiff_slide(tmp_path / "blank.tiff", np.full((2048, 2048, 3), 245, np.uint8))


@pytest.fixture
def one_torch_thread():
    """In-process torch work runs on one thread: tiny ops on a busy 2-CPU machine are much faster
    without OpenMP teams waiting for a descheduled thread (and results are reproducible)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """:func:`one_torch_thread` for a module's fixtures (a model or encoder made once for its tests)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

