"""How the entry points show an error a user can fix: two lines on stderr and the error's exit code."""

from alexnet.base.errors import CheckpointError, ConfigError, report


def test_an_error_is_shown_in_two_lines_on_stderr_and_gives_its_exit_code(capsys):
    assert report(ConfigError("optim.lr=-0.01: wanted (0, inf)")) == 2  # a bad config: as argparse and Hydra exit
    assert capsys.readouterr() == (
        "",
        "error: optim.lr=-0.01: wanted (0, inf)\n(set HYDRA_FULL_ERROR=1 to see the traceback)\n",
    )
    assert report(CheckpointError("ckpt_path: ...")) == 1


def test_a_diverged_run_which_is_no_user_error_exits_with_1(capsys):
    assert report(FloatingPointError("the training loss is nan at step 12")) == 1  # it has no exit code of its own
    assert capsys.readouterr().err.startswith("error: the training loss is nan at step 12\n")
