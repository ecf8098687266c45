#!/usr/bin/env bash
# One prepared check on a one-GPU machine without network (under 8 minutes: the
# parts' limits add up to 440 s).
#
# Runs the device-relevant tests on the GPU (the contract suite over the whole
# registry, sharding, adaptx.fused's pure-JAX path, the consumer tests if
# present) and the step benchmark with torch's fused CUDA Adam as the peer.
# Expects jax (with CUDA), optax, flax, equinox, chex, pytest, hypothesis and
# torch installed; run from anywhere:
#
#     OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Results go under $OUT (default: ./gpu_check_out): one log per part,
# bench/latest.md and summary.txt. Each part has its own time limit, so a
# slow or failing part does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

part() {  # part NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start)) s ($(tail -n 1 "$OUT/$name.log"))" | tee -a "$SUMMARY"
}

"$PY" - > "$OUT/devices.txt" 2>&1 <<'PYEOF'
import jax, platform
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
print("cpu", platform.processor() or platform.machine())
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as e:
    print("torch unavailable:", e)
PYEOF
cat "$OUT/devices.txt" | tee -a "$SUMMARY"

PYTEST=("$PY" -m pytest -q -p no:cacheprovider -o addopts="" --maxfail=20)
# adaptx.fused on the GPU: the pure-JAX path against the per-leaf aliases,
# grad/jvp, vmap, converters (the CPU-kernel tests skip themselves).
part fused 60 "${PYTEST[@]}" tests/test_fused.py
# The drop-in contract for every registry entry, on the GPU.
part contract 140 "${PYTEST[@]}" tests/test_contract.py
# Sharding: needs 8 devices; on one GPU the multi-device cases skip or fail (logged).
part sharding 40 "${PYTEST[@]}" tests/test_sharding.py -k "adam or sgd"
if [ -f tests/test_consumers.py ]; then
    part consumers 80 "${PYTEST[@]}" tests/test_consumers.py
fi
# The step benchmark on the GPU, torch's fused CUDA Adam as the peer.
part bench 120 "$PY" benchmarks/bench.py --opts adam --trees 1 1000 --rounds 10 \
    --optax-10000 --no-floor --torch-python "$PY" --torch-device cuda --out "$OUT/bench"
echo "results in $OUT" | tee -a "$SUMMARY"
