"""memfit.training.run_lock: one writer per run folder."""
import json
import socket
import subprocess
import sys

import pytest

from memfit.training.run_lock import LOCK_FILE, RunLock, RunLockedError, read_holder


def test_lock_names_its_holder_and_refuses_a_second_writer(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                      "started": "2026-12-01 10:00:00 UTC"}))
        with pytest.raises(RunLockedError, match=rf"in use by another memfit run \(pid {holder.pid} on .*started "
                                                 r"2026-12-01 10:00:00 UTC\): wait for it .*another output folder"):
            with RunLock(tmp_path):
                pass
        assert read_holder(tmp_path)["pid"] == holder.pid  # the live holder's lock is untouched
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with RunLock(tmp_path):
        mine = read_holder(tmp_path)
        assert mine["pid"] != int(dead.stdout) and mine["host"] == socket.gethostname() and mine["started"]
        with RunLock(tmp_path):  # re-entrant: the job holds the folder, the loop it calls asks again
            pass
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


def test_an_unreadable_lock_left_by_a_crash_is_recovered(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    with RunLock(tmp_path):
        assert read_holder(tmp_path) is not None
