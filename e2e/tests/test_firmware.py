"""Signed firmware: a tampered bundle is refused, a good one is installed lazily at the
next reconnect, and a forced rollout makes connected probes reconnect and update now.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN, Cluster, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def world():
    c = Cluster(log=lambda *_: None)
    try:
        c.start_servers()
        fwkey = c.tmp / "firmware-signing.key"
        signer = subprocess.run([str(BIN / "vantage-sign"), "keygen", "--out", str(fwkey)], check=True, capture_output=True, text=True).stdout.strip()
        # The probe runs from its own copy of the agent: installing firmware replaces it.
        bindir = c.tmp / "probe-bin"
        bindir.mkdir()
        exe = bindir / "vantage-probe"
        shutil.copy2(BIN / "vantage-probe", exe)
        anchor = c.tmp / "anchor-fw.yaml"
        anchor.write_text(f"registration:\n  - addr: 127.0.0.1:{c.registration_port}\n    host_key: \"{c.registration_host_key}\"\n"
                          f"firmware_keys:\n  - \"{signer}\"\n")
        pid, key, _ = c.add_probe()
        c.start(f"probe-{pid}", [str(exe), "run", "--key", str(key), "--anchor", str(anchor)])
        wait_for("probe connected", lambda: c.get("probe", f"probe-{pid}").get("status", {}).get("connected"), timeout=60)
        yield c, pid, exe, fwkey
    finally:
        c.stop_all()
        print(f"component logs: {c.tmp}")


def release(c: Cluster, fwkey: Path, version: int, bundle: bytes, rollout: str = "lazy") -> dict:
    """Sign `bundle` as `version`, put it in the registration server's firmware directory, return the ProbeFirmware."""
    path = c.firmware_dir / f"vantage-probe-{version}"
    path.write_bytes(bundle)
    out = subprocess.run([str(BIN / "vantage-sign"), "sign", "--key", str(fwkey), "--bundle", str(path), "--version", str(version),
                          "--rollout", rollout], check=True, capture_output=True, text=True).stdout
    return yaml.safe_load(out)


def reconnect(c: Cluster):
    """Restart the controller: it drains, and its probes register again."""
    c.restart_controller(0)


def firmware_of(c: Cluster, pid: int):
    status = c.get("probe", f"probe-{pid}").get("status", {})
    return status.get("firmware") if status.get("connected") else None


def test_tampered_bundle_is_refused_and_old_firmware_keeps_running(world):
    c, pid, exe, fwkey = world
    before = hashlib.sha256(exe.read_bytes()).hexdigest()
    good = exe.read_bytes() + b"\n#vantage-firmware-6000\n"
    fw = release(c, fwkey, 6000, good)
    # Altered after signing.
    (c.firmware_dir / "vantage-probe-6000").write_bytes(good + b"evil")
    c.kubectl_apply(fw)
    reconnect(c)
    wait_for("the refusal", lambda: "firmware REFUSED" in c.logs(f"probe-{pid}"), timeout=60)
    assert "altered" in c.logs(f"probe-{pid}")
    assert hashlib.sha256(exe.read_bytes()).hexdigest() == before, "the running executable is untouched"
    wait_for("the probe back on its old firmware", lambda: firmware_of(c, pid) == 5020, timeout=60)
    c.kubectl("delete", "probefirmware", fw["metadata"]["name"])


def test_good_bundle_is_installed_lazily_at_the_next_reconnect(world):
    c, pid, exe, fwkey = world
    bundle = exe.read_bytes() + b"\n#vantage-firmware-6001\n"
    c.kubectl_apply(release(c, fwkey, 6001, bundle))
    # Lazy: nothing happens while the session holds.
    assert firmware_of(c, pid) == 5020
    reconnect(c)
    wait_for("firmware 6001 running", lambda: firmware_of(c, pid) == 6001, timeout=90)
    assert exe.read_bytes() == bundle
    assert "firmware installed; restarting into it" in c.logs(f"probe-{pid}")


def test_forced_rollout_updates_connected_probes_now(world):
    c, pid, exe, fwkey = world
    bundle = exe.read_bytes() + b"\n#vantage-firmware-6002\n"
    c.kubectl_apply(release(c, fwkey, 6002, bundle, rollout="forced"))
    wait_for("firmware 6002 running without a controller restart", lambda: firmware_of(c, pid) == 6002, timeout=90)
    assert exe.read_bytes() == bundle
    assert "forced firmware rollout" in c.logs("ctl-0")


def test_signature_verifies_with_stock_openssh(world, tmp_path):
    c, _, _, fwkey = world
    bundle = b"any bundle"
    fw = release(c, fwkey, 7000, bundle)
    (tmp_path / "sig").write_text(fw["spec"]["signature"])
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(fwkey)], check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "allowed").write_text(f"vantage {pub}\n")
    manifest = f"vantage-firmware v1\nversion 7000\ndigest {fw['spec']['digest']}\n"
    out = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "vantage", "-n", "vantage-firmware",
                          "-s", str(tmp_path / "sig")], input=manifest, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert fw["spec"]["digest"] == "sha256:" + hashlib.sha256(bundle).hexdigest()
