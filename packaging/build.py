#!/usr/bin/env python3
"""Build the Tidings DEB and RPM packages from this checkout.

Usage: python3 packaging/build.py [--out DIR] [--no-rpm] [--no-deb] [--python /usr/bin/python3.11]

Rules (why the build looks the way it does):

1. The packages carry a virtual environment at ``/opt/tidings`` whose interpreter is the build
   machine's *system* Python (``/usr/bin/python3.X``, a symlink, not a copy). The venv holds
   compiled wheels (uvloop, msgspec, ...) for exactly that ``X``, so the packages depend on
   that interpreter (``python3.X`` / ``/usr/bin/python3.X``), not on any ``python3 >= 3.11``.
2. The venv is created inside a staging root (``<stage>/opt/tidings``) and then made to believe
   it lives at ``/opt/tidings``: script shebangs and the text of ``bin/`` and ``pyvenv.cfg``
   are rewritten, and the bytecode is compiled with the staging prefix stripped. The build
   fails if the staging path is left in any file.
3. Nothing is written into the checkout: the wheel is built from a copy of the source.
4. The network is used only by pip (PyPI or the configured index) for the wheel's build
   requirements and the runtime dependencies.

The packaging files (unit, maintainer scripts, spec, default config) are in this directory
beside the script; this script only fills in the version, the architecture and the Python.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PREFIX = "/opt/tidings"
UNIT = "tidings.service"
# Each step is bounded; pip resolves and downloads about ten dependencies.
STEP_TIMEOUT = 600

_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el",
             "s390x": "s390x", "riscv64": "riscv64", "i686": "i386"}


class BuildError(Exception):
    """A step failed; the message says which and why."""


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True, timeout=STEP_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"{cmd[0]} failed with exit status {exc.returncode}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{cmd[0]} took longer than {STEP_TIMEOUT} s") from exc


def _project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    if not isinstance(version, str) or not re.fullmatch(r"[0-9][0-9A-Za-z.+~]*", version):
        raise BuildError(f"project.version {version!r} cannot be a package version")
    return version


def _system_python(path: str) -> tuple[Path, str]:
    """The interpreter for the venv, resolved to its versioned name, and its ``X.Y``."""
    real = Path(os.path.realpath(path))
    m = re.fullmatch(r"python(3\.\d+)", real.name)
    if real.parent != Path("/usr/bin") or m is None:
        raise BuildError(
            f"{path} resolves to {real}: the venv must use a distribution's interpreter "
            "(/usr/bin/python3.X) that the package can depend on"
        )
    version = m.group(1)
    if tuple(int(p) for p in version.split(".")) < (3, 11):
        raise BuildError(f"{real} is Python {version}; Tidings needs 3.11 or newer")
    return real, version


def _copy_source(dest: Path) -> None:
    """Copy the checkout (tracked and untracked, not ignored files) so the wheel build writes
    its ``build/`` and ``*.egg-info`` there, not into the checkout."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            check=True, capture_output=True, timeout=60,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot list the source files with git (a git checkout is needed): "
                         f"{exc}") from exc
    for rel in filter(None, listing.split("\0")):
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree but still in the index
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def _build_wheel(work: Path) -> Path:
    src = work / "src-copy"
    wheels = work / "wheel"
    src.mkdir()
    _copy_source(src)
    # `pip wheel` runs the same PEP 517 build as `python -m build --wheel`, in an isolated
    # environment, without needing the `build` package.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
          str(wheels), str(src)])
    found = sorted(wheels.glob("tidings-*.whl"))
    if len(found) != 1:
        raise BuildError(f"expected one tidings wheel, found {[p.name for p in found]}")
    return found[0]


def _relocate(venv: Path) -> None:
    """Make the venv built at ``<stage>/opt/tidings`` refer to ``/opt/tidings``: the shebangs
    of its scripts, the activate scripts and pyvenv.cfg's ``command`` line."""
    old, new = str(venv).encode(), PREFIX.encode()
    for path in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))


def _check_relocated(stage: Path) -> None:
    leftovers = []
    for root, _dirs, files in os.walk(stage):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink() and str(stage).encode() in path.read_bytes():
                leftovers.append(str(path.relative_to(stage)))
    if leftovers:
        raise BuildError(f"the staging path is still named in: {', '.join(leftovers[:10])}")


def _stage(work: Path, python: Path, wheel: Path) -> Path:
    stage = work / "root"
    venv = stage / PREFIX.lstrip("/")
    venv.parent.mkdir(parents=True)
    # Symlinks (the default): the venv follows the distribution's security updates of the
    # interpreter, whose standard library it uses anyway. No pip inside: nothing to update.
    _run([str(python), "-m", "venv", "--without-pip", str(venv)])
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
          "--quiet", "--no-compile", "--no-warn-script-location", str(wheel)])
    _relocate(venv)
    # Ship the bytecode, compiled with the real paths (tracebacks name /opt/tidings/...), so the
    # unprivileged service never tries to write __pycache__. checked-hash: valid whatever the
    # file times become.
    _run([str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j0",
          "--invalidation-mode", "checked-hash", "-s", str(stage), "-p", "/",
          str(venv / "lib")])
    _check_relocated(stage)

    (stage / "usr/bin").mkdir(parents=True)
    (stage / "usr/bin/tidings").symlink_to(f"{PREFIX}/bin/tidings")
    (stage / "etc/tidings").mkdir(parents=True)
    shutil.copyfile(HERE / "config.json", stage / "etc/tidings/config.json")
    return stage


def _fill(template: Path, values: dict[str, str]) -> str:
    """The template with each ``@KEY@`` replaced; an unknown one is an error."""
    text = template.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("@" + key + "@", value)
    if m := re.search(r"@[A-Z_]+@", text):
        raise BuildError(f"{template.name}: no value for {m.group(0)}")
    return text


def _build_deb(work: Path, stage: Path, out: Path, values: dict[str, str]) -> Path:
    root = work / "deb"
    shutil.copytree(stage, root, symlinks=True)
    (root / "lib/systemd/system").mkdir(parents=True)
    shutil.copyfile(HERE / UNIT, root / "lib/systemd/system" / UNIT)
    debian = root / "DEBIAN"
    debian.mkdir()
    md5 = []
    size = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if Path(dirpath, d) != debian)
        for name in sorted(files):
            path = Path(dirpath, name)
            size += path.lstat().st_size
            if not path.is_symlink():
                digest = hashlib.md5(path.read_bytes()).hexdigest()
                md5.append(f"{digest}  {path.relative_to(root)}\n")
    (debian / "md5sums").write_text("".join(md5))
    (debian / "conffiles").write_text("/etc/tidings/config.json\n")
    control = _fill(HERE / "deb/control", {**values, "INSTALLED_SIZE": str(size // 1024 + 1)})
    (debian / "control").write_text(control)
    for script in ("postinst", "prerm", "postrm"):
        (debian / script).write_text(_fill(HERE / "deb" / script, values))
        (debian / script).chmod(0o755)
    deb = out / f"tidings_{values['VERSION']}-{values['RELEASE']}_{values['DEB_ARCH']}.deb"
    _run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)])
    return deb


def _build_rpm(work: Path, stage: Path, out: Path, values: dict[str, str]) -> Path:
    top = work / "rpmbuild"
    for sub in ("BUILD", "RPMS", "SOURCES", "SPECS", "SRPMS", "BUILDROOT"):
        (top / sub).mkdir(parents=True)
    scripts = {f"SCRIPT_{name.upper()}": _fill(HERE / "rpm" / name, values).rstrip("\n")
               for name in ("pre", "post", "preun", "postun")}
    if any("%" in text for text in scripts.values()):
        raise BuildError("an rpm scriptlet contains '%', which rpmbuild expands as a macro")
    spec = _fill(HERE / "rpm/tidings.spec",
                 {**values, "STAGE": str(stage), "UNIT_SOURCE": str(HERE / UNIT), **scripts})
    spec_path = top / "SPECS/tidings.spec"
    spec_path.write_text(spec)
    _run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
          "--target", values["RPM_ARCH"], str(spec_path)])
    found = sorted((top / "RPMS").rglob("tidings-*.rpm"))
    if len(found) != 1:
        raise BuildError(f"expected one rpm, found {[p.name for p in found]}")
    rpm = out / found[0].name
    shutil.copyfile(found[0], rpm)
    return rpm


def build(out: Path, *, python: str = "/usr/bin/python3", deb: bool = True,
          rpm: bool = True) -> list[Path]:
    """Build the packages into ``out``; returns their paths."""
    tools = (["dpkg-deb"] if deb else []) + (["rpmbuild"] if rpm else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(f"missing tools: {', '.join(missing)} (Debian: apt-get install "
                         "dpkg-dev rpm)")
    interpreter, py_version = _system_python(python)
    machine = platform.machine()
    values = {
        "VERSION": _project_version(),
        "RELEASE": "1",
        "PYTHON": str(interpreter),
        "PY_VERSION": py_version,
        "DEB_ARCH": _DEB_ARCH.get(machine, machine),
        "RPM_ARCH": machine,
        "PREFIX": PREFIX,
        "MAKE_SECRETS": (HERE / "make-secrets.sh").read_text().rstrip("\n"),
    }
    out.mkdir(parents=True, exist_ok=True)
    os.umask(0o022)  # the modes in the packages do not depend on the caller's umask
    built = []
    with tempfile.TemporaryDirectory(prefix="tidings-pkg-") as tmp:
        work = Path(tmp)
        wheel = _build_wheel(work)
        stage = _stage(work, interpreter, wheel)
        if deb:
            built.append(_build_deb(work, stage, out, values))
        if rpm:
            built.append(_build_rpm(work, stage, out, values))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default="dist", help="output directory (default: dist)")
    parser.add_argument("--python", default="/usr/bin/python3",
                        help="the system interpreter the venv uses (default: /usr/bin/python3)")
    parser.add_argument("--no-deb", action="store_true", help="do not build the .deb")
    parser.add_argument("--no-rpm", action="store_true", help="do not build the .rpm")
    args = parser.parse_args(argv)
    try:
        paths = build(Path(args.out).resolve(), python=args.python, deb=not args.no_deb,
                      rpm=not args.no_rpm)
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
