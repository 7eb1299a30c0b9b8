#!/bin/bash
# The README's main command timed from a checkout in a new virtual environment, in two parts
# (install, run): bash benchmarks/time_main_command.sh CHECKOUT OUT_PREFIX [env VAR=VALUE ...]
# e.g. ... /tmp/quick_avx2 env ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 (the AVX2 cap). Run it on
# a fresh clone (git clone . /tmp/fresh) and an idle machine; the last line is the figures.
set -e
cd "$1"
OUT="$2"; shift 2
python3 -m venv /tmp/venv_quick_$$ && source /tmp/venv_quick_$$/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
t0=$(date +%s.%N)
pip install -q torch==2.13.0 && pip install -q -e ".[tuning,baselines]"
t1=$(date +%s.%N)
"$@" python recipes/yelp_table3.py quick --data-dir ../shared/data/short_yelp_li2019 --verbose 0 --out-prefix "$OUT"
t2=$(date +%s.%N)
echo "install_s $(echo "$t1-$t0" | bc) run_s $(echo "$t2-$t1" | bc) total_s $(echo "$t2-$t0" | bc)"
rm -rf /tmp/venv_quick_$$
