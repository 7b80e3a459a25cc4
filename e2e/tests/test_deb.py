"""The probe's Debian package: built, installed into a throwaway root, run from there.

`make deb` builds target/debian/vantage-probe_<version>_<arch>.deb (cargo-deb; a no-op
rebuild when nothing changed). The package is installed with the real dpkg into an empty
directory: `dpkg --root=<dir> --force-script-chrootless --force-depends -i`.

* `--root`: files, dpkg's database and the maintainer scripts' effects go into <dir>.
* `--force-script-chrootless`: dpkg runs the maintainer scripts (ours, and the systemd
  snippets cargo-deb adds) on this machine without chroot(2)ing into <dir>, which holds no
  shell; it sets DPKG_ROOT=<dir> for them, and they honour it: the postinst adds the
  `vantage-probe` user to <dir>/etc/passwd with `useradd --root`, deb-systemd-helper
  enables the unit under <dir>/etc/systemd/system. The test checks both effects.
* `--force-depends`: the package's dependencies (`adduser`) are installed on this machine,
  not in <dir>'s empty dpkg database. The binary is statically linked, so it needs no
  library from <dir> either.

The installed `<dir>/usr/bin/vantage-probe` is then started the way the installed unit
starts it (its `ExecStartPre` keygen and `ExecStart`, with its `Environment=` paths taken
under <dir>), registers with the local stack's servers and must deliver a ping result to
ClickHouse. `systemd-analyze verify` checks the installed unit where systemd-analyze
exists (a visible skip otherwise); it finds unknown directives, bad values and an
`ExecStart` that is not executable.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import ROOT, running_cluster, wait_for  # noqa: E402

UNIT = "vantage-probe.service"


def build_deb() -> Path:
    """`make deb` and the package it wrote (the newest one, if several versions are there)."""
    out = subprocess.run(["make", "-s", "deb"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        pytest.fail(f"`make deb` failed (exit {out.returncode}); the probe package cannot be tested:\n"
                    f"{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    debs = sorted((ROOT / "target" / "debian").glob("vantage-probe_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        pytest.fail(f"`make deb` succeeded but wrote no target/debian/vantage-probe_*.deb:\n{out.stderr[-3000:]}")
    return debs[-1]


def unit_path(root: Path) -> Path:
    for d in ("usr/lib/systemd/system", "lib/systemd/system"):
        if (root / d / UNIT).exists():
            return root / d / UNIT
    raise AssertionError(f"{UNIT} not installed under {root}: {sorted(str(p.relative_to(root)) for p in root.rglob('*.service'))}")


def has_interpreter(elf: Path) -> bool:
    """Whether a 64-bit little-endian ELF file has a PT_INTERP program header."""
    data = elf.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a 64-bit little-endian ELF file"
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    return any(int.from_bytes(data[phoff + i * phentsize:phoff + i * phentsize + 4], "little") == 3 for i in range(phnum))


@pytest.fixture(scope="module")
def installed():
    deb = build_deb()
    print(f"package: {deb.name}, {deb.stat().st_size:,} bytes")
    root = Path(tempfile.mkdtemp(prefix="vantage-deb-root-"))
    try:
        admin = root / "var" / "lib" / "dpkg"
        for d in (admin / "info", admin / "updates", admin / "triggers", root / "etc"):
            d.mkdir(parents=True, exist_ok=True)
        (admin / "status").touch()
        # The user database the postinst adds to (`useradd --root` needs one to exist).
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        for f in ("shadow", "gshadow"):
            (root / "etc" / f).touch(mode=0o640)
        env = dict(os.environ, PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        host_users = Path("/etc/passwd").read_bytes()
        out = subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "-i", str(deb)],
                             capture_output=True, text=True, env=env, timeout=120)
        print(out.stdout, out.stderr)
        assert out.returncode == 0, f"dpkg -i failed:\n{out.stdout}\n{out.stderr}"
        assert Path("/etc/passwd").read_bytes() == host_users, "the maintainer scripts changed this machine's users"
        status = subprocess.run(["dpkg-query", f"--root={root}", "-W", "-f=${Status} ${Version}", "vantage-probe"],
                                capture_output=True, text=True, timeout=30)
        assert status.stdout.startswith("install ok installed"), status.stdout + status.stderr
        yield root, deb
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_package_installs_files_user_and_unit(installed):
    root, _ = installed
    exe = root / "usr" / "bin" / "vantage-probe"
    assert exe.is_file() and os.access(exe, os.X_OK)
    assert (root / "usr" / "share" / "doc" / "vantage-probe" / "anchor.yaml.example").is_file()
    unit = unit_path(root)
    # The postinst ran (chrootless) and created the user in the root's database only.
    assert re.search(r"^vantage-probe:x:\d+:\d+:", (root / "etc" / "passwd").read_text(), re.M)
    # The systemd snippet enabled the unit (WantedBy=multi-user.target) inside the root.
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / UNIT
    assert wants.is_symlink(), f"{wants} missing: the unit was not enabled"
    assert os.readlink(wants).endswith(f"/{UNIT}")
    assert "ExecStart=/usr/bin/vantage-probe run" in unit.read_text()
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("vantage-probe "), out
    # Linked statically (`make deb`): no program interpreter, so no library from outside.
    assert not has_interpreter(exe), f"{exe} is dynamically linked"


def test_systemd_analyze_verifies_the_unit(installed, tmp_path):
    root, _ = installed
    tool = shutil.which("systemd-analyze")
    if tool is None:
        print("SKIP: systemd-analyze is not installed (apt-get install systemd); the unit was not verified")
        pytest.skip("systemd-analyze is not installed; the unit was not verified")
    # Verified on this machine (the throwaway root has no systemd units such as
    # sysinit.target for `--root`), with the executable it starts taken under the root.
    unit = tmp_path / UNIT
    unit.write_text(unit_path(root).read_text().replace("/usr/bin/vantage-probe", str(root / "usr" / "bin" / "vantage-probe")))
    out = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    print(f"systemd-analyze verify {UNIT}: exit {out.returncode} {out.stdout}{out.stderr}")
    # Unknown keys and bad values are only warnings (exit 0): none may be printed.
    assert out.returncode == 0 and UNIT not in out.stderr, f"systemd-analyze verify:\n{out.stdout}\n{out.stderr}"


def unit_command(root: Path) -> tuple[dict[str, str], list[list[str]]]:
    """The installed unit's Environment= and ExecStartPre=/ExecStart= commands, with the
    absolute paths they name taken under `root` (the unit's shell one-liner included)."""
    env: dict[str, str] = {}
    commands: list[list[str]] = []
    for line in unit_path(root).read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            name, _, path = value.partition("=")
            env[name] = str(root) + path
        elif key in ("ExecStartPre", "ExecStart"):
            commands.append(shlex.split(value))
    for cmd in commands:
        cmd[:] = [re.sub(r"(?<![\w$])/usr/bin/vantage-probe", str(root / "usr" / "bin" / "vantage-probe"), w) for w in cmd]
    return env, commands


def test_installed_probe_measures_against_the_stack(installed):
    root, _ = installed
    env, commands = unit_command(root)
    assert set(env) == {"VANTAGE_PROBE_KEY", "VANTAGE_PROBE_ANCHOR"}, env
    *pre, start = commands
    assert start == [str(root / "usr" / "bin" / "vantage-probe"), "run"], start
    with running_cluster() as c:
        # The image ships the trust anchor; systemd makes the state directory.
        anchor = Path(env["VANTAGE_PROBE_ANCHOR"])
        anchor.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(c.anchor, anchor)
        Path(env["VANTAGE_PROBE_KEY"]).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for cmd in pre:  # ExecStartPre: the key is made on first start, and only then
            for _ in range(2):
                subprocess.run(cmd, check=True, env={**os.environ, **env}, timeout=30)
        pub = subprocess.run([start[0], "pubkey"], check=True, capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=30).stdout.strip()
        pid = c.next_probe_id
        c.next_probe_id += 1
        c.kubectl_apply({"apiVersion": "vantage.dev/v1alpha1", "kind": "Probe", "metadata": {"name": f"probe-{pid}"},
                         "spec": {"id": pid, "public_key": pub, "country_code": "NL", "asn_v4": 64500, "tags": ["deb"]}})
        c.env.update(env)
        c.start(f"probe-{pid}", start)
        wait_for(f"installed probe {pid} connected",
                 lambda: c.get("probe", f"probe-{pid}").get("status", {}).get("connected"), timeout=60)
        name = f"deb-ping-{pid}"
        c.kubectl_apply({"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
                         "metadata": {"name": name, "namespace": "default"},
                         "spec": {"type": "ping", "af": 4, "target": "127.0.0.1", "packets": 3, "packet_interval": 100,
                                  "interval": 60, "spread": 0,
                                  "probes": [{"type": "probes", "value": str(pid), "requested": 1}]}})
        try:
            rows = wait_for("a result of the installed probe in ClickHouse", lambda: c.ch.rows(
                f"SELECT msm_id, prb_id, type, sent, rcvd FROM {c.db}.results FINAL WHERE prb_id = {pid}"), timeout=90)
            assert rows[0]["type"] == "ping" and rows[0]["sent"] == 3 and rows[0]["rcvd"] >= 1, rows
        finally:
            c.kubectl("delete", "measurement", name, "-n", "default", "--wait=true", "--timeout=30s", check=False)
            c.kubectl("delete", "probe", f"probe-{pid}", "--wait=false", check=False)
