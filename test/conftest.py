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
Shared fixtures: a private ROS domain per test, ROS contexts and processes, real data.

Nothing here imports rclpy at import time: the ROS harness (ros_graph) is loaded by the
fixtures that need it, so tests of the ROS-free core do not pay for it.
"""


import pytest

_PROCESSES = pytest.StashKey[list]()


@pytest.fixture
def ros_domain(monkeypatch, tmp_path, request):
    """
    Give the test (and the processes it starts) a ROS domain of its own, on this host only.

    Returns the domain id. The environment is restored after the test.
    """
    from neumap_ros.ros.ros_domain import claim_domain_id
    # Claimed, not drawn: a concurrent run (or `make demo`) on this host never shares it.
    domain_id, lock = claim_domain_id()
    request.addfinalizer(lock.close)
    log_dir = tmp_path / 'ros_log'
    log_dir.mkdir()
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain_id))
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    monkeypatch.delenv('ROS_STATIC_PEERS', raising=False)
    monkeypatch.setenv('ROS_LOG_DIR', str(log_dir))
    # Scratch folders of the processes a test starts (a map builder staging frames) land in
    # the test's own folder, and go with it even when a process had to be killed.
    monkeypatch.setenv('TMPDIR', str(tmp_path))
    return domain_id


@pytest.fixture
def ros_context(ros_domain):
    """Yield a ros_graph.RosContext: an initialised rclpy context, a node and its executor."""
    import ros_graph

    ros = ros_graph.open_context(f'test_node_{ros_domain}')
    try:
        yield ros
    finally:
        ros.close()


@pytest.fixture
def ros_process(ros_domain, tmp_path, request):
    """
    Return ``start(target, *args, ros_args=(), name=None)`` that runs a node or script.

    ``target`` is a module (``python -m target``) or a path to a script. Each process logs to
    ``tmp_path/<name>.log``, is attached to the report if the test fails, and is stopped
    (SIGINT, then SIGKILL) at teardown.
    """
    import ros_graph

    processes = request.node.stash.setdefault(_PROCESSES, [])

    def start(target, *args, ros_args=(), name=None, cwd=None):
        # Distinct names, so two processes of one test never share a log file.
        name = name or ros_graph.process_name(target)
        if any(process.name == name for process in processes):
            name = f'{name}-{len(processes)}'
        process = ros_graph.start_process(tmp_path, target, args, ros_args, name, cwd)
        processes.append(process)
        return process

    yield start
    for process in reversed(processes):
        process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the test's ROS processes to the report of a failed test."""
    report = yield
    if report.failed:
        for process in item.stash.get(_PROCESSES, []):
            state = process.popen.poll()
            state = 'running' if state is None else f'exit code {state}'
            report.sections.append(
                (f'log of process {process.name} ({state}, {process.log_path})', process.log()))
    return report


@pytest.fixture(scope='session')
def shared_data_dir():
    """Return the shared real-data folder; fail (never skip) when it is missing."""
    from neumap_ros.core.data_paths import require_shared_data

    try:
        return require_shared_data()
    except FileNotFoundError as error:
        message = str(error)
    # Outside the except block, so the report shows the message and no exception chain.
    pytest.fail(message, pytrace=False)
