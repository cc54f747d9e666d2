"""`bioplast.allocation`: freed memory is kept (glibc only) and ensembles are chunked."""

import resource
import sys

import pytest
import torch

from bioplast.allocation import CHUNK_VALUES, chunk_members, keep_freed_memory


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_blocks_stop_faulting_pages_in():
    """A 64 MiB tensor (above glibc's largest mmap threshold) allocated, written and freed
    again and again: with glibc's defaults every round faults its 16384 pages in; with the
    memory kept, the heap settles after a few rounds (alignment remainders) and then
    reuses its pages."""
    if not keep_freed_memory():
        pytest.skip("not glibc")
    n_values = 16 << 20  # 64 MiB of float32

    def faults_of_one_round() -> int:
        before = minor_faults()
        block = torch.empty(n_values)
        block.fill_(1.0)
        del block
        return minor_faults() - before
    faults = [faults_of_one_round() for _ in range(16)]
    assert max(faults[-4:]) < 1000, faults


def test_chunks_hold_at_most_chunk_values_and_at_least_one_member():
    members = list(range(10))
    assert chunk_members(members, CHUNK_VALUES // 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert chunk_members(members, 2 * CHUNK_VALUES) == [[m] for m in members]
    assert chunk_members(members, 1) == [members]
