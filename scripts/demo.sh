#!/usr/bin/env bash
# The main job on the embedded defaults (SQLite, local files, the offline starter model):
# index a small real catalogue, then search it by text, by image and image-to-caption.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup_env.sh
export CROSSMEDIA_DATA_DIR=${CROSSMEDIA_DATA_DIR:-./crossmedia-data}
SAMPLE=${1:-../shared/data/coco_mini/items.jsonl}
if [ ! -e "$SAMPLE" ]; then
  echo "Sample $SAMPLE not found; using the photos bundled with this installation instead." >&2
  SAMPLE=$(.venv/bin/python -m indexer.sample_catalogue)
fi
cm=.venv/bin/crossmedia
$cm index "$SAMPLE"
$cm info
echo; echo '$ crossmedia search --text "a dog playing in the snow" --target image -k 5'
$cm search --text "a dog playing in the snow" --target image -k 5
first_image=$($cm search --text "a plate of food" --target image -k 1 --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["path"])')
echo; echo "\$ crossmedia search --image $first_image --target text -k 5"
$cm search --image "$first_image" --target text -k 5
