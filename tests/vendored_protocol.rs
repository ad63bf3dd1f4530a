//! vendor/kafka-protocol must be crates.io kafka-protocol 0.18.0 plus exactly
//! vendor/kafka-protocol.patch, so every change to the decoder we ship is one reviewed hunk.
//! Reverse-applies the patch to a copy and compares against the pristine checksums recorded
//! in vendor/kafka-protocol.pristine-sha256 (no network needed).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Files in the vendored tree that are ours, not upstream's.
const OURS: &[&str] = &["PATCHED.md"];

/// Relative '/'-separated paths of all regular files under `dir`, skipping a top-level
/// `target/` (cargo run inside the crate; ignored by its own .gitignore).
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .replace('\\', "/");
            if rel == "target" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn sha256_hex(path: &Path) -> String {
    Sha256::digest(fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn vendored_kafka_protocol_is_pristine_plus_patch() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let vendored = root.join("vendor/kafka-protocol");
    let patch_file = root.join("vendor/kafka-protocol.patch");
    let sums_file = root.join("vendor/kafka-protocol.pristine-sha256");

    let expected: BTreeMap<String, String> = fs::read_to_string(&sums_file)
        .unwrap()
        .lines()
        .map(|line| {
            let (sum, path) = line.split_once("  ").expect("`sha256  path` lines");
            (path.to_string(), sum.to_string())
        })
        .collect();

    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path();
    for rel in files(&vendored) {
        if OURS.contains(&rel.as_str()) {
            continue;
        }
        let to = copy.join(&rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(vendored.join(&rel), &to).unwrap();
    }

    // -F0: no fuzz, a hunk must match exactly; -f: never guess that a hunk is reversed.
    let out = Command::new("patch")
        .args(["-R", "-p1", "-f", "-F0", "--no-backup-if-mismatch", "-d"])
        .arg(copy)
        .arg("-i")
        .arg(&patch_file)
        .stdin(Stdio::null())
        .output()
        .expect("running `patch` (Debian package `patch`)");
    assert!(
        out.status.success(),
        "vendor/kafka-protocol.patch does not reverse-apply to vendor/kafka-protocol, so a \
         patched region changed; regenerate the patch (vendor/kafka-protocol/PATCHED.md):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut problems = Vec::new();
    let present = files(copy);
    for (path, sum) in &expected {
        let file = copy.join(path);
        if !file.is_file() {
            problems.push(format!("missing: {path}"));
        } else {
            let actual = sha256_hex(&file);
            if &actual != sum {
                problems.push(format!(
                    "differs from 0.18.0: {path} (sha256 {actual}, pristine {sum})"
                ));
            }
        }
    }
    for path in present.iter().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!("not in 0.18.0: {path}"));
    }
    assert!(
        problems.is_empty(),
        "vendor/kafka-protocol is not pristine kafka-protocol 0.18.0 + vendor/kafka-protocol.patch \
         (after reverse-applying the patch):\n  {}\nPut intended changes into the patch and \
         PATCHED.md (see there how to regenerate it).",
        problems.join("\n  ")
    );
}
