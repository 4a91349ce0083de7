#!/usr/bin/env bash
# The one GPU run of issue 18, on the device machine (one GPU, 16 CPUs, Python 3.12 with torch,
# torchvision, timm, h5py, numpy, Pillow, tifffile, scikit-image...), from the repository root:
#
#     bash benchmarks/gpu_run.sh                 # the check (about 4 minutes)
#     bash benchmarks/gpu_run.sh --device cpu --quick   # smoke test of this script on any machine
#     bash benchmarks/gpu_run.sh --profile       # per-stage breakdown + variants instead (about 2 minutes)
#
# Installs the wheels carried in .whl/ (openslide-python, openslide-bin, simplejpeg, tifffile:
# `make gpu-wheels` or see the README) into $SITE (default /tmp/site, first on PYTHONPATH), runs
# benchmarks/gpu_check.py (or, with --profile first, benchmarks/gpu_profile.py) under a hard time
# limit (LIMIT_S) and leaves the table and logs in $OUT. A $PYTHON that already has them (the
# project's .venv: PYTHON=.venv/bin/python) needs no wheels.
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
NAME=gpu_check
if [ "${1:-}" = "--profile" ]; then
  shift
  NAME=gpu_profile
  LIMIT_S=${LIMIT_S:-130}
  MARGIN_S=${MARGIN_S:-20}
fi
OUT=${OUT:-$PWD/gpu_out}
SITE=${SITE:-/tmp/site}
if [ -z "${PYTHON:-}" ] && [ -x /opt/torch/.venv/bin/python ]; then PYTHON=/opt/torch/.venv/bin/python; fi
PY=${PYTHON:-python3}
HAVE_WHEELS=0
$PY -c 'import openslide, simplejpeg, tifffile' >/dev/null 2>&1 && HAVE_WHEELS=1
# the wheels come from `make gpu-wheels` (a machine with network): say so, not pip's resolver errors
if [ $HAVE_WHEELS = 0 ] && ! ls .whl/*.whl >/dev/null 2>&1; then
  echo "error: $PWD/.whl/: no wheels, and $PY lacks openslide / simplejpeg / tifffile. Fix: run \`make gpu-wheels\`" \
       "first (on a machine with network), or set PYTHON to a Python that has them (PYTHON=.venv/bin/python)" >&2
  exit 2
fi
LIMIT_S=${LIMIT_S:-330}
MARGIN_S=${MARGIN_S:-60}
mkdir -p "$OUT"
start=$(date +%s)
{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  $PY --version
  echo "cpus: $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"  # nproc alone obeys OMP_NUM_THREADS
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  if [ $HAVE_WHEELS = 1 ]; then
    echo "openslide, simplejpeg, tifffile already in $PY: no wheels installed"
  elif $PY -m pip --version >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --find-links .whl --target "$SITE" \
      openslide-python openslide-bin simplejpeg tifffile imagecodecs torchstain
  else  # no pip in that environment: a wheel is a zip file; unpack the ones for this Python
    tag=$($PY -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    mkdir -p "$SITE"
    for w in .whl/*.whl; do
      case "$w" in *-cp3[0-9]*-cp3[0-9]*) case "$w" in *"-$tag-"*) ;; *) continue ;; esac ;; esac
      $PY -m zipfile -e "$w" "$SITE" || exit 1
    done
  fi
  PYTHONPATH="$SITE" $PY -c 'import openslide, simplejpeg, tifffile; print("openslide", openslide.__version__,
    openslide.__library_version__, "simplejpeg", simplejpeg.__version__, "tifffile", tifffile.__version__)'
} > "$OUT/setup.log" 2>&1
setup_rc=$?
if [ $setup_rc -ne 0 ]; then
  cat "$OUT/setup.log"
  echo "wheel install failed (rc $setup_rc)"
  exit $setup_rc
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout -k 10 "$LIMIT_S" $PY benchmarks/$NAME.py --out "$OUT" --budget-s $((LIMIT_S - MARGIN_S)) "$@" \
  > "$OUT/$NAME.stdout" 2> "$OUT/$NAME.log"
rc=$?
echo "---- last lines of the log ($OUT/$NAME.log) ----"
tail -n 25 "$OUT/$NAME.log"
echo "---- $OUT/$NAME.md ----"
cat "$OUT/$NAME.md" 2>/dev/null || cat "$OUT/$NAME.stdout"
echo "$NAME rc=$rc, total $(( $(date +%s) - start )) s"
exit $rc
