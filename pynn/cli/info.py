"""`pynn info`: a saved model's layers, compile configuration, size and preprocessing."""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from pynn.cli.common import say
from pynn.cli.model import PREP_FILE, load_model, load_preprocessing
from pynn.cli.preprocess import ImagePreprocessor, NumericColumn
from pynn.cli.report import file_size

if TYPE_CHECKING:
    from pynn.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    """Registers `info`."""
    i = sub.add_parser("info", help="describe a saved model",
                       description="Print a model's layers, compile configuration, file size "
                       "and preprocessing.")
    i.add_argument("model", metavar="MODEL")


def run(args: argparse.Namespace) -> int:
    """Prints the description."""
    model, path = load_model(args.model)
    pre = load_preprocessing(path)
    say(f"file: {path} ({file_size(os.path.getsize(path))})")
    model.summary(print_fn=say)
    cfg = model.get_compile_config()
    if cfg is None:
        say("compile: none (weights and architecture only)")
    else:
        opt = cfg["optimizer"]
        lr = model.optimizer.learning_rate
        loss = cfg["loss"]
        loss_name = loss if isinstance(loss, str) else (
            loss.get("config", {}).get("name") or loss.get("class_name") if isinstance(
                loss, dict) else str(loss))
        say(f"compile: optimizer {opt.get('class_name')} (current learning rate {lr:.6g}), "
            f"loss {loss_name}, metrics {', '.join(cfg.get('metrics') or []) or 'none'}")
        say(f"optimizer steps taken: {model.optimizer.iterations}")
    if pre is None:
        say(f"preprocessing: none recorded ({PREP_FILE} not beside the model)")
    elif isinstance(pre, ImagePreprocessor):
        say(f"preprocessing: {pre.dataset} images {list(pre.image_shape)}, pixels x "
            f"{pre.scale:.6g}; classes: {', '.join(pre.class_names)}")
    else:
        parts = [f"{c.name} (standardised)" if isinstance(c, NumericColumn)
                 else f"{c.name} (one-hot, {len(c.categories)} values)" for c in pre.columns]
        say(f"preprocessing: CSV, {pre.task} of {pre.target!r} from {', '.join(parts)}")
        if pre.task == "classification":
            say(f"classes: {', '.join(pre.class_names)}")
    return 0
