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
Small harness for tests that talk to ROS 2 nodes in this process and in child processes.

Imported only by tests that need ROS, so tests of the ROS-free core never load rclpy. The
fixtures built on it live in conftest.py (``ros_domain``, ``ros_context``, ``ros_process``).
"""

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Callable, Iterable, List, Optional, Sequence, Union

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

# How often the polling helpers look again; short enough not to slow tests down.
POLL_PERIOD = 0.05
DEFAULT_TIMEOUT = 15.0


class RosProcess:
    """A node or script running as a child process, its stdout and stderr in one log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: pathlib.Path,
                 env: Optional[dict] = None, cwd: Optional[pathlib.Path] = None):
        """Start ``argv`` with output going to ``log_path``."""
        self.name = name
        self.argv = list(argv)
        self.log_path = pathlib.Path(log_path)
        with open(self.log_path, 'wb') as log_file:
            # The child keeps its own handle to the file; ours is not needed afterwards.
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, env=env, cwd=cwd)

    def log(self) -> str:
        """Return what the process has written so far."""
        try:
            return self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def assert_running(self) -> None:
        """Fail with the process's log if it has exited."""
        code = self.popen.poll()
        if code is not None:
            raise AssertionError(
                f'process {self.name} exited with code {code}; its log:\n{self.log()}')

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Stop with SIGINT as Ctrl-C would, SIGKILL after ``timeout`` s; return the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def _is_script(target: str) -> bool:
    return target.endswith('.py') or os.sep in target


def python_argv(target: Union[str, os.PathLike], args: Sequence[str] = (),
                ros_args: Sequence[str] = ()) -> List[str]:
    """
    Return the command line that runs a module (``pkg.mod``) or a script (``*.py``).

    The child uses this interpreter, so it runs in the same environment as the tests.
    """
    target = os.fspath(target)
    if _is_script(target):
        argv = [sys.executable, target]
    else:
        argv = [sys.executable, '-m', target]
    argv += [str(a) for a in args]
    if ros_args:
        argv += ['--ros-args', *[str(a) for a in ros_args]]
    return argv


def process_name(target: Union[str, os.PathLike]) -> str:
    """Return a short name for a module (its last component) or a script (its stem)."""
    target = os.fspath(target)
    return pathlib.Path(target).stem if _is_script(target) else target.rsplit('.', 1)[-1]


def start_process(log_dir: pathlib.Path, target: Union[str, os.PathLike],
                  args: Sequence[str] = (), ros_args: Sequence[str] = (),
                  name: Optional[str] = None,
                  cwd: Optional[pathlib.Path] = None) -> RosProcess:
    """
    Start a node or script as a child process logging to ``log_dir/<name>.log``.

    The child inherits os.environ (so the test's ROS domain) with unbuffered output, so its log
    is complete up to the moment a test fails.
    """
    name = name or process_name(target)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return RosProcess(name, python_argv(target, args, ros_args), log_dir / f'{name}.log',
                      env=env, cwd=cwd)


def _check_alive(watch: Iterable[RosProcess]) -> None:
    for process in watch:
        process.assert_running()


def _wait_for_count(count: Callable[[], int], n: int, timeout: float, what: str,
                    watch: Iterable[RosProcess]) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = count()
        if found >= n:
            return found
        _check_alive(watch)
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: found {found}, expected >= {n} within {timeout} s')
        time.sleep(POLL_PERIOD)


def wait_for_publishers(node: Node, topic: str, n: int = 1, timeout: float = DEFAULT_TIMEOUT,
                        watch: Iterable[RosProcess] = ()) -> int:
    """
    Wait until ``topic`` has at least ``n`` publishers in the graph; return how many.

    Raises AssertionError on timeout, or at once with its log if a watched process exits.
    """
    return _wait_for_count(lambda: node.count_publishers(topic), n, timeout,
                           f'publishers of {topic}', list(watch))


def wait_for_subscribers(node: Node, topic: str, n: int = 1, timeout: float = DEFAULT_TIMEOUT,
                         watch: Iterable[RosProcess] = ()) -> int:
    """
    Wait until ``topic`` has at least ``n`` subscribers in the graph; return how many.

    Raises AssertionError on timeout, or at once with its log if a watched process exits.
    """
    return _wait_for_count(lambda: node.count_subscribers(topic), n, timeout,
                           f'subscribers of {topic}', list(watch))


def spin_until(spinner: Union[Executor, Node], predicate: Callable[[], bool],
               timeout: float = DEFAULT_TIMEOUT, watch: Iterable[RosProcess] = (),
               what: str = 'condition') -> None:
    """
    Spin callbacks until ``predicate()`` is true.

    ``spinner`` is an executor, or a node (spun by its executor, or by a temporary one).
    Raises AssertionError on timeout, or at once with its log if a watched process exits.
    """
    watch = list(watch)
    temporary = None
    if isinstance(spinner, Node):
        executor = spinner.executor
        if executor is None:
            executor = temporary = SingleThreadedExecutor(context=spinner.context)
            executor.add_node(spinner)
    else:
        executor = spinner
    try:
        deadline = time.monotonic() + timeout
        while not predicate():
            _check_alive(watch)
            if time.monotonic() > deadline:
                raise AssertionError(f'{what} not met within {timeout} s')
            executor.spin_once(timeout_sec=POLL_PERIOD)
    finally:
        if temporary is not None:
            temporary.shutdown()


@dataclasses.dataclass
class RosContext:
    """An initialised rclpy context with one node and an executor spinning it."""

    context: Context
    node: Node
    executor: SingleThreadedExecutor

    def spin_until(self, predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT,
                   watch: Iterable[RosProcess] = (), what: str = 'condition') -> None:
        """Spin this context's executor until ``predicate()`` is true (see :func:`spin_until`)."""
        spin_until(self.executor, predicate, timeout, watch, what)

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def open_context(node_name: str = 'test_node') -> RosContext:
    """
    Initialise a fresh rclpy context (domain from os.environ) with a node in an executor.

    A context of its own, not the default one, so several tests in one process do not share
    state; no signal handlers, so Ctrl-C keeps stopping pytest as usual.
    """
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = rclpy.create_node(node_name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
    except BaseException:
        context.try_shutdown()
        raise
    return RosContext(context, node, executor)
