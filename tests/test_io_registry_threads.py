"""The reader registry loads its built-in readers once, safely, when several threads ask at the same time (two
requests reaching a fresh ``ecgfm serve``, or the loader threads of ``ecgfm predict``)."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import threading
from ecgfm.io import supported_extensions
barrier = threading.Barrier(8)
results = []
def first_call():
    barrier.wait()
    results.append(frozenset(supported_extensions()))
threads = [threading.Thread(target=first_call) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(set(results)), ".hea" in min(results, key=len))
"""


def test_concurrent_first_calls_see_every_reader():
    # a fresh interpreter: the registry must not be loaded yet
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["1", "True"], out.stdout + out.stderr
