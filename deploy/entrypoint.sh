#!/bin/sh
# The container's entrypoint: set up the default model in the models volume, then run the command
# (`python bot.py`) in its place (exec), so the bot itself gets SIGTERM and stops cleanly.
#
# The fetch runs when the catalog uses the default model: MODELS unset (its default is the GGUF),
# or MODELS / REMOTE_TOKENIZERS naming SmolLM2-135M-Instruct (the llama-server profile serves its
# GGUF and reads its folder). It is idempotent: once the model is there, it checks the marker and
# the GGUF's checksum (about a second) and downloads nothing. Containers sharing the volume that
# start together take turns (a file lock); the later ones find the model ready. A failed fetch
# exits 1 (try again later), and the restart policy retries.
set -eu

case "${MODELS:-}|${REMOTE_TOKENIZERS:-}" in
    "|"* | *SmolLM2-135M-Instruct*)
        python -m model_service.fetch
        ;;
esac

exec "$@"
