"""Fetch short Yelp (Li et al. 2019) with ``datasets`` and rebuild its unlabeled pool.

The labeled files come unchanged from GitHub ``zhangjf-nlp/DG-VAEs`` (the only public
copy we know of; no Hugging Face Hub data set with this preprocessing and these
splits could be verified). The original 100k-line unlabeled file is lost, so the
pool is rebuilt as data_cards/short_yelp.md describes: Shen et al.'s
``sentiment.{dev,test}.{0,1}`` (GitHub ``shentianxiao/language-style-transfer``),
minus every line whose text occurs in valid or test, shuffled with
``random.Random(20200427)``.

    python recipes/prepare_short_yelp.py --out-dir data/short_yelp      # needs network
    python recipes/yelp_table3.py quick --data-dir data/short_yelp

``--short-yelp-source`` and ``--shen-source`` also take local folders, which is how the
offline test checks that the pool comes out byte for byte (sha256 below).
"""

from __future__ import annotations

import argparse
import hashlib
import random
from pathlib import Path

SHORT_YELP_URL = ("https://raw.githubusercontent.com/zhangjf-nlp/DG-VAEs/"
                  "6ad9e59f4af66fb8de64b7b0d03ba0c9ad3175f0/datasets/short_yelp_data")
SHEN_URL = ("https://raw.githubusercontent.com/shentianxiao/language-style-transfer/"
            "f078a9d342705ea62b04dd3ac5926d3467c2ac63/data/yelp")
LABELED = ["train.100", "train.500", "train.1000", "train.2000", "train.10000", "valid", "test"]
SHEN_FILES = ["sentiment.dev.0", "sentiment.dev.1", "sentiment.test.0", "sentiment.test.1"]
POOL_SEED = 20200427
POOL_SHA256 = "d1b2a966ab2445396ce31f4de7bf9d46161fc17508517ad39632d14dc3264430"


def fetch_lines(source, name):
    """Lines of ``source/name`` (a URL or a folder) through ``datasets``' text loader."""
    import datasets

    location = f"{source.rstrip('/')}/{name}" if "://" in source else str(Path(source) / name)
    dataset = datasets.load_dataset("text", data_files={"file": location}, split="file",
                                    keep_linebreaks=False)
    return list(dataset["text"])


def build_pool(shen_lines, held_out_texts):
    """Shen dev+test lines minus held-out texts, in a fixed shuffled order."""
    held_out = set(held_out_texts)
    pool = [line for line in shen_lines if line not in held_out]
    random.Random(POOL_SEED).shuffle(pool)
    return pool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", required=True, help="folder to write the short Yelp files into")
    parser.add_argument("--short-yelp-source", default=SHORT_YELP_URL,
                        help="URL or folder of short_yelp.*.txt (default: the DG-VAEs commit)")
    parser.add_argument("--shen-source", default=SHEN_URL,
                        help="URL or folder of Shen's sentiment.* files (default: the pinned commit)")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held_out = []
    for name in LABELED:
        lines = fetch_lines(args.short_yelp_source, f"short_yelp.{name}.txt")
        (out / f"short_yelp.{name}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        if name in ("valid", "test"):
            held_out += [line.split("\t", 1)[1] for line in lines]
        print(f"short_yelp.{name}.txt: {len(lines):,} lines")
    shen = [line for name in SHEN_FILES for line in fetch_lines(args.shen_source, name)]
    pool = build_pool(shen, held_out)
    content = "".join(line + "\n" for line in pool).encode("utf-8")
    (out / "short_yelp.unlabeled.txt").write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    match = "matches" if digest == POOL_SHA256 else "DOES NOT match"
    print(f"short_yelp.unlabeled.txt: {len(pool):,} lines from {len(shen):,} Shen lines; sha256 {digest} "
          f"{match} data_cards/short_yelp.md")
    return digest


if __name__ == "__main__":
    main()
