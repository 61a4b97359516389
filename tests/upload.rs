//! `vars upload`: the machine's age key and its partitioning secrets, laid
//! out for nixos-anywhere. Needs no root.

mod common_activate;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common_activate::*;
use serde_json::json;

fn mode(p: &Path) -> u32 {
    p.symlink_metadata().unwrap().permissions().mode() & 0o7777
}

fn tree(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_iter()
        .map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next().unwrap().to_string();
            let _owner = parts.next();
            let mode = parts.next().unwrap();
            format!("{name} {mode}")
        })
        .collect()
}

fn fleet(root: &Path) -> Fleet {
    let mut f = Fleet::new(root, "cinnabar");
    f.file(
        "luks",
        "passphrase",
        json!({"neededFor": "partitioning"}),
        b"disk secret",
    )
    .file(
        "luks2",
        "key",
        json!({"neededFor": "partitioning", "mode": "0440"}),
        b"\x00second",
    )
    .file(
        "luks3",
        "old",
        json!({"neededFor": "partitioning", "deploy": false}),
        b"no",
    )
    .file("sshd", "key", json!({}), b"service secret")
    .file("pw", "hash", json!({"neededFor": "users"}), b"users secret");
    f.commit();
    f
}

fn upload(f: &Fleet, to: &Path) -> assert_cmd::Command {
    let mut cmd = vars();
    cmd.args(["upload", "--machine", "cinnabar", "--to"])
        .arg(to)
        .arg("--store")
        .arg(&f.repo)
        .arg("--identity")
        .arg(&f.admin_key);
    cmd
}

#[test]
fn upload_writes_the_machine_key_and_partitioning_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fleet(tmp.path());
    let to = tmp.path().join("extra-files");
    let out = upload(&f, &to).assert().success().get_output().clone();
    assert_eq!(
        stdout(&out),
        format!(
            "{0}/var/lib/vars/key.txt\n{0}/run/partitioning-secrets/luks.passphrase\n{0}/run/partitioning-secrets/luks2.key\n",
            to.display()
        )
    );

    assert_eq!(
        tree(&to),
        [
            "run 40755",
            "run/partitioning-secrets 40700",
            "run/partitioning-secrets/luks.passphrase 100400",
            "run/partitioning-secrets/luks2.key 100400",
            "var 40755",
            "var/lib 40755",
            "var/lib/vars 40700",
            "var/lib/vars/key.txt 100400",
        ]
    );
    assert_eq!(mode(&to), 0o755, "DIR becomes the mode of the target's /");
    assert_eq!(
        std::fs::read(to.join("run/partitioning-secrets/luks.passphrase")).unwrap(),
        b"disk secret"
    );
    assert_eq!(
        std::fs::read(to.join("run/partitioning-secrets/luks2.key")).unwrap(),
        b"\x00second"
    );
    assert_eq!(
        std::fs::read(to.join("var/lib/vars/key.txt")).unwrap(),
        std::fs::read(&f.machine_key).unwrap()
    );

    // The key is the machine's: it decrypts the machine's secrets.
    let out = vars()
        .args(["sops", "decrypt", "--input-type", "binary", "--identity"])
        .arg(to.join("var/lib/vars/key.txt"))
        .arg(f.secret_path("sshd", "key"))
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(out.stdout, b"service secret");

    // Again: the files are replaced, nothing else changes.
    upload(&f, &to).assert().success();
    assert_eq!(tree(&to).len(), 8);
}

#[test]
fn upload_is_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fleet(tmp.path());
    let to = tmp.path().join("out");

    // A wrong admin key: nothing can be decrypted, nothing is written.
    let wrong = tmp.path().join("wrong.txt");
    age_key_file(&wrong);
    let mut cmd = vars();
    cmd.args(["upload", "--machine", "cinnabar", "--to"])
        .arg(&to)
        .arg("--store")
        .arg(&f.repo)
        .arg("--identity")
        .arg(&wrong);
    let out = cmd.assert().code(1).get_output().clone();
    let err = stderr(&out);
    assert!(
        err.contains("upload of cinnabar refused (3 problems)"),
        "{err}"
    );
    assert!(
        err.contains("cinnabar: (machine key)/age-key: no identity can decrypt"),
        "{err}"
    );
    assert!(
        err.contains("cinnabar: luks/passphrase: no identity can decrypt"),
        "{err}"
    );
    assert!(!to.exists());

    // A missing partitioning secret: refused too.
    std::fs::remove_file(f.secret_path("luks2", "key")).unwrap();
    let out = upload(&f, &to).assert().code(1).get_output().clone();
    assert!(
        stderr(&out).contains("cinnabar: luks2/key: missing from the store"),
        "{}",
        stderr(&out)
    );
    assert!(!to.exists());

    // An unknown machine.
    let mut cmd = vars();
    cmd.args(["upload", "--machine", "nope", "--to"])
        .arg(&to)
        .arg("--store")
        .arg(&f.repo);
    let out = cmd.assert().failure().get_output().clone();
    assert!(
        stderr(&out).contains("unknown machine \"nope\""),
        "{}",
        stderr(&out)
    );
}
