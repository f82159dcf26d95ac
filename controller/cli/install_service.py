"""`sorter install-service`: the line PC's service, in one command (as root).

    /opt/sorter/venv/                 a virtualenv of its own, with a non-editable copy of sorter
                                      built from the source tree (never the checkout's .venv: the
                                      service must not break when the clone is deleted)
    /etc/sorter/line.yaml             the line's config, from the example when there is none, with
                                      data_dir: /var/lib/sorter; routes, towns, carriers beside it
    /etc/sorter/env                   SORTER_API_TOKEN=... (root only), read by the unit
    /var/lib/sorter/                  the data: records, manifest, no-read images, calibrations
    /etc/systemd/system/sorter.service   the unit (systemd/sorter.service)
    /usr/local/bin/sorter             -> /opt/sorter/venv/bin/sorter
    /opt/sorter/README.md             the unit's Documentation=
    user and group `sorter`, in the groups dialout (serial ports) and video (USB cameras)

`--dry-run` prints every step and changes nothing. `--prefix DIR` installs under DIR instead of
/ (a trial, or a test): every path above, those in the unit included, is under DIR; no user is
created and systemd is not told. `--wheels DIR` installs from a folder of wheels, without the
internet (as `SORTER_WHEELS` does for scripts/setup.sh).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

USER = "sorter"
GROUPS = ("dialout", "video")
UNIT_NAME = "sorter.service"
CONFIG_NAME = "line.yaml"
EXAMPLE = "wenling-line1.yaml"
# what is not copied from the source tree into the build folder
TREE_IGNORE = shutil.ignore_patterns(".venv", "venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".git",
                                     ".pytest_cache", "exports", "*.db", "*.db-*")


class InstallError(RuntimeError):
    pass


@dataclass
class Layout:
    root: Path

    def _at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def opt(self) -> Path:
        return self._at("/opt/sorter")

    @property
    def venv(self) -> Path:
        return self.opt / "venv"

    @property
    def etc(self) -> Path:
        return self._at("/etc/sorter")

    @property
    def data(self) -> Path:
        return self._at("/var/lib/sorter")

    @property
    def unit(self) -> Path:
        return self._at(f"/etc/systemd/system/{UNIT_NAME}")

    @property
    def bin_link(self) -> Path:
        return self._at("/usr/local/bin/sorter")

    @property
    def real(self) -> bool:
        return self.root == Path("/")


@dataclass
class Step:
    what: str
    cmd: list[str] | None = None                 # a command, run as is
    fn: Callable[[], object] | None = None       # or a function of ours
    detail: list[str] = field(default_factory=list)

    def show(self, n: int) -> str:
        lines = [f"[{n}] {self.what}"]
        if self.cmd:
            lines.append("    $ " + " ".join(_quote(a) for a in self.cmd))
        lines += [f"    {d}" for d in self.detail]
        return "\n".join(lines)


def _quote(a: str) -> str:
    import shlex
    return shlex.quote(a)


def source_tree(given: str | None) -> Path:
    """The checkout to build from: --source, or the tree this `sorter` runs from (an editable install)."""
    import sorter
    tree = Path(given).resolve() if given else Path(sorter.__file__).resolve().parent.parent
    pp = tree / "pyproject.toml"
    if not pp.is_file() or 'name = "sorter"' not in pp.read_text(encoding="utf-8"):
        raise InstallError(f"{tree}: not a sorter source tree (no pyproject.toml of sorter); run it from a "
                           "checkout or pass --source DIR")
    return tree


def unit_text(tree: Path, lay: Layout) -> str:
    """systemd/sorter.service with the paths of this layout."""
    text = (tree / "systemd" / UNIT_NAME).read_text(encoding="utf-8")
    if lay.real:
        return text
    for path in ("/opt/sorter", "/etc/sorter", "/var/lib/sorter"):
        text = text.replace(path, str(lay._at(path)))
    return text


def config_text(example: Path, lay: Layout) -> str:
    """The example line with its data in the service's state directory (never under /etc)."""
    text = example.read_text(encoding="utf-8")
    line = f"data_dir: {lay.data}"
    lines = text.splitlines()
    for i, l in enumerate(lines):
        if l.startswith("# data_dir:"):
            lines[i] = line
            return "\n".join(lines) + "\n"
    return f"{line}\n{text}"


def _config_files(example: Path) -> list[Path]:
    """The files the example line names beside it (routes, towns, carriers)."""
    import yaml
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    routing = data.get("routing", {})
    return [example.parent / routing[k] for k in ("routes", "towns", "carriers") if routing.get(k)]


def plan(tree: Path, lay: Layout, python: str, wheels: str | None) -> list[Step]:
    steps: list[Step] = []
    pip = [str(lay.venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade"]
    if wheels:
        pip += ["--no-index", "--find-links", str(Path(wheels).resolve())]
    constraints = tree / "constraints.txt"
    if constraints.is_file():
        pip += ["--constraint", str(constraints)]
    build = Path(tempfile.gettempdir()) / f"sorter-build-{os.getpid()}"

    if not (lay.venv / "bin" / "python").exists():
        steps.append(Step(f"a virtualenv of its own: {lay.venv}", [python, "-m", "venv", str(lay.venv)]))
    else:
        steps.append(Step(f"the virtualenv {lay.venv} is there: sorter is upgraded in it"))
    steps.append(Step(f"copy the source tree {tree} to {build} (without .venv, var/, build/)",
                      fn=lambda: (shutil.rmtree(build, ignore_errors=True), shutil.copytree(tree, build, ignore=TREE_IGNORE))))
    steps.append(Step("install sorter into it, non-editable, with its pinned dependencies",
                      pip + [str(build)]))
    steps.append(Step(f"remove {build}", fn=lambda: shutil.rmtree(build, ignore_errors=True)))
    steps.append(Step("check: the service imports its own copy, not the checkout's",
                      fn=lambda: _check_copy(lay, tree)))

    if lay.real:
        for g in GROUPS:
            if not _group_exists(g):
                steps.append(Step(f"group {g}", ["groupadd", "--system", g]))
        if _user_exists(USER):
            steps.append(Step(f"user {USER}: in the groups {', '.join(GROUPS)}",
                              ["usermod", "--append", "--groups", ",".join(GROUPS), USER]))
        else:
            steps.append(Step(f"system user {USER} (groups {', '.join(GROUPS)}: serial ports, USB cameras)",
                              ["useradd", "--system", "--user-group", "--home-dir", str(lay.data), "--no-create-home",
                               "--shell", "/usr/sbin/nologin", "--groups", ",".join(GROUPS), USER]))
    else:
        steps.append(Step(f"system user {USER} (groups {', '.join(GROUPS)}): skipped under --prefix"))

    steps.append(Step(f"folders: {lay.etc} (config), {lay.data} (data, {USER} only)",
                      fn=lambda: _folders(lay)))
    cfg = lay.etc / CONFIG_NAME
    if cfg.exists():
        steps.append(Step(f"config {cfg} is there: kept as it is", detail=_data_dir_note(cfg, lay)))
    else:
        example = tree / "config" / EXAMPLE
        names = [p.name for p in _config_files(example)]
        steps.append(Step(f"config {cfg} from the example {EXAMPLE} (data_dir: {lay.data}), and beside it "
                          f"{', '.join(names)}", fn=lambda: _write_config(example, lay),
                          detail=["edit it for the real line: plc.url, the I/O map (io:), cameras; "
                                  f"then `sorter check-config {cfg}`"]))
    env = lay.etc / "env"
    if env.exists():
        steps.append(Step(f"{env} is there: kept (it holds SORTER_API_TOKEN)"))
    else:
        steps.append(Step(f"{env}: SORTER_API_TOKEN=<a new random token>, readable by root only",
                          fn=lambda: _write_env(env)))
    steps.append(Step(f"the README beside it, {lay.opt / 'README.md'} (the unit's Documentation=)",
                      fn=lambda: _write(lay.opt / "README.md", (tree / "README.md").read_text(encoding="utf-8"), 0o644)))
    steps.append(Step(f"the unit {lay.unit}", fn=lambda: _write(lay.unit, unit_text(tree, lay), 0o644)))
    steps.append(Step(f"{lay.bin_link} -> {lay.venv / 'bin' / 'sorter'}", fn=lambda: _link(lay)))
    if lay.real and Path("/run/systemd/system").is_dir():
        steps.append(Step("tell systemd", ["systemctl", "daemon-reload"]))
    return steps


def _check_copy(lay: Layout, tree: Path) -> None:
    r = subprocess.run([str(lay.venv / "bin" / "python"), "-c", "import sorter; print(sorter.__file__)"],
                       capture_output=True, text=True, cwd="/")
    where = Path(r.stdout.strip()).resolve() if r.returncode == 0 else None
    if where is None or lay.venv.resolve() not in where.parents or tree in where.parents:
        raise InstallError(f"the installed sorter imports from {where or r.stderr.strip()}, not from {lay.venv}")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _folders(lay: Layout) -> None:
    lay.etc.mkdir(parents=True, exist_ok=True)
    lay.data.mkdir(parents=True, exist_ok=True)
    os.chmod(lay.data, 0o750)
    if lay.real:
        pw = pwd.getpwnam(USER)
        os.chown(lay.data, pw.pw_uid, pw.pw_gid)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_config(example: Path, lay: Layout) -> None:
    for f in _config_files(example):
        if not (lay.etc / f.name).exists():
            _write(lay.etc / f.name, f.read_text(encoding="utf-8"), 0o644)
    _write(lay.etc / CONFIG_NAME, config_text(example, lay), 0o644)


def _write_env(env: Path) -> None:
    _write(env, "# read by systemd for sorter.service (EnvironmentFile=); root only\n"
                f"SORTER_API_TOKEN={secrets.token_urlsafe(24)}\n", 0o600)


def _data_dir_note(cfg: Path, lay: Layout) -> list[str]:
    try:
        import yaml
        has = "data_dir" in (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {})
    except (OSError, ValueError, yaml.YAMLError):
        return []
    return [] if has else [f"it has no data_dir: the service keeps its data in $STATE_DIRECTORY ({lay.data}), but "
                           f"`sorter` commands run from a shell would not find it: add `data_dir: {lay.data}`"]


def _link(lay: Layout) -> None:
    target = lay.venv / "bin" / "sorter"
    link = lay.bin_link
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or not link.exists():
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    else:
        print(f"    {link} exists and is not a link: left alone", flush=True)


def run(args) -> int:
    lay = Layout(Path(args.prefix).resolve() if args.prefix else Path("/"))
    try:
        tree = source_tree(args.source)
        if lay.real and not args.dry_run and os.geteuid() != 0:
            raise InstallError("install-service needs root: sudo .venv/bin/sorter install-service "
                               "(or --dry-run to see what it does)")
        wheels = args.wheels or os.environ.get("SORTER_WHEELS") or None
        python = args.python or getattr(sys, "_base_executable", None) or sys.executable
        steps = plan(tree, lay, python, wheels)
    except InstallError as exc:
        sys.stderr.write(f"sorter install-service: {exc}\n")
        return 2
    print(("would do (--dry-run):" if args.dry_run else "installing the sorter service:")
          + (f" under {lay.root}" if not lay.real else ""), flush=True)
    for n, step in enumerate(steps, 1):
        print(step.show(n), flush=True)
        if args.dry_run:
            continue
        try:
            if step.cmd:
                subprocess.run(step.cmd, check=True)
            if step.fn:
                step.fn()
        except (subprocess.CalledProcessError, OSError, InstallError, KeyError) as exc:
            sys.stderr.write(f"sorter install-service: step {n} failed: {exc}\n")
            return 1
    print("then:" if args.dry_run else "done. Next:")
    print(f"    systemctl enable --now sorter     # starts it; returns once the line's I/O is up "
          f"(--no-block not to wait)\n    journalctl -u sorter -f           # its log\n"
          f"    the token for the control endpoints is in {lay.etc / 'env'}")
    return 0


def register(sub, with_config=None) -> None:
    sp = sub.add_parser("install-service", help="install the line PC's service: its own virtualenv in /opt/sorter, "
                                                "the user, /etc/sorter, the systemd unit (root)")
    sp.add_argument("--dry-run", action="store_true", help="print every step, change nothing")
    sp.add_argument("--prefix", help="install under this folder instead of / (a trial: no user, systemd not told)")
    sp.add_argument("--source", help="the source tree to build from (default: the checkout this sorter runs from)")
    sp.add_argument("--wheels", help="install from this folder of wheels, offline (default $SORTER_WHEELS)")
    sp.add_argument("--python", help="the Python the virtualenv is made with (default: the one running this)")
    sp.set_defaults(fn=run)
