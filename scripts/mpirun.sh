#!/usr/bin/env bash
# mpirun with the settings wengert's MPI tests and benchmarks use; the one place they live.
#   scripts/mpirun.sh -np 2 build/release/apps/train/wengert-train --batch 128 …
#
#   --allow-run-as-root   OpenMPI refuses to run as root without it (containers, CI);
#   --oversubscribe       more ranks than the slots OpenMPI counts (2 ranks on 1 core is fine);
#   --bind-to none        leave placement to the kernel: a machine shared with other jobs;
#   --mca btl self,vader  in-process and shared-memory transport only (one machine);
#   --mca btl_vader_single_copy_mechanism none
#                         vader's single-copy mode uses CMA (process_vm_readv), which containers
#                         forbid without ptrace rights: copy through shared memory instead;
#   --mca pml ob1         the plain point-to-point layer (UCX, if present, probes for hardware).
#   -x OPENBLAS_NUM_THREADS
#                         exported to every rank (default 1: one BLAS thread per rank).
# Extra mpirun options may precede the program, e.g. -np 4 or -H host1,host2 (see the README's
# "On a real cluster": across machines use --mca btl self,vader,tcp instead).
set -euo pipefail
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
exec mpirun --allow-run-as-root --oversubscribe --bind-to none \
  --mca btl "${WENGERT_MPI_BTL:-self,vader}" --mca btl_vader_single_copy_mechanism none \
  --mca pml ob1 -x OPENBLAS_NUM_THREADS "$@"
