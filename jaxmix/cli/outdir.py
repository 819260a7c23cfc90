"""The output folder of ``jaxmix run``: what may be written there, and writing it without losing a file.

Every folder jaxmix writes holds a manifest, ``.jaxmix-run.json``: the files of that run, the absolute
path of its config and the time.  The rules (:func:`check_output`, run by ``jaxmix validate`` and by
``jaxmix run`` before any fit and again before the results move into place):

* the config's data file is never inside the output folder, whatever the flags;
* an existing folder that holds files jaxmix did not write (not in its manifest), or the results of
  another config file, is refused unless ``force`` (``--force``); even then those files are kept as
  they are, and one with the name of an output is an error;
* :func:`staged_output` writes into a hidden folder beside the target (same parent) and moves the new
  files into place at the end; only then are the previous run's files (stale tables and model
  folders included) removed.  An error or Ctrl-C before that leaves the target as it was and removes
  the hidden folder.

Problems are :class:`jaxmix.cli.config.ConfigError` with one-line messages.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, RunConfig

__all__ = ["MANIFEST", "OUTPUT_FILES", "PLOT_FILES", "SWEEP_OUTPUT_FILES", "COMPARE_OUTPUT_FILES", "planned_outputs",
           "check_writable", "check_output", "folder_state", "staged_output",
           "FolderState"]

#: the files a single-model run writes (plots and optional tables besides), and a sweep's
OUTPUT_FILES = ("summary.txt", "fixed.csv", "covparms.csv", "varcorr.csv", "ranef.csv", "fit.json")
PLOT_FILES = {"caterpillar": "caterpillar.png", "group_lines": "group_lines.png", "shrinkage": "shrinkage.png"}
SWEEP_OUTPUT_FILES = ("summary.txt", "fixed.csv", "varcorr.csv", "fit.json")
COMPARE_OUTPUT_FILES = ("fixed_single_level.csv", "comparison.csv", "report.txt", "comparison.png")

MANIFEST = ".jaxmix-run.json"
_HINT = "choose another folder (--out or [output] dir)"


# ---- what a run writes ---------------------------------------------------------------------
def planned_outputs(cfg: RunConfig, designs: dict | None = None) -> list[str]:
    """The paths (relative, '/'-separated) a run of ``cfg`` may write, a superset of what it writes;
    ``designs`` (name -> Design) adds the per-group ``caterpillar_<group>.png``."""
    if cfg.sweep is not None:

        extra = COMPARE_OUTPUT_FILES if cfg.sweep.compare_single_level else ()
        return [*SWEEP_OUTPUT_FILES, *extra, MANIFEST]
    from ..plots import safe_name

    fmts = cfg.output.formats
    single = len(cfg.models) == 1
    boot = set(cfg.bootstrap.models) if cfg.bootstrap is not None else set()
    names = []
    for name, m in cfg.models.items():
        pre = "" if single else f"{name}/"
        if m.estimator == "bayes":  # jaxmix.cli.bayes_outputs
            names += [f"{pre}summary.txt", f"{pre}fit.json", f"{pre}trace.png"]
            names += [f"{pre}{s}.{f}" for s in ("posterior", "draws") for f in fmts]
            continue
        stems = ["fixed", "covparms", "varcorr", "ranef"] + ["anova"] * bool(m.anova) + ["bootstrap"] * (name in boot)
        names += [f"{pre}summary.txt", f"{pre}fit.json"] + [f"{pre}{s}.{f}" for s in stems for f in fmts]
        names += [pre + PLOT_FILES[k] for k in cfg.output.plots]
        if "caterpillar" in cfg.output.plots and designs and name in designs:
            names += [f"{pre}caterpillar_{safe_name(g)}.png" for g in dict.fromkeys(t.group for t in designs[name].terms)]
    if not single:
        names += ["summary.txt", "fit.json"]
        if cfg.comparisons is not None:
            names += [f"lrt.{f}" for f in fmts]
    return list(dict.fromkeys(names + [MANIFEST]))


# ---- what the folder holds -----------------------------------------------------------------
@dataclass
class FolderState:
    """An output folder as found: its manifest, the files jaxmix wrote there, the entries it did not."""

    path: Path  # resolved
    exists: bool = False
    manifest: dict | None = None
    owned: list = field(default_factory=list)  # relative paths of files the manifest lists (present)
    foreign: list = field(default_factory=list)  # relative paths of entries jaxmix did not write

    @property
    def config(self) -> str | None:
        return None if self.manifest is None else self.manifest.get("config")


def _read_manifest(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("tool") != "jaxmix" or not isinstance(rec.get("files"), list):
        return None
    return rec


def folder_state(directory) -> FolderState:
    """What ``directory`` holds: files listed in its manifest (``owned``) and everything else
    (``foreign``: files, links and folders jaxmix did not write; a folder is named, not its content)."""
    path = Path(os.path.realpath(directory))
    state = FolderState(path=path, exists=path.is_dir())
    if not state.exists:
        return state
    manifest = _read_manifest(path / MANIFEST) if (path / MANIFEST).is_file() else None
    listed = set() if manifest is None else {str(f) for f in manifest["files"]}
    dirs = {p.as_posix() for f in listed for p in Path(f).parents} - {"."}
    state.manifest = manifest
    for root, subdirs, files in os.walk(path):
        rel_root = Path(root).relative_to(path)
        keep = []
        for d in sorted(subdirs):
            rel = (rel_root / d).as_posix()
            if rel in dirs and not os.path.islink(os.path.join(root, d)):
                keep.append(d)
            else:
                state.foreign.append(rel)
        subdirs[:] = keep
        for f in sorted(files):
            rel = (rel_root / f).as_posix()
            if rel in listed:
                state.owned.append(rel)
            elif not (rel == MANIFEST and manifest is not None):
                state.foreign.append(rel)
    state.foreign.sort()
    return state


# ---- the checks ----------------------------------------------------------------------------
def check_writable(directory) -> None:
    """Whether ``directory`` could be created and written, and a folder made beside it, without
    creating anything."""
    p = Path(os.path.abspath(directory))
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"output folder '{directory}': '{probe}' exists and is not a folder")
    if probe == p:  # it exists: the new results are written beside it first
        probe = Path(os.path.realpath(p)).parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder '{directory}' is not writable (no write permission on '{probe}')")


def _data_inside(cfg: RunConfig, target: Path) -> None:
    path = cfg.data.path
    if path is None:
        return
    real = Path(os.path.realpath(path))
    if real == target or real.is_relative_to(target):
        raise ConfigError(f"[data] path '{path}' is inside the output folder '{cfg.output.dir}'; jaxmix never "
                          f"writes where its input data is: {_HINT}")


def _config_id(cfg: RunConfig) -> str | None:
    return None if cfg.source is None else os.path.abspath(cfg.source)


def check_output(cfg: RunConfig, planned=(), state: FolderState | None = None) -> FolderState:
    """Everything ``run`` refuses about the output folder (see the module doc), creating nothing.

    ``planned``: the relative paths the run may write (:func:`planned_outputs`).  Returns the folder's
    :class:`FolderState`."""
    directory = cfg.output.dir
    check_writable(directory)
    state = state or folder_state(directory)
    _data_inside(cfg, state.path)
    if not state.exists:
        return state
    needed = set(planned) | {p for f in planned for p in (q.as_posix() for q in Path(f).parents) if p != "."}
    clash = [f for f in state.foreign if f in needed]
    if clash:
        raise ConfigError(f"output folder '{directory}' holds '{clash[0]}', which jaxmix did not write and would "
                          f"write over (not in a {MANIFEST} of jaxmix); move it away or {_HINT}")
    if state.foreign and not cfg.force:
        raise ConfigError(f"output folder '{directory}' holds '{state.foreign[0]}', which jaxmix did not write "
                          f"(not in a {MANIFEST} of jaxmix); {_HINT}, or use --force to write beside it "
                          "(it is kept)")
    if state.manifest is not None and state.config != _config_id(cfg) and state.owned and not cfg.force:
        raise ConfigError(f"output folder '{directory}' holds '{state.owned[0]}' and other results of another "
                          f"config, '{state.config}' (see its {MANIFEST}); {_HINT}, or use --force to replace them")
    return state


# ---- writing -------------------------------------------------------------------------------
@contextlib.contextmanager
def _no_interrupt():
    """Ctrl-C inside is ignored: the moves into place are not cut in half, and the run, finished by
    then, ends as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = signal.signal(signal.SIGINT, lambda *a: None)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)


def _files_under(folder: Path) -> list[str]:
    return sorted((Path(root) / f).relative_to(folder).as_posix() for root, _, files in os.walk(folder)
                  for f in files)


def _rename(src: Path, dst: Path) -> None:
    if os.path.lexists(dst):
        raise ConfigError(f"cannot move '{src}' to '{dst}': it exists")
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst)


def _prune(folder: Path, rels) -> None:
    """Remove the folders of ``rels`` under ``folder`` that are now empty (deepest first)."""
    dirs = {p for r in rels for p in Path(r).parents if p.as_posix() != "."}
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            (folder / d).rmdir()


def _swap(stage: Path, target: Path) -> None:
    """Replace the folder ``target`` (only jaxmix's files) by ``stage``: two renames."""
    old = target.parent / f".{target.name}.jaxmix-old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(stage, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _merge(stage: Path, state: FolderState) -> None:
    """Move jaxmix's previous files out of the target and the new ones in, file by file; the others
    stay.  On any error everything moves back."""
    target = state.path
    old_files = state.owned + ([MANIFEST] if (target / MANIFEST).is_file() else [])
    new_files = _files_under(stage)
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.jaxmix-old-", dir=target.parent))
    moved_old, moved_new = [], []
    try:
        for rel in old_files:
            _rename(target / rel, old / rel)
            moved_old.append(rel)
        for rel in new_files:
            _rename(stage / rel, target / rel)
            moved_new.append(rel)
    except BaseException:
        for rel in reversed(moved_new):
            _rename(target / rel, stage / rel)
        for rel in reversed(moved_old):
            _rename(old / rel, target / rel)
        shutil.rmtree(old, ignore_errors=True)
        raise
    _prune(target, [r for r in old_files if r not in new_files])
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def _holds_cwd(target: Path) -> bool:
    try:
        cwd = Path(os.path.realpath(os.getcwd()))
    except OSError:
        return False
    return cwd == target or cwd.is_relative_to(target)


def _commit(stage: Path, cfg: RunConfig, planned) -> None:
    # again, with the files actually written: the folder may have changed during the fit
    state = check_output(cfg, [*planned, *_files_under(stage)])
    target = state.path
    if not state.exists:
        os.rename(stage, target)
    elif state.foreign or _holds_cwd(target):
        _merge(stage, state)
    else:
        try:
            _swap(stage, target)
        except OSError:  # e.g. a mount point: file by file instead
            _merge(stage, state)


@contextlib.contextmanager
def staged_output(cfg: RunConfig, planned=()):
    """Yield a new hidden folder beside ``cfg.output.dir`` to write the results into; on leaving the
    block, write the manifest and move the results into place (see the module doc).  On an error or
    KeyboardInterrupt inside, the output folder is left as it was and the hidden folder removed."""
    check_output(cfg, planned)
    target = Path(os.path.realpath(cfg.output.dir))
    made = []
    for p in reversed([target.parent, *target.parent.parents]):
        if not p.exists():
            try:
                p.mkdir()
            except OSError as e:
                _remove_empty(made)
                raise ConfigError(f"output folder '{cfg.output.dir}' cannot be created: {e.strerror or e}") from None
            made.append(p)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.jaxmix-new-", dir=target.parent))
    except OSError as e:
        _remove_empty(made)
        raise ConfigError(f"output folder '{cfg.output.dir}' is not writable: {e.strerror or e}") from None
    try:
        try:  # the folder's permissions: the previous folder's, else the usual ones (mkdtemp makes 0700)
            mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o777 & ~_umask()
            os.chmod(stage, mode | stat.S_IRWXU)
        except OSError:
            pass
        yield stage
        record = {"tool": "jaxmix", "config": _config_id(cfg),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": _files_under(stage)}
        from .. import __version__

        record["jaxmix_version"] = __version__
        (stage / MANIFEST).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        with _no_interrupt():
            _commit(stage, cfg, planned)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_empty(made)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_empty(folders) -> None:
    for p in reversed(folders):
        with contextlib.suppress(OSError):
            p.rmdir()
