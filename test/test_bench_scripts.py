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
The benchmark scripts still start: their imports and options match the package.

Running them takes minutes to hours (see the README), so CI does not; but a
renamed function must not leave a script that fails at its first line.
"""

import os
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / 'bench'


@pytest.mark.parametrize('script', sorted(p.name for p in BENCH.glob('*.py')))
def test_bench_script_starts(script):
    """``python bench/SCRIPT --help`` exits 0 and prints its usage."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(BENCH.parent), os.environ.get('PYTHONPATH')])))
    result = subprocess.run([sys.executable, str(BENCH / script), '--help'], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f'usage: {script}')


def test_every_bench_script_is_found():
    """The four scripts the README names are there (a wrong BENCH path would test nothing)."""
    assert {'run_benchmarks.py', 'seed_spread.py', 'landmark_budget.py',
            'landmark_coverage.py'} <= {p.name for p in BENCH.glob('*.py')}
