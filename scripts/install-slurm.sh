#!/usr/bin/env bash
# Install what oceandata.testing.slurm needs for a real Slurm in the tests:
# - single_node_slurm: Debian's slurm-wlm (slurmctld, slurmd and the slurm-client commands
#   sbatch/squeue/sacct/sacctmgr/scontrol/scancel/sinfo) and munge;
# - multi_node_slurm (several slurmd, each in its own network namespace, and slurmdbd so
#   that sacct is real): slurmdbd, MariaDB's server and client cores (mariadbd,
#   mariadb-install-db and the my_print_defaults it calls) and iproute2 (ip netns).
# Only when a program is missing and we are root; a no-op otherwise (without root the
# Slurm tests say they are skipped and why, outside CI).
# The packages' own services are not used (and not started: no systemd here, and
# mariadb-server-core has no service): the fixture starts private daemons.
set -euo pipefail

PACKAGES=(slurm-wlm munge slurmdbd mariadb-server-core mariadb-client-core iproute2)
PROGRAMS=(slurmctld slurmd munged sbatch squeue sacct sacctmgr scontrol scancel sinfo
          slurmdbd mariadbd mariadb-install-db my_print_defaults ip)
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
