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

"""XML files are well formed, and package manifests are valid format-3 package.xml files."""

from catkin_pkg.package import parse_package
from lint_files import repo_files, REPO_ROOT
from lxml import etree
import pytest

XML_FILES = list(repo_files('.xml'))


@pytest.mark.linter
@pytest.mark.xmllint
@pytest.mark.parametrize('path', XML_FILES, ids=[str(p.relative_to(REPO_ROOT)) for p in XML_FILES])
def test_xml_well_formed(path):
    """
    Each XML file parses with lxml (which raises on any well-formedness error).

    No schema validation: the schemas named in xml-model are remote and CI is offline; the
    manifest's content is checked by catkin_pkg below.
    """
    etree.parse(str(path))


@pytest.mark.linter
@pytest.mark.xmllint
@pytest.mark.parametrize(
    'path', [p for p in XML_FILES if p.name == 'package.xml'],
    ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_package_manifest(path):
    """Each package.xml is a valid format-3 manifest without catkin_pkg warnings."""
    warnings = []
    package = parse_package(str(path), warnings=warnings)
    assert package.package_format == 3
    assert not warnings, '\n'.join(warnings)
    assert package.licenses, 'no <license>'
    assert package.maintainers, 'no <maintainer>'


@pytest.mark.linter
@pytest.mark.xmllint
def test_root_manifest_describes_this_package():
    """The root package.xml names neumap_ros as an ament_python package."""
    assert REPO_ROOT / 'package.xml' in XML_FILES
    package = parse_package(str(REPO_ROOT / 'package.xml'))
    assert package.name == 'neumap_ros'
    assert package.get_build_type() == 'ament_python'
