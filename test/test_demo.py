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

"""`neumap demo` (the README's first command) at a small scale, through real ROS processes."""

from neumap_testing import read_report
import pytest

from neumap_ros.core.mapping import MappingConfig
from neumap_ros.ros import demo


@pytest.fixture
def small_demo(monkeypatch, ros_domain):
    """
    Shrink the demo's scene and mapping; everything else runs as `make demo` runs it.

    The demo claims a ROS domain of its own and writes it to os.environ; ros_domain's
    monkeypatch puts the environment back afterwards.
    """
    monkeypatch.setattr(demo, 'DEMO_FRAMES', (60, 6))
    monkeypatch.setattr(demo, 'MappingConfig', lambda: MappingConfig(iterations=200))


def test_demo_maps_replays_and_reports(small_demo, tmp_path, capsys):
    """Both maps, a bag, the ROS replay, both reports and the plot; the floor is checked."""
    output = tmp_path / 'demo'   # tmp_path holds the ROS logs of the test
    assert demo.run_demo(output, quiet=True) == 0
    printed = capsys.readouterr().out
    assert 'neural (ROS replay)' in printed and 'features (offline)' in printed
    replay = read_report(output / 'replay' / 'report.json')
    baseline = read_report(output / 'baseline_report.json')
    assert replay['queries'] == baseline['queries'] == 6
    assert replay['recall']['0.05m_5deg'] >= demo.DEMO_FLOOR
    assert 0 < replay['map_bytes'] < baseline['map_bytes']
    assert (output / 'demo.png').stat().st_size > 10_000
    assert (output / 'replay' / 'estimate.tum').is_file()


def test_demo_never_clears_a_folder_it_does_not_own(tmp_path):
    """``--output`` naming a folder of other files is refused before anything is removed."""
    (tmp_path / 'scene').mkdir()
    (tmp_path / 'scene' / 'notes.txt').write_text('mine')
    (tmp_path / 'thesis.tex').write_text('mine too')
    with pytest.raises(ValueError, match='not a demo output folder'):
        demo.run_demo(tmp_path, quiet=True)
    assert (tmp_path / 'scene' / 'notes.txt').read_text() == 'mine'
    # An empty folder, or one of an earlier run (only the demo's names), becomes the demo's.
    empty = tmp_path / 'empty'
    demo._claim_output(empty)
    assert (empty / demo.OUTPUT_MARKER).exists()
    earlier = tmp_path / 'earlier'
    (earlier / 'query_bag').mkdir(parents=True)
    demo._claim_output(earlier)
    assert (earlier / demo.OUTPUT_MARKER).exists()
