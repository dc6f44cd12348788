"""src/train.py with fc6 and fc7 narrow (fast_run.narrow_network), for tests that train in subprocesses. Lightning's
DDP launcher starts the other processes with sys.argv[0], this script (runpy.run_path would set it to train.py), so
every rank builds the same narrow network."""

from fast_run import ROOT, narrow_network

TRAIN = ROOT / "src" / "train.py"

if __name__ == "__main__":
    with narrow_network():
        exec(compile(TRAIN.read_text(), str(TRAIN), "exec"), {"__name__": "__main__", "__file__": str(TRAIN)})
