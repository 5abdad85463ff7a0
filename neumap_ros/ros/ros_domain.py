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

"""
A ROS domain id of one's own on this host, for tests and the demo.

Two runs that draw the same random id share topics and node names (``/diagnostics``,
``localizer_node``) and read each other's messages. A lock file per id, held while the id is
in use, makes concurrent runs on one machine pick different ids; the kernel drops the lock
when the holder exits, however it exits.
"""

import fcntl
import os
import random
import tempfile
from typing import IO, Tuple

# ROS 2 domain ids that map to valid DDS ports on every platform (REP 2005 ranges: 0-101).
DOMAIN_IDS = range(1, 102)


def claim_domain_id() -> Tuple[int, IO]:
    """
    Return a domain id no other claimant on this host holds, and the lock that holds it.

    Close the returned file to release the id. Raises RuntimeError when every id is held.
    """
    for domain_id in random.sample(DOMAIN_IDS, len(DOMAIN_IDS)):
        path = os.path.join(tempfile.gettempdir(), f'neumap_ros-domain-{domain_id}.lock')
        lock = open(path, 'a')
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        return domain_id, lock
    raise RuntimeError(f'every ROS domain id in {DOMAIN_IDS} is in use on this host')
