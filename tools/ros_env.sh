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
# shellcheck shell=bash

# Source me: `source tools/ros_env.sh [VENV_DIR]` (default: the repo's .venv). Activates the venv
# made by tools/setup_env.sh and sets what ROS 2 processes from it need.
_neumap_venv=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}
if [ -f "$_neumap_venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$_neumap_venv/bin/activate"
  # ament_index lookups (package share dirs, rmw and typesupport libraries) search this path.
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$VIRTUAL_ENV:"*) ;;
    *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
  esac
  # The wheels ship Fast DDS only; a distro keeps the user's choice.
  export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
else
  echo "ros_env.sh: no venv at $_neumap_venv (run tools/setup_env.sh or make venv)" >&2
fi
unset _neumap_venv
