"""From a config file to a runnable job."""

from __future__ import annotations


from toolkit.config import find_config, load_raw_config, parse_job_config
from toolkit.config_modules import ConfigError
from toolkit.paths import CONFIG_DIR


def load_job_config(config: str, name: str | None = None, expand_env: bool = True):
    """Find, read, substitute and validate a job file (no torch import); log its ai-toolkit no-op keys once.
    ``expand_env=False`` refuses ``${...}`` instead of reading the environment (``run.py --no-env``, UI jobs)."""
    from toolkit.aitk_keys import log_ignored

    path = find_config(config, CONFIG_DIR)
    raw = load_raw_config(path, name, expand_env=expand_env)
    job_config = parse_job_config(raw, str(path))
    log_ignored(job_config)
    return job_config


def process_classes(job_config) -> list[type]:
    """The class for each `config.process[i].type`, from the extensions or built-ins."""
    from jobs.process.GenerateProcess import GenerateProcess
    from toolkit.extension import get_extensions

    builtins = {"to_folder": GenerateProcess}
    extensions = get_extensions()
    classes = []
    for i, process in enumerate(job_config.config.process):
        if process.type in builtins:
            classes.append(builtins[process.type])
        elif process.type in extensions:
            classes.append(extensions[process.type].get_process())
        else:
            known = sorted(set(builtins) | set(extensions))
            raise ConfigError(
                [(f"config.process[{i}].type", f"no extension provides process type '{process.type}'; known: {known}")]
            )
    return classes


def get_job(config: str, name: str | None = None, expand_env: bool = True):
    """The job of a config file, every process checked first (toolkit/validate.py: one ConfigError listing every
    problem of every process, before the first starts). ``expand_env=False``: ``${...}`` is refused (UI jobs)."""
    from toolkit.validate import plan_job

    from toolkit.aitk_keys import log_ignored

    job_config, plans = plan_job(str(find_config(config, CONFIG_DIR)), name=name, expand_env=expand_env)
    log_ignored(job_config)
    classes = process_classes(job_config)
    if job_config.job == "generate":
        from jobs.GenerateJob import GenerateJob

        return GenerateJob(job_config, classes, plans)
    from jobs.ExtensionJob import ExtensionJob

    return ExtensionJob(job_config, classes, plans)
