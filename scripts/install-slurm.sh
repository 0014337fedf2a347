#!/usr/bin/env bash
# Install what oceandata.testing.slurm needs for a real single-node Slurm: Debian's
# slurm-wlm (slurmctld, slurmd and the slurm-client commands sbatch/squeue/sacct/scontrol/
# scancel/sinfo) and munge. Only when a program is missing and we are root; a no-op
# otherwise (without root the Slurm tests say they are skipped and why, outside CI).
# The packages' own services are not used: the fixture starts private daemons.
set -euo pipefail

PACKAGES=(slurm-wlm munge)
PROGRAMS=(slurmctld slurmd munged sbatch squeue sacct scontrol scancel sinfo)
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"

missing=()
for program in "${PROGRAMS[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("$program")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-slurm: missing ${missing[*]}; run as root (apt-get install ${PACKAGES[*]})," \
       "the Slurm tests are skipped until then" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${PACKAGES[@]}" >/dev/null
}
if ! apt_install; then
  apt-get update -qq
  apt_install
fi
slurmctld -V
