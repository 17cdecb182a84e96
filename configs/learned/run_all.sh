#!/usr/bin/env bash
# The learned-denoiser study (README, "Learned denoisers"): train both networks, learn a
# schedule for each, compare. Run from the repository root; ~1 h on a 2-core CPU. A rerun
# resumes every step (trainings and fits from their checkpoints, compare cells kept).
set -euo pipefail
cd "$(dirname "$0")/../.."
for study in gm_d1000 digits; do
  noisesched train "configs/learned/${study}_train.toml"
  noisesched fit "configs/learned/${study}_fit.toml"
  noisesched compare "configs/learned/${study}_compare.toml"
done
