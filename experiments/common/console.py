"""What a binary prints: its own lines, Keras's progress, and nothing else.

TensorFlow's C++ logs (CUDA probes, CPU features, XLA notices), Python
warnings of the libraries, TensorFlow's Python logger and Weights & Biases'
banners are hidden unless `--verbose=3`. `experiments/__init__.py` calls
`setup` when a binary starts, before TensorFlow is imported: C++ logs are
written to file descriptor 2 directly, so they are filtered there, line by
line (a traceback or any other line passes), for the binary and for the
processes it starts. The choice travels to those processes in the
environment variable `KERASSEQ_CONSOLE`.
"""

import atexit
import contextlib
import logging
import os
import re
import sys
import threading
import warnings

# --verbose at which the libraries' own logs and warnings are shown
LIBRARY_LOGS = 3
_ENV = "KERASSEQ_CONSOLE"
# lines of TensorFlow's and XLA's C++ logging: `I0000 00:00:... file.cc:31]`,
# the banner absl prints before it is initialised, and the CPU-feature note
_NATIVE_LOG = re.compile(
    rb"^([IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|To enable the following instructions: )"
)


def verbosity_from_argv(argv):
    """The value of `--verbose` in `argv` (2, the flag's default, if absent
    or unreadable: the flag parser reports a bad value later)."""
    for i, arg in enumerate(argv):
        value = None
        if arg.startswith("--verbose="):
            value = arg.split("=", 1)[1]
        elif arg == "--verbose" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            try:
                level = int(value)
            except ValueError:
                return 2
            return level if 0 <= level <= LIBRARY_LOGS else 2
    return 2


def setup(argv):
    """Called as a binary starts: hides the libraries' logs unless
    `--verbose=3` is in `argv`, here and in the processes started later."""
    quiet = verbosity_from_argv(argv) < LIBRARY_LOGS
    os.environ[_ENV] = "quiet" if quiet else "verbose"
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("WANDB_SILENT", "true")
        _filter_native_logs()
        quiet_python_logs()


def is_quiet():
    """Whether this process (a binary or one it started) is quiet."""
    return os.environ.get(_ENV) == "quiet"


def quiet_python_logs():
    """Hides Python warnings and TensorFlow's and absl's Python logs below
    errors (the binary's own lines are printed, not logged)."""
    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def _filter_native_logs():
    """Routes file descriptor 2 through a thread that drops the lines of
    `_NATIVE_LOG` and passes every other line on (a line that cannot be
    one of them, a progress bar's, passes at once, unfinished)."""
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    end = b"\0end of kerasseq's stderr filter\n"

    def pump():
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line + b"\n" == end:
                        return
                    if not _NATIVE_LOG.match(line):
                        os.write(original, line + b"\n")
                if pending and pending[:1] not in b"IWET\0":
                    os.write(original, pending)
                    pending = b""

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore():
        # the marker ends the thread once all before it has passed (the
        # processes started from here may hold the pipe open longer)
        sys.stderr.flush()
        os.write(2, end)
        thread.join(timeout=5)
        os.dup2(original, 2)

    atexit.register(restore)


def say(config, message):
    """Prints one of the binary's own lines (not at `--verbose=0`)."""
    if config.verbose:
        print(message, flush=True)


# where training stands, for the line Ctrl-C prints (set by the train
# loop's `callbacks.Checkpoints`)
position = {}


def interrupted_line(program):
    """What Ctrl-C prints: the step reached and the step the same command
    resumes from, where a run in this process said them."""
    if not position:
        return (
            f"{program}: interrupted. Each model's run directory keeps its "
            "last checkpoint: the same command resumes from it."
        )
    unit = position["unit"]
    return (
        f"{program}: interrupted at {unit} {position['at']} of "
        f"{position['model']}; the same command resumes from {unit} "
        f"{position['resumes_at']} (its last checkpoint)."
    )


@contextlib.contextmanager
def usage_errors():
    """Within it, a `ValueError` (a setting the user can fix) is raised as
    `absl.app.UsageError`, which `run` prints as one line (exit 2)."""
    from absl import app

    try:
        yield
    except ValueError as error:
        raise app.UsageError(str(error)) from error


# absl's flags that print help and exit
_HELP_FLAGS = {"?", "help", "helpfull", "helpshort", "helpxml"}


def _asks_for_help(args):
    """Whether command-line `args` name one of absl's help flags."""
    return any(
        arg.startswith("-") and arg.split("=")[0].lstrip("-") in _HELP_FLAGS
        for arg in args
    )


def run(main):
    """`absl.app.run(main)` as the binaries want it.

    - A usage error (a flag the parser refuses, or `app.UsageError`,
      raised for anything the user can fix: a flag, the data, the
      workdir) prints one line and how to get help, and exits with 2
      (absl prints "FATAL" or the whole flag list, and exits with 1).
    - `--help` (and absl's other help flags) exits with 0, not absl's 1.
    - Ctrl-C ends the program with 130, the shell's code for it, and a line
      saying that the same command resumes (the run directories keep their
      last checkpoint).
    """
    from absl import app
    from absl import flags

    program = os.path.basename(sys.argv[0]).removesuffix(".py")
    # --help lists every flag of the binary, those defined in
    # experiments/common too (absl lists the main module's alone)
    flag_values = flags.FLAGS
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module.startswith("experiments."):
            for flag in module_flags:
                flag_values.register_key_flag_for_module(sys.argv[0], flag)

    def usage_error(message):
        print(f"{program}: error: {message}", file=sys.stderr)
        print(
            f"Run `python -m experiments.{program} --help` for its flags.",
            file=sys.stderr,
        )
        sys.exit(2)

    def parse_flags(argv):
        # a flag the parser refuses (an unknown name, a value outside an
        # enum, a number that is not one) is a usage error like the others
        try:
            return flag_values(argv)
        except flags.Error as error:
            usage_error(error)
        except SystemExit as done:
            # absl's --help and --helpfull print the flags and exit with 1;
            # help that was asked for is a success
            if done.code == 1 and _asks_for_help(argv[1:]):
                sys.exit(0)
            raise

    def main_with_conventions(argv):
        try:
            return main(argv)
        except app.UsageError as error:
            usage_error(error)
        except KeyboardInterrupt:
            print(f"\n{interrupted_line(program)}", file=sys.stderr)
            sys.exit(130)

    app.run(main_with_conventions, flags_parser=parse_flags)
