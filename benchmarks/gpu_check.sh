#!/usr/bin/env bash
# The GPU check, in one go and under 8 minutes on an H100/H200-class machine:
#   1. installs the package with its GPU extra (pip install -e '.[gpu]', JAX with CUDA);
#   2. runs the GPU engine's tests on the GPU (tests/test_gpu_engine.py and the gpu cases of
#      tests/test_engine_conformance.py, with LOGREG_MNIST_TEST_JAX_PLATFORM=gpu);
#   3. runs benchmarks/bench_gpu.py (the tutorial preset's epochs/s and agreement, one
#      out-of-core epoch of 5,000,000 generated images).
# Each step has its own time limit; the summary says which passed. Exit status: 0 when all did.
#
#   bash benchmarks/gpu_check.sh [--platform gpu|cpu] [--python PY] [--wheels DIR] [--no-install]
#                                [--data-dir DIR] [-- BENCH_GPU_ARGS...]
#
#   --platform cpu   the same steps on JAX's CPU backend (installs '.[test]', whose JAX is the CPU
#                    build): a dry check of the script on a machine without a GPU
#   --wheels DIR     no network: install from the wheels in DIR only (pip --no-index
#                    --find-links DIR -e .), for a machine whose Python already has JAX with a
#                    CUDA plugin; DIR holds what that Python lacks (setuptools>=77 to build,
#                    and any of the package's dependencies missing there)
#   --no-install     use the package as already installed
#   --data-dir DIR   the MNIST files (default: $LOGREG_MNIST_DATA_DIR, else as load_mnist finds them)
#
# Example dry check: bash benchmarks/gpu_check.sh --platform cpu -- --repeat 1 --ooc-images 300000 --max-resident 64M
set -uo pipefail

platform=gpu
py=python3
wheels=""
install=1
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --platform) platform="$2"; shift 2 ;;
        --python) py="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --no-install) install=0; shift ;;
        --data-dir) export LOGREG_MNIST_DATA_DIR="$2"; shift 2 ;;
        --) shift; bench_args=("$@"); break ;;
        *) echo "gpu_check.sh: unknown argument $1 (see the comment at the top of the script)" >&2; exit 2 ;;
    esac
done
case "$platform" in
    gpu|cpu) ;;
    *) echo "gpu_check.sh: --platform: expected gpu or cpu, found $platform" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1
start=$SECONDS
step() { echo; echo "== $1 ($((SECONDS - start)) s)"; }

install_rc=0
if [ "$install" = 1 ]; then
    step "install"
    if [ -n "$wheels" ]; then
        timeout 180 "$py" -m pip install -q --no-index --find-links "$wheels" -e . pytest hypothesis
    elif [ "$platform" = gpu ]; then
        timeout 180 "$py" -m pip install -q -e '.[gpu]' pytest hypothesis
    else
        timeout 180 "$py" -m pip install -q -e '.[test]'
    fi
    install_rc=$?
    [ "$install_rc" = 0 ] || { echo "gpu_check.sh: the install failed ($install_rc)"; exit 1; }
fi
"$py" - "$platform" <<'EOF' || exit 1
import sys
import jax
from logreg_mnist.engines.gpu import gpu_available
from logreg_mnist.engines.fused import available
print(f"JAX {jax.__version__}: devices {jax.devices()}; a GPU for the engine: {gpu_available()}; fused kernel built: {available()}")
if sys.argv[1] == "gpu" and not gpu_available():
    sys.exit("gpu_check.sh: expected JAX to see a GPU, found none")
EOF

step "the GPU engine's tests on --platform $platform"
LOGREG_MNIST_TEST_JAX_PLATFORM="$platform" LOGREG_MNIST_REQUIRE_JAX=1 timeout 240 \
    "$py" -m pytest -q -p no:cacheprovider tests/test_gpu_engine.py tests/test_engine_conformance.py -k gpu
tests_rc=$?

step "benchmarks/bench_gpu.py --platform $platform ${bench_args[*]}"
timeout 300 "$py" benchmarks/bench_gpu.py --platform "$platform" "${bench_args[@]}"
bench_rc=$?

step "summary"
echo "tests: $([ $tests_rc = 0 ] && echo passed || echo "FAILED ($tests_rc)"); benchmark: $([ $bench_rc = 0 ] && echo "ran, agrees with the reference" || echo "FAILED or disagrees ($bench_rc)")"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
