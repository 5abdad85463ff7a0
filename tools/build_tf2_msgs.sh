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

# Generate and install tf2_msgs (tools/tf2_msgs) into a venv whose ROS 2 comes from wheels.
#
#   tools/build_tf2_msgs.sh VENV_DIR
#
# Uses the rosidl generators and ament_cmake from the venv's wheels and plain cmake; the build
# directory is temporary. Afterwards `from tf2_msgs.msg import TFMessage` works in the venv.
set -euo pipefail

start=$EPOCHREALTIME
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/tf2_msgs" && pwd)
venv=$(realpath -m "${1:?usage: $0 VENV_DIR}")

die() {
  echo "build_tf2_msgs: error: $*" >&2
  exit 1
}

[[ -x "$venv/bin/python" ]] || die "no venv at $venv"
command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"
command -v c++ >/dev/null || die "no C++ compiler found (apt-get install g++)"
[[ -f "$venv/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ]] \
  || die "rosidl generators missing from $venv (pip install -r requirements-ros.txt)"

build=$(mktemp -d "${TMPDIR:-/tmp}/tf2_msgs-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
log="$build/build.log"

# ament and rosidl find their packages (and the generators their templates) through these.
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"

echo "build_tf2_msgs: building tf2_msgs into $venv"
if ! {
  cmake -S "$src" -B "$build" -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$venv" \
    -DBUILD_TESTING=OFF \
    -DPython3_EXECUTABLE="$venv/bin/python" \
    && cmake --build "$build" --parallel "$(nproc)" \
    && cmake --install "$build"
} >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "tf2_msgs build failed (log above)"
fi

"$venv/bin/python" -c \
  'from tf2_msgs.msg import TFMessage; TFMessage.__class__.__import_type_support__()' \
  || die "tf2_msgs was installed but cannot be imported from $venv"
echo "build_tf2_msgs: done in $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $start }") s"
