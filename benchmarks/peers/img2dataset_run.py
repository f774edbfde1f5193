"""Peer: img2dataset turning local PNG files into WebDataset or Parquet, with or without a 256 px resize.

Run in the peers' virtualenv: ``python img2dataset_run.py FILES_DIR OUT_DIR FORMAT RESIZE``
(FORMAT webdataset|parquet, RESIZE 0 for none or the side); prints JSON with the image count.
"""

import json
import sys
from pathlib import Path

from img2dataset import download


def main() -> None:
    files, out, fmt, resize = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    paths = sorted(files.glob("*.png"))
    url_list = out.with_suffix(".urls.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    url_list.write_text("".join(f"file://{p}\n" for p in paths))
    options = {"resize_mode": "keep_ratio", "image_size": resize} if resize else {"resize_mode": "no"}
    download(
        url_list=str(url_list),
        input_format="txt",
        output_folder=str(out),
        output_format=fmt,
        encode_format="png",
        encode_quality=1,
        processes_count=2,
        thread_count=16,
        number_sample_per_shard=10_000,
        disable_all_reencoding=not resize,
        enable_wandb=False,
        distributor="multiprocessing",
        **options,
    )
    print(json.dumps({"images": len(paths)}))


if __name__ == "__main__":
    main()
