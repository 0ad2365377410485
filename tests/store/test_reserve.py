"""The reserve beside a database: real space that a full disk gives back for the run's end."""

from __future__ import annotations

import os
from pathlib import Path

from ares_stream.store.reserve import SIZE, Reserve


def test_the_reserve_is_allocated_space_and_release_gives_it_back(tmp_path: Path) -> None:
    r = Reserve(tmp_path / "paper.db")
    assert r.keep()
    st = os.stat(tmp_path / "paper.db.reserve")
    assert st.st_size == SIZE and st.st_blocks * 512 >= SIZE  # allocated, not a sparse file
    assert r.keep()  # again: still one reserve, same size
    assert os.stat(tmp_path / "paper.db.reserve").st_size == SIZE
    assert r.release() and not (tmp_path / "paper.db.reserve").exists()
    assert not r.release()


def test_no_reserve_where_it_cannot_be_made(tmp_path: Path) -> None:
    assert not Reserve(tmp_path / "missing-dir" / "paper.db").keep()
    assert not Reserve(":memory:").keep() and not Reserve(":memory:").release()
