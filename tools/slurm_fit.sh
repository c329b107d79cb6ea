#!/bin/bash
# Multi-node `crosspose fit` under SLURM: one task per GPU, Lightning picks up rank and world size
# from SLURM (SLURMEnvironment), so trainer.devices / trainer.num_nodes must match what is asked here.
#   sbatch --nodes 2 --gpus-per-node 4 tools/slurm_fit.sh --config configs/ddp/slurm_2nodes_4gpu.yaml \
#     --data.train_file train.json --data.val_file val.json --model.num_keypoints 16
# Resubmitting the same command resumes from the run folder's last.ckpt (add --ckpt_path last).
#SBATCH --job-name=crosspose-fit
#SBATCH --nodes=2
#SBATCH --gpus-per-node=4
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-.}"
# the venv made by `make install` in the repository (shared file system assumed)
CROSSPOSE="${CROSSPOSE:-.venv/bin/crosspose}"
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-8}"
# NCCL picks the fastest interconnect itself; uncomment to debug hangs
# export NCCL_DEBUG=INFO

# --signal=SIGUSR1@90 lets Lightning save a checkpoint and requeue before the time limit
# (after "$@": a value given after --config overrides the file's)
srun --kill-on-bad-exit=1 "$CROSSPOSE" fit "$@" \
  --trainer.num_nodes "${SLURM_JOB_NUM_NODES:-1}" \
  --trainer.devices "${SLURM_NTASKS_PER_NODE:-1}"
