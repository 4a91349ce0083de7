"""Hunt 20 (lead): a full disk in a command that writes its output folder whole (train) names the
folder it was writing, not its temporary name, and does not promise that a rerun continues."""
from __future__ import annotations

import errno

import pytest
import typer

from weakstil.cli.errors import reports_errors
from weakstil.errors import from_os_error


def test_a_file_in_a_temporary_output_folder_is_named_by_the_folder_it_becomes(tmp_path):
    written = tmp_path / ".model.tmp-0123abcd" / "folds" / "fold_1.safetensors"
    error = from_os_error(OSError(errno.ENOSPC, "No space left on device", str(written)))
    assert str(error.path) == str(tmp_path / "model" / "folds" / "fold_1.safetensors")
    # a folder that only looks like one keeps its name
    plain = tmp_path / ".model.tmp-notahex" / "x.json"
    assert str(from_os_error(OSError(errno.ENOSPC, "No space", str(plain))).path) == str(plain)


@pytest.mark.parametrize("name, rerun", [("train", "a rerun starts over"), ("score", "a rerun continues where"),
                                         ("pretrain", "--resume continues from its last checkpoint")])
def test_a_full_disk_says_what_a_rerun_of_that_command_does(name, rerun, tmp_path, capsys):
    def command():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".model.tmp-0123abcd" / "model.json"))

    command.__name__ = name
    with pytest.raises(typer.Exit) as stopped:
        reports_errors(command)()
    assert stopped.value.exit_code == 1
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and rerun in line and ".tmp-" not in line, line
    assert str(tmp_path / "model" / "model.json") in line
