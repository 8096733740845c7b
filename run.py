"""Run one or more ai-toolkit style job files.

python run.py config/examples/train_lora_flux2_24gb.yaml
python run.py my_job other_job --recover      # bare names are looked up in config/
python run.py --check config/*.yaml           # every problem of each file, without loading a model
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

log = logging.getLogger("run")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run ai-toolkit style job configs (YAML or JSON).")
    parser.add_argument("config_file_list", nargs="+", help="config file paths, or names looked up in config/")
    parser.add_argument("-r", "--recover", action="store_true", help="go on to the next config after a failure")
    parser.add_argument("-n", "--name", default=None, help="replace config.name (and every [name] in the file)")
    parser.add_argument("-l", "--log", default=None, help="also write the log to this file")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate each config (schema, architecture, datasets, prompts, device, optimizer) "
        "and print every problem; load no model. Exit 0 when all are valid, 1 otherwise",
    )
    parser.add_argument(
        "--no-env",
        action="store_true",
        help="refuse ${VAR} in the job file instead of expanding it (the UIs run their jobs so)",
    )
    return parser.parse_args(argv)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | None) -> logging.Handler | None:
    """Console logging (unless the host already set it up), plus `--log FILE`; returns the file handler."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger().setLevel(logging.INFO)
    if not log_file:
        return None
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def run_one(config: str, name: str | None, expand_env: bool = True) -> None:
    from toolkit.job import get_job

    job = get_job(config, name, expand_env)
    try:
        job.run()
    finally:
        job.cleanup()


def check_all(args: argparse.Namespace) -> int:
    """`--check`: the one validation path (toolkit/validate.py) over every config; nothing is loaded or written."""
    from toolkit.errors import ConfigError
    from toolkit.validate import validate_job

    failed = 0
    for config in args.config_file_list:
        problems = validate_job(config, name=args.name, expand_env=not args.no_env)
        if problems:
            failed += 1
            log.error("%s", ConfigError(problems, config))
        else:
            log.info("%s: OK", config)
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    file_handler = setup_logging(args.log)
    try:
        return check_all(args) if args.check else run_all(args)
    finally:
        if file_handler is not None:
            logging.getLogger().removeHandler(file_handler)
            file_handler.close()


def run_all(args: argparse.Namespace) -> int:
    failed = []
    for config in args.config_file_list:
        log.info("running %s", config)
        try:
            run_one(config, args.name, not args.no_env)
        except KeyboardInterrupt:
            log.error("interrupted while running %s", config)
            return 130
        except Exception as exc:
            from toolkit.errors import ToolkitError

            failed.append(config)
            # User-facing errors carry their fix in the message; anything else keeps its traceback.
            log.error("%s failed: %s", config, exc, exc_info=not isinstance(exc, ToolkitError))
            if not args.recover:
                return 1
    if failed:
        log.error("%d of %d config(s) failed: %s", len(failed), len(args.config_file_list), ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
