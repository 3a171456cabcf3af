"""Run by tests/test_training.py: ``babelir train`` that dies (os._exit, like kill -9).

``CRASH=save:N`` dies while checkpoint N is being written (after its weights, before its
optimizer and trainer state: the folder looks like a checkpoint but is incomplete);
``CRASH=step:N`` dies right after optimizer step N. Without ``CRASH`` it trains normally.
"""

import os
import sys

from transformers import Trainer

from babelir.cli.main import main

kind, _, at = os.environ.get("CRASH", "").partition(":")
if kind == "save":
    real_save = Trainer._save_optimizer_and_scheduler

    def dying_save(self, output_dir):
        if self.state.global_step == int(at):
            os._exit(137)
        return real_save(self, output_dir)

    Trainer._save_optimizer_and_scheduler = dying_save
elif kind == "step":
    real_step = Trainer._maybe_log_save_evaluate

    def dying_step(self, *args, **kwargs):
        if self.state.global_step == int(at):
            os._exit(137)
        return real_step(self, *args, **kwargs)

    Trainer._maybe_log_save_evaluate = dying_step

main(sys.argv[1:])
