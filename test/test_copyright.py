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
Every source file starts with the project's Apache-2.0 copyright notice.

Our own check, as ament_copyright is not published as a wheel. A file may open with a shebang
and a coding line; the notice must follow at once, line for line. Empty files carry nothing to
license and are left out, as ament_copyright does.
"""

import re

from lint_files import repo_files, REPO_ROOT
import pytest

# Sources with '#' comments: Python (launch files included), shell, CMake and ROS interfaces.
SUFFIXES = ('.py', '.sh', 'CMakeLists.txt', '.cmake', '.msg', '.srv', '.action')

COPYRIGHT = re.compile(r'# Copyright \d{4}(-\d{4})? neumap_ros contributors')
LICENSE_LINES = [
    '#',
    '# Licensed under the Apache License, Version 2.0 (the "License");',
    '# you may not use this file except in compliance with the License.',
    '# You may obtain a copy of the License at',
    '#',
    '#     http://www.apache.org/licenses/LICENSE-2.0',
    '#',
    '# Unless required by applicable law or agreed to in writing, software',
    '# distributed under the License is distributed on an "AS IS" BASIS,',
    '# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.',
    '# See the License for the specific language governing permissions and',
    '# limitations under the License.',
]


def notice_problem(text):
    """Return why ``text`` lacks the notice, or None when it has it."""
    lines = text.splitlines()
    while lines and (lines[0].startswith('#!') or re.match(r'#.*coding[:=]', lines[0])):
        lines.pop(0)
    if not lines or not COPYRIGHT.fullmatch(lines[0].rstrip()):
        return 'does not start with "# Copyright <year> neumap_ros contributors"'
    for expected, actual in zip(LICENSE_LINES, lines[1:] + [''] * len(LICENSE_LINES)):
        if actual.rstrip() != expected:
            return f'license notice differs at "{actual}" (expected "{expected}")'
    return None


def test_notice_check_itself():
    """The check accepts this file's own header and rejects a changed one."""
    own = (REPO_ROOT / 'test' / 'test_copyright.py').read_text()
    assert notice_problem(own) is None
    assert notice_problem('#!/usr/bin/env python3\n' + own) is None
    assert notice_problem(own.replace('Version 2.0', 'Version 3.0', 1)) is not None
    assert notice_problem('"""Docstring first."""\n' + own) is not None


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    """Every non-empty source file has the notice at its top."""
    problems = []
    checked = 0
    for path in repo_files(*SUFFIXES):
        text = path.read_text(encoding='utf-8', errors='replace')
        if not text.strip():
            continue
        checked += 1
        problem = notice_problem(text)
        if problem:
            problems.append(f'{path.relative_to(REPO_ROOT)}: {problem}')
    assert checked, 'no source files found'
    assert not problems, f'{len(problems)} files lack the copyright notice:\n' + '\n'.join(
        problems)
