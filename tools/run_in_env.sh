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

# Run a command inside the project's venv with the ROS 2 environment set:
#   tools/run_in_env.sh VENV_DIR CMD [ARGS...]
set -euo pipefail
venv=$(realpath -m "${1:?usage: $0 VENV_DIR CMD [ARGS...]}")
shift
[[ $# -gt 0 ]] || { echo "usage: $0 VENV_DIR CMD [ARGS...]" >&2; exit 2; }
[[ -f "$venv/bin/activate" ]] || { echo "run_in_env: no venv at $venv" >&2; exit 1; }
set +u  # activate reads unset variables
# shellcheck source=tools/ros_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/ros_env.sh" "$venv"
set -u
exec "$@"
