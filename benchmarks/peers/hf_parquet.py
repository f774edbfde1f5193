"""Peer: Hugging Face `datasets` turning local PNG files into Parquet (Image feature -> to_parquet).

Run in the peers' virtualenv: ``python hf_parquet.py FILES_DIR OUT_DIR``; prints JSON with the image count.
"""

import json
import sys
from pathlib import Path

import datasets


def main() -> None:
    files, out = Path(sys.argv[1]), Path(sys.argv[2])
    paths = sorted(str(p) for p in files.glob("*.png"))
    ids = [Path(p).stem for p in paths]
    table = datasets.Dataset.from_dict({"image_id": ids, "image": paths}).cast_column("image", datasets.Image())
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(out / "data.parquet"))
    print(json.dumps({"images": len(paths)}))


if __name__ == "__main__":
    main()
