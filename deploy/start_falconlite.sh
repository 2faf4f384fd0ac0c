#!/usr/bin/env bash
# The model card's start_falconlite.sh (awslabs/extending-the-context-length-of-open-source-llms,
# falconlite/script/start_falconlite.sh) translated one to one for falconlite-router: the same
# settings, flags and environment, the same `docker run` shape. Every flag keeps TGI 0.9.2's
# name; falconlite-router plays TGI's launcher and spawns one falconlite-shard per GPU itself.
#
# Usage: deploy/start_falconlite.sh            (Docker image built from deploy/Dockerfile)
#        FALCONLITE_LOCAL=1 deploy/start_falconlite.sh   (an unpacked bundle, no Docker)
#
# The only difference from the card: --model-id is a local directory (falconlite does not
# download from the Hugging Face Hub). Fetch it once into the volume, e.g.
#   huggingface-cli download amazon/FalconLite --local-dir "$volume/FalconLite"
set -euo pipefail

local_run=${FALCONLITE_LOCAL:-0}
volume=${volume:-$PWD/data}                     # host folder mounted at /data, as in the card
if [ "$local_run" = 1 ]; then mount=$volume; else mount=/data; fi
export model=${model:-$mount/FalconLite}        # card: amazon/FalconLite (a Hub id)
export num_shard=${num_shard:-4}                # card: 4 (ml.g5.12xlarge: 4 x A10G)
export max_input_length=${max_input_length:-12000}
export max_total_tokens=${max_total_tokens:-12001}
falconlite_tgi_port=${falconlite_tgi_port:-443} # card: 443 on the host
docker_image_id=${docker_image_id:-falconlite:latest} # card: falcon-lctx:0.9.2

args=(
    --model-id "$model"                                   # the model directory
    --num-shard "$num_shard"                              # one shard process per GPU
    --max-input-length "$max_input_length"                # longest prompt, in tokens
    --max-total-tokens "$max_total_tokens"                # prompt + max_new_tokens per request
    --max-batch-prefill-tokens "$max_total_tokens"        # card: the same as max-total-tokens
    --max-batch-total-tokens "$max_total_tokens"          # card: the same as max-total-tokens
    --trust-remote-code                                   # accepted and ignored (no Python here)
    --quantize gptq                                       # informational: GPTQ is read from the checkpoint
)
# Read by the router (which passes them to every shard as --gptq-* / --rope-* flags), with the
# meaning the card's patched TGI gives them:
#   GPTQ_BITS / GPTQ_GROUPSIZE fill what the checkpoint's quantize_config.json does not give;
#   DNTK_ALPHA_SCALER selects FalconLite's dynamic-NTK rotary scaling (alpha 0.25).
env_vars=(GPTQ_BITS=4 GPTQ_GROUPSIZE=128 DNTK_ALPHA_SCALER=0.25)

if [ "$local_run" = 1 ]; then
    # An unpacked deploy/bundle.sh tarball on the GPU host (no Docker): the router listens
    # where the container's port would be mapped (443 needs root: set falconlite_tgi_port).
    bin=${FALCONLITE_HOME:-$(dirname "$0")/..}/bin
    exec env "${env_vars[@]}" "$bin/falconlite-router" "${args[@]}" --port "$falconlite_tgi_port"
fi

env_flags=()
for e in "${env_vars[@]}"; do env_flags+=(--env "$e"); done
# --shm-size 1g: NCCL's shared-memory transport between the shards, as in the card.
# The image's router listens on 8080 (a non-root user cannot bind the card's 80).
# --hostname 0.0.0.0: inside the container the router must listen beyond loopback for the port
# mapping to reach it (its default is 127.0.0.1; SECURITY.md).
docker run -d --gpus all "${env_flags[@]}" \
    --shm-size 1g -p "$falconlite_tgi_port":8080 -v "$volume":/data "$docker_image_id" \
    "${args[@]}" --hostname 0.0.0.0
