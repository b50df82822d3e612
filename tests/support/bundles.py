"""Evidence bundles for tests: the stand-alone verifier run as an auditor runs it, a bundle's
proofs.ndjson read and rewritten, the manifest re-sealed (an insider holding the key)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from auditlog.evidence.bundle import manifest_message
from auditlog.integrity.keys import Signer, public_pem

SCRIPT = Path(__file__).parents[2] / "src" / "auditlog" / "evidence" / "verify_bundle.py"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
Lines = list[dict[str, Any]]


def run_script(
    bundle: Path, signers: Sequence[Signer | str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``python3 -I verify_bundle.py BUNDLE --public-key ...`` (a Signer, or PEM text)."""
    cmd = [PYTHON, "-I", str(SCRIPT), str(bundle)]
    for n, key in enumerate(signers):
        pem = tmp_path / f"pin{n}.pem"
        pem.write_text(key if isinstance(key, str) else public_pem(key.public))
        cmd += ["--public-key", str(pem)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )


def failed_seqs(output: str) -> set[tuple[str, int]]:
    """(category, seq) of every ``proof fails`` the stand-alone script printed."""
    found = re.findall(
        r"^FAIL proofs\.ndjson row \d+ \((\w+) seq (\d+)\): proof fails", output, re.M
    )
    return {(cat, int(seq)) for cat, seq in found}


def read_lines(data: bytes) -> Lines:
    return [json.loads(line) for line in data.splitlines()]


def dump_lines(lines: Lines) -> bytes:
    return b"".join(json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in lines)


def node_line(lines: Lines, level: int, index: int) -> tuple[dict[str, Any], int]:
    """The node-table line holding node (level, index), and its position in that line."""
    for item in lines:
        if item.get("level") == level and index in item.get("index", []):
            return item, item["index"].index(index)
    raise LookupError(f"no node ({level}, {index}) in the table")


def forge_proofs(path: Path, signer: Signer, edit: Callable[[bytes], bytes]) -> Path:
    """Change proofs.ndjson and re-seal the manifest with ``signer`` (an insider with the key):
    only the proof check itself can find it."""
    out = path.with_name("forged.zip")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        proofs = edit(zin.read("proofs.ndjson"))
        m = json.loads(zin.read("manifest.json"))
        m["files"]["proofs.ndjson"]["sha256"] = hashlib.sha256(proofs).hexdigest()
        m["files"]["proofs.ndjson"]["bytes"] = len(proofs)
        m["manifest_key_id"] = signer.key_id
        m["public_keys"][signer.key_id] = public_pem(signer.public)
        body = json.dumps(m).encode()
        digest = hashlib.sha256(body).hexdigest()
        sig = signer.sign(manifest_message(digest, signer.key_id)).hex()
        seal = {"key_id": signer.key_id, "manifest_sha256": digest, "signature": sig}
        for item in zin.infolist():
            data = {"proofs.ndjson": proofs, "manifest.json": body,
                    "manifest.sig.json": json.dumps(seal).encode()}.get(item.filename)  # fmt: skip
            zout.writestr(item.filename, data if data is not None else zin.read(item.filename))
    return out
