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


"""Progress bars that stay readable in logs."""

import sys

from tqdm import tqdm

# Off a terminal (CI logs, launch output, redirected files) every redraw becomes a new chunk of
# text, so bars there redraw rarely instead of ten times a second.
LOG_INTERVAL_S = 30.0


def progress_bar(iterable, enabled: bool = True, **kwargs) -> tqdm:
    """Return a tqdm bar over ``iterable`` (silent when not ``enabled``)."""
    terminal = hasattr(sys.stderr, 'isatty') and sys.stderr.isatty()
    kwargs.setdefault('mininterval', 0.1 if terminal else LOG_INTERVAL_S)
    return tqdm(iterable, disable=not enabled, **kwargs)
