"""``python -m tf_selectivity.sweep``: see `tf_selectivity.sweep.cli`."""

from tf_selectivity.sweep.cli import run

if __name__ == "__main__":
    run()
