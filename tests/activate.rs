//! `vars activate`, driven through the built binary. Every test runs in a
//! private mount namespace with a tmpfs over a temporary directory (see
//! `common_activate`), so the host's /run is never touched. They need root.

mod common_activate;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common_activate::*;
use serde_json::{json, Value};

fn nogroup() -> String {
    for name in ["nogroup", "nobody"] {
        if nix::unistd::Group::from_name(name).ok().flatten().is_some() {
            return name.into();
        }
    }
    panic!("no nogroup or nobody group on this system");
}

fn nobody_uid() -> u32 {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user")
        .uid
        .as_raw()
}

fn gid_of(name: &str) -> u32 {
    nix::unistd::Group::from_name(name)
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
}

/// The example fleet: every kind of file the activation must (not) install.
fn example(root: &Path) -> Fleet {
    let mut f = Fleet::new(root, "cinnabar");
    let ssh_path = root.join("etc/ssh/ssh_host_ed25519_key");
    f.file(
        "sshd",
        "id_ed25519",
        json!({"owner": "root", "group": "root", "mode": "0400", "neededFor": "services",
               "restartUnits": ["sshd.service"], "path": ssh_path.to_str().unwrap()}),
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n",
    )
    .file(
        "sshd",
        "id_ed25519.pub",
        json!({"secret": false}),
        b"ssh-ed25519 AAAA fake\n",
    )
    .file(
        "nginx",
        "cert.key",
        json!({"owner": "nobody", "group": nogroup(), "mode": "0440",
               "restartUnits": ["nginx.service"]}),
        b"nginx key\n",
    )
    .file(
        "app",
        "token",
        json!({"owner": "1234", "group": "4321", "mode": "0600", "neededFor": "activation"}),
        b"\x00\x01binary\xfftoken",
    )
    .file(
        "app",
        "admin-only",
        json!({"deploy": false}),
        b"not for the machine",
    )
    .file(
        "ca",
        "ca.key",
        json!({"mode": "0400", "restartUnits": ["sshd.service"]}),
        b"shared ca key\n",
    )
    .share("ca")
    .file(
        "root-password",
        "hash",
        json!({"neededFor": "users", "mode": "0400"}),
        b"$y$hash\n",
    )
    .file(
        "luks",
        "passphrase",
        json!({"neededFor": "partitioning"}),
        b"luks passphrase",
    );
    f.commit();
    f
}

fn assert_file(dir: &Path, name: &str, content: &[u8], uid: u32, gid: u32, mode: u32) {
    let p = dir.join(name);
    let m = p.symlink_metadata().unwrap();
    assert!(m.is_file(), "{name} is a regular file");
    assert_eq!(std::fs::read(&p).unwrap(), content, "{name} content");
    assert_eq!((m.uid(), m.gid()), (uid, gid), "{name} owner");
    assert_eq!(
        m.mode() & 0o7777,
        mode,
        "{name} mode {:o}",
        m.mode() & 0o7777
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn end_to_end_installs_every_secret_with_owner_mode_name_and_path() {
    in_namespace(|root| {
        let f = example(root);
        let secrets = root.join("run/secrets");
        let out = f.activate(&secrets).assert().success().get_output().clone();
        assert!(
            stdout(&out).contains("installed 4 secrets"),
            "{}",
            stdout(&out)
        );

        // The link and the generation.
        assert_eq!(
            std::fs::read_link(&secrets).unwrap(),
            Path::new("secrets.d/1")
        );
        let dotd = dotd(&secrets);
        let st = nix::sys::statfs::statfs(&dotd).unwrap();
        assert_eq!(st.filesystem_type().0 as i64, 0x8584_58f6, "ramfs on .d");
        assert_eq!(dotd.metadata().unwrap().mode() & 0o7777, 0o751);
        assert_eq!(
            dotd.join("1").symlink_metadata().unwrap().mode() & 0o7777,
            0o751
        );

        // Exactly the services-phase files, named <generator>.<file>.
        assert_eq!(
            names(&secrets),
            [
                "app.token",
                "ca.ca.key",
                "nginx.cert.key",
                "sshd.id_ed25519"
            ]
        );
        let ng = gid_of(&nogroup());
        assert_file(
            &secrets,
            "sshd.id_ed25519",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n",
            0,
            0,
            0o400,
        );
        assert_file(
            &secrets,
            "nginx.cert.key",
            b"nginx key\n",
            nobody_uid(),
            ng,
            0o440,
        );
        assert_file(
            &secrets,
            "app.token",
            b"\x00\x01binary\xfftoken",
            1234,
            4321,
            0o600,
        );
        assert_file(&secrets, "ca.ca.key", b"shared ca key\n", 0, 0, 0o400);

        // Contents equal what the store decrypts to with the admin key.
        for (gen, file) in [("sshd", "id_ed25519"), ("ca", "ca.key"), ("app", "token")] {
            let out = vars()
                .args(["sops", "decrypt", "--input-type", "binary", "--identity"])
                .arg(&f.admin_key)
                .arg(f.secret_path(gen, file))
                .assert()
                .success()
                .get_output()
                .stdout
                .clone();
            assert_eq!(
                std::fs::read(secrets.join(format!("{gen}.{file}"))).unwrap(),
                out
            );
        }

        // The path option: a symlink at that absolute path to the installed name.
        let link = root.join("etc/ssh/ssh_host_ed25519_key");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            secrets.join("sshd.id_ed25519")
        );
        assert_eq!(
            std::fs::read(&link).unwrap(),
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n"
        );

        // Phase users: its own directory, only the users files, root-owned.
        let for_users = root.join("run/secrets-for-users");
        f.activate(&for_users)
            .args(["--phase", "users"])
            .assert()
            .success();
        assert_eq!(names(&for_users), ["root-password.hash"]);
        assert_file(&for_users, "root-password.hash", b"$y$hash\n", 0, 0, 0o400);
        assert_eq!(
            std::fs::read_link(&for_users).unwrap(),
            Path::new("secrets-for-users.d/1")
        );
    });
}

#[test]
fn default_directories_and_identities() {
    in_namespace(|root| {
        let f = example(root);
        // Inside the namespace only: fresh /run, /etc/ssh and /var/lib.
        for dir in ["/run", "/etc/ssh", "/var/lib"] {
            mount_tmpfs(Path::new(dir));
        }
        // No identity at the default places: one clear error naming both.
        let out = f
            .activate_without_identity(Path::new("/run/secrets"))
            .assert()
            .code(1)
            .get_output()
            .clone();
        let err = stderr(&out);
        assert!(
            err.contains("/var/lib/vars/key.txt (not found)")
                && err.contains("/etc/ssh/ssh_host_ed25519_key (not found)"),
            "{err}"
        );
        assert!(!Path::new("/run/secrets").exists());

        std::fs::create_dir_all("/var/lib/vars").unwrap();
        std::fs::copy(&f.machine_key, "/var/lib/vars/key.txt").unwrap();
        let mut cmd = vars();
        cmd.args(["activate", "--machine", "cinnabar", "--config"])
            .arg(f.config())
            .arg("--store")
            .arg(&f.repo);
        cmd.assert().success();
        assert_eq!(
            std::fs::read_link("/run/secrets").unwrap(),
            Path::new("secrets.d/1")
        );
        assert_eq!(
            std::fs::read("/run/secrets/nginx.cert.key").unwrap(),
            b"nginx key\n"
        );

        let mut cmd = vars();
        cmd.args(["activate", "--machine", "cinnabar", "--phase", "users"])
            .arg("--config")
            .arg(f.config())
            .arg("--store")
            .arg(&f.repo);
        cmd.assert().success();
        assert_eq!(
            std::fs::read("/run/secrets-for-users/root-password.hash").unwrap(),
            b"$y$hash\n"
        );

        // --config defaults to DIR/vars.json of --store.
        let mut cmd = vars();
        cmd.args(["activate", "--machine", "cinnabar", "--dry-run", "--store"])
            .arg(&f.repo);
        cmd.assert().success();
        // --store may also name the sops/ directory itself (as the NixOS module does).
        let mut cmd = vars();
        cmd.args(["activate", "--machine", "cinnabar", "--dry-run", "--config"])
            .arg(f.config())
            .arg("--store")
            .arg(f.repo.join("sops"));
        cmd.assert().success();
        // A bad configuration is a configuration error (exit 2).
        std::fs::write(root.join("bad.json"), "{}").unwrap();
        let mut cmd = vars();
        cmd.args(["activate", "--machine", "cinnabar", "--config"])
            .arg(root.join("bad.json"))
            .arg("--store")
            .arg(&f.repo);
        cmd.assert().code(2);
    });
}

#[test]
fn generations_swap_prune_and_rollback() {
    in_namespace(|root| {
        let mut f = example(root);
        let secrets = root.join("run/secrets");
        f.activate(&secrets).assert().success();
        assert_eq!(generations(&secrets), [1]);

        f.file(
            "nginx",
            "cert.key",
            json!({"owner": "nobody", "mode": "0440"}),
            b"v2\n",
        );
        f.commit();
        f.activate(&secrets).assert().success();
        assert_eq!(linked_generation(&secrets), Some(2));
        assert_eq!(generations(&secrets), [2], ".d/1 is pruned");
        assert!(!dotd(&secrets).join("1.json").exists());
        assert_eq!(
            std::fs::read(secrets.join("nginx.cert.key")).unwrap(),
            b"v2\n"
        );

        // Keep two: 2 stays when 3 arrives, and --rollback goes back to it.
        f.file(
            "nginx",
            "cert.key",
            json!({"owner": "nobody", "mode": "0440"}),
            b"v3\n",
        );
        f.commit();
        f.activate(&secrets)
            .args(["--keep-generations", "2"])
            .assert()
            .success();
        assert_eq!(linked_generation(&secrets), Some(3));
        assert_eq!(generations(&secrets), [2, 3]);
        let gen2 = snapshot(&dotd(&secrets).join("2"));

        let out = vars()
            .args(["activate", "--rollback", "--json", "--secrets-dir"])
            .arg(&secrets)
            .assert()
            .success()
            .get_output()
            .clone();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["rollback"], true);
        assert_eq!(report["generation"], 2);
        assert_eq!(report["previous"], 3);
        assert_eq!(report["changed"], json!(["nginx.cert.key"]));
        assert_eq!(linked_generation(&secrets), Some(2));
        assert_eq!(
            std::fs::read(secrets.join("nginx.cert.key")).unwrap(),
            b"v2\n"
        );
        assert_eq!(snapshot(&secrets.join(".")), gen2);
        assert_eq!(
            generations(&secrets),
            [2],
            "the undone generation 3 is removed"
        );

        // Nothing older is kept: a second rollback is refused and changes nothing.
        let out = vars()
            .args(["activate", "--rollback", "--secrets-dir"])
            .arg(&secrets)
            .assert()
            .code(1)
            .get_output()
            .clone();
        assert!(
            stderr(&out).contains("nothing to roll back to"),
            "{}",
            stderr(&out)
        );
        assert_eq!(linked_generation(&secrets), Some(2));

        // The next activation follows the one linked, which it keeps.
        f.activate(&secrets)
            .args(["--keep-generations", "2"])
            .assert()
            .success();
        assert_eq!(linked_generation(&secrets), Some(3));
        assert_eq!(generations(&secrets), [2, 3]);
        assert_eq!(
            std::fs::read(secrets.join("nginx.cert.key")).unwrap(),
            b"v3\n"
        );
    });
}

/// Runs a refused activation and checks every line of `expected` is in its
/// error, and the whole installed tree is byte-identical afterwards.
fn assert_refused(root: &Path, mut cmd: assert_cmd::Command, expected: &[&str]) {
    let before = snapshot(&root.join("run"));
    let out = cmd.assert().code(1).get_output().clone();
    let err = stderr(&out);
    for line in expected {
        assert!(err.contains(line), "expected {line:?} in:\n{err}");
    }
    assert!(
        err.contains("still points at generation 1"),
        "says the previous generation stays:\n{err}"
    );
    assert_eq!(
        snapshot(&root.join("run")),
        before,
        "the tree changed:\n{err}"
    );
}

#[test]
fn refusals_leave_the_previous_generation_byte_identical() {
    in_namespace(|root| {
        let mut f = example(root);
        let secrets = root.join("run/secrets");
        f.activate(&secrets).assert().success();

        // Tampered store file: one byte of the sealed data changed.
        let sealed_path = f.secret_path("nginx", "cert.key");
        let original = std::fs::read(&sealed_path).unwrap();
        let mut doc: Value = serde_json::from_slice(&original).unwrap();
        let data = doc["data"].as_str().unwrap().to_string();
        let i = data.find("data:").unwrap() + 6;
        let mut bytes = data.into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        doc["data"] = Value::String(String::from_utf8(bytes).unwrap());
        std::fs::write(&sealed_path, serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_refused(
            root,
            f.activate(&secrets),
            &["cinnabar: nginx/cert.key: MAC mismatch"],
        );
        std::fs::write(&sealed_path, &original).unwrap();

        // Missing store file.
        let missing = f.secret_path("app", "token");
        let saved = std::fs::read(&missing).unwrap();
        std::fs::remove_file(&missing).unwrap();
        assert_refused(
            root,
            f.activate(&secrets),
            &["cinnabar: app/token: missing from the store"],
        );
        std::fs::write(&missing, saved).unwrap();

        // Unknown owner and unknown group, listed together.
        f.file(
            "nginx",
            "cert.key",
            json!({"owner": "no-such-user-vars", "group": "no-such-group-vars"}),
            b"x",
        );
        f.commit();
        assert_refused(
            root,
            f.activate(&secrets),
            &[
                "cinnabar: nginx/cert.key: unknown owner \"no-such-user-vars\"",
                "cinnabar: nginx/cert.key: unknown group \"no-such-group-vars\"",
            ],
        );
        f.file("nginx", "cert.key", json!({"owner": "nobody"}), b"x");
        f.commit();

        // No identity file readable.
        let mut cmd = f.activate_without_identity(&secrets);
        cmd.arg("--identity").arg(root.join("keys/absent.txt"));
        assert_refused_no_identity(root, cmd, &root.join("keys/absent.txt"));

        // An identity that matches nothing: every file is listed.
        let wrong = root.join("keys/wrong.txt");
        age_key_file(&wrong);
        let mut cmd = f.activate_without_identity(&secrets);
        cmd.arg("--identity").arg(&wrong);
        assert_refused(
            root,
            cmd,
            &[
                "cinnabar: sshd/id_ed25519: no identity can decrypt",
                "cinnabar: nginx/cert.key: no identity can decrypt",
                "cinnabar: app/token: no identity can decrypt",
                "cinnabar: ca/ca.key: no identity can decrypt",
                &format!("identities tried: {}", wrong.display()),
            ],
        );

        // Several problems of different kinds at once: all of them, one line each.
        f.file("ca", "ca.key", json!({"owner": "no-such-user-vars"}), b"ca");
        f.commit();
        std::fs::remove_file(f.secret_path("app", "token")).unwrap();
        let before = snapshot(&root.join("run"));
        let out = f.activate(&secrets).assert().code(1).get_output().clone();
        let err = stderr(&out);
        assert!(err.contains("refused (2 problems)"), "{err}");
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("  cinnabar: "))
                .count(),
            2,
            "{err}"
        );
        assert_eq!(snapshot(&root.join("run")), before);
    });
}

fn assert_refused_no_identity(root: &Path, mut cmd: assert_cmd::Command, path: &Path) {
    let before = snapshot(&root.join("run"));
    let out = cmd.assert().code(1).get_output().clone();
    let err = stderr(&out);
    assert!(
        err.contains("no identity to decrypt cinnabar's secrets")
            && err.contains(&format!("{} (not found)", path.display())),
        "{err}"
    );
    assert_eq!(snapshot(&root.join("run")), before);
}

#[test]
fn planted_symlinks_are_not_followed() {
    in_namespace(|root| {
        let mut f = example(root);
        let secrets = root.join("run/secrets");
        f.activate(&secrets).assert().success();

        let outside = root.join("outside");
        std::fs::create_dir_all(outside.join("dir")).unwrap();
        let victim = outside.join("victim");
        std::fs::write(&victim, b"original").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let outside_before = snapshot(&outside);

        let d = dotd(&secrets);
        // A file of the current generation replaced by a symlink to the victim.
        std::fs::remove_file(d.join("1/nginx.cert.key")).unwrap();
        std::os::unix::fs::symlink(&victim, d.join("1/nginx.cert.key")).unwrap();
        // An extra symlink inside the generation, and entries where the next
        // generation and its staging directory would go.
        std::os::unix::fs::symlink(&victim, d.join("1/evil")).unwrap();
        std::os::unix::fs::symlink(outside.join("dir"), d.join("2")).unwrap();
        std::os::unix::fs::symlink(outside.join("dir"), d.join(".new-3")).unwrap();
        std::os::unix::fs::symlink(&victim, d.join("3.json")).unwrap();
        // The `path` option's location already a symlink to the victim.
        let path_link = root.join("etc/ssh/ssh_host_ed25519_key");
        std::fs::remove_file(&path_link).unwrap();
        std::os::unix::fs::symlink(&victim, &path_link).unwrap();

        f.file(
            "nginx",
            "cert.key",
            json!({"owner": "nobody", "mode": "0440"}),
            b"v2\n",
        );
        f.commit();
        let out = f
            .activate(&secrets)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .clone();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();

        assert_eq!(
            snapshot(&outside),
            outside_before,
            "nothing outside changed"
        );
        assert_eq!(linked_generation(&secrets), Some(3));
        assert_eq!(
            generations(&secrets),
            [3],
            "planted entries are removed, not followed"
        );
        assert_eq!(
            std::fs::read(secrets.join("nginx.cert.key")).unwrap(),
            b"v2\n"
        );
        assert!(secrets
            .join("nginx.cert.key")
            .symlink_metadata()
            .unwrap()
            .is_file());
        assert_eq!(
            std::fs::read_link(&path_link).unwrap(),
            secrets.join("sshd.id_ed25519")
        );
        assert_eq!(report["changed"], json!([]));
        assert_eq!(
            report["added"],
            json!(["nginx.cert.key"]),
            "a planted symlink counts as absent"
        );

        // A symlink planted as the whole .d directory is refused.
        std::fs::create_dir_all(root.join("run2")).unwrap();
        std::os::unix::fs::symlink(outside.join("dir"), root.join("run2/secrets.d")).unwrap();
        let out = f
            .activate(&root.join("run2/secrets"))
            .assert()
            .code(1)
            .get_output()
            .clone();
        assert!(
            stderr(&out).contains("is not a directory"),
            "{}",
            stderr(&out)
        );
        assert_eq!(snapshot(&outside), outside_before);
    });
}

#[test]
fn the_ssh_host_key_alone_decrypts_both_recipient_kinds() {
    in_namespace(|root| {
        let host_key = root.join("host/ssh_host_ed25519_key");
        let Some((x25519, ssh)) = ssh_host_key(&host_key) else {
            return;
        };
        let mut f = Fleet::new(root, "cinnabar");
        f.file("via-age", "secret", json!({}), b"sealed to ssh-to-age\n")
            .seal_to("via-age", vec![x25519])
            .file("via-ssh", "secret", json!({}), b"sealed to ssh-ed25519\n")
            .seal_to("via-ssh", vec![ssh]);
        f.commit();

        let secrets = root.join("run/secrets");
        let mut cmd = f.activate_without_identity(&secrets);
        cmd.arg("--identity").arg(&host_key).assert().success();
        assert_eq!(
            std::fs::read(secrets.join("via-age.secret")).unwrap(),
            b"sealed to ssh-to-age\n"
        );
        assert_eq!(
            std::fs::read(secrets.join("via-ssh.secret")).unwrap(),
            b"sealed to ssh-ed25519\n"
        );

        // The same from the default location, with no --identity at all.
        for dir in ["/etc/ssh", "/var/lib"] {
            mount_tmpfs(Path::new(dir));
        }
        std::fs::copy(&host_key, "/etc/ssh/ssh_host_ed25519_key").unwrap();
        let other = root.join("run/other");
        f.activate_without_identity(&other).assert().success();
        assert_eq!(
            std::fs::read(other.join("via-ssh.secret")).unwrap(),
            b"sealed to ssh-ed25519\n"
        );

        // The machine's own age key is not sealed to: it decrypts neither.
        let mut cmd = f.activate_without_identity(&root.join("run/third"));
        cmd.arg("--identity").arg(&f.machine_key);
        let out = cmd.assert().code(1).get_output().clone();
        assert!(
            stderr(&out).contains("refused (2 problems)"),
            "{}",
            stderr(&out)
        );
    });
}

#[test]
fn change_report_lists_exactly_the_changed_files_and_their_units() {
    in_namespace(|root| {
        let mut f = Fleet::new(root, "cinnabar");
        f.file("a", "key", json!({"restartUnits": ["a.service"]}), b"a1")
            .file(
                "b",
                "key",
                json!({"restartUnits": ["b.service", "shared.service"]}),
                b"b1",
            )
            .file("c", "key", json!({"restartUnits": ["c.service"]}), b"c1")
            .file("e", "key", json!({"restartUnits": ["e.service"]}), b"e1")
            .file("f", "key", json!({"restartUnits": ["f.service"]}), b"f1");
        f.commit();
        let secrets = root.join("run/secrets");
        let out = f
            .activate(&secrets)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .clone();
        let first: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            first["added"],
            json!(["a.key", "b.key", "c.key", "e.key", "f.key"])
        );
        assert_eq!(
            first["restartUnits"],
            json!([
                "a.service",
                "b.service",
                "c.service",
                "e.service",
                "f.service",
                "shared.service"
            ])
        );
        assert_eq!(first["generation"], 1);
        assert_eq!(first["previous"], Value::Null);

        // b: new content; c: removed; d: added; e: same content, new mode;
        // a and f: untouched (f re-sealed, so its ciphertext differs).
        f.file(
            "b",
            "key",
            json!({"restartUnits": ["b.service", "shared.service"]}),
            b"b2",
        )
        .remove_file("c", "key")
        .file(
            "d",
            "key",
            json!({"restartUnits": ["d.service", "shared.service"]}),
            b"d1",
        )
        .file(
            "e",
            "key",
            json!({"restartUnits": ["e.service"], "mode": "0440"}),
            b"e1",
        );
        f.commit();

        // A dry run reports the same and writes nothing.
        let before = snapshot(&root.join("run"));
        let out = f
            .activate(&secrets)
            .args(["--dry-run", "--json"])
            .assert()
            .success()
            .get_output()
            .clone();
        let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(snapshot(&root.join("run")), before);
        assert_eq!(dry["dryRun"], true);

        let out = f
            .activate(&secrets)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .clone();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        for r in [&dry, &report] {
            assert_eq!(r["added"], json!(["d.key"]));
            assert_eq!(r["changed"], json!(["b.key", "e.key"]));
            assert_eq!(r["removed"], json!(["c.key"]));
            assert_eq!(
                r["restartUnits"],
                json!([
                    "b.service",
                    "c.service",
                    "d.service",
                    "e.service",
                    "shared.service"
                ])
            );
        }
        assert_eq!(report["generation"], 2);
        assert_eq!(report["previous"], 1);
        assert_eq!(
            report["files"],
            json!(["a.key", "b.key", "d.key", "e.key", "f.key"])
        );

        // The same change in words.
        f.file("a", "key", json!({"restartUnits": ["a.service"]}), b"a2");
        f.commit();
        let out = f.activate(&secrets).assert().success().get_output().clone();
        let text = stdout(&out);
        assert!(text.contains("  changed  a.key\n"), "{text}");
        assert!(text.contains("  restart  a.service\n"), "{text}");
        assert!(!text.contains("b.key"), "{text}");

        // Nothing changed: nothing to restart.
        let out = f
            .activate(&secrets)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .clone();
        let none: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(none["added"], json!([]));
        assert_eq!(none["changed"], json!([]));
        assert_eq!(none["removed"], json!([]));
        assert_eq!(none["restartUnits"], json!([]));
    });
}

#[test]
fn partitioning_and_undeployed_files_are_never_installed() {
    in_namespace(|root| {
        let f = example(root);
        for phase in ["services", "users"] {
            let dir = root.join(format!("run/{phase}"));
            f.activate(&dir).args(["--phase", phase]).assert().success();
            for name in names(&dir) {
                assert!(
                    !name.starts_with("luks.") && name != "app.admin-only",
                    "{phase} installed {name}"
                );
            }
        }
    });
}

#[test]
fn users_phase_accepts_only_root_or_numeric_owners() {
    in_namespace(|root| {
        let mut f = Fleet::new(root, "cinnabar");
        f.file(
            "pw",
            "alice",
            json!({"neededFor": "users", "owner": "nobody"}),
            b"h",
        )
        .file(
            "pw",
            "bob",
            json!({"neededFor": "users", "owner": "0", "group": "0"}),
            b"h",
        );
        f.commit();
        let out = f
            .activate(&root.join("run/secrets-for-users"))
            .args(["--phase", "users"])
            .assert()
            .code(1)
            .get_output()
            .clone();
        let err = stderr(&out);
        assert!(
            err.contains(
                "cinnabar: pw/alice: owner \"nobody\": the users phase runs before users exist"
            ),
            "{err}"
        );
        assert!(!err.contains("pw/bob"), "{err}");
    });
}

#[test]
fn non_root_without_a_writable_secrets_dir_is_a_clear_error() {
    in_namespace(|root| {
        let f = example(root);
        std::fs::set_permissions(root.join("keys"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        let out = {
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("vars"));
            cmd.args(["activate", "--machine", "cinnabar", "--config"])
                .arg(f.config())
                .arg("--store")
                .arg(&f.repo)
                .arg("--identity")
                .arg(&f.machine_key)
                .arg("--secrets-dir")
                .arg(root.join("run/secrets"))
                .uid(nobody_uid())
                .gid(gid_of(&nogroup()));
            assert_cmd::Command::from_std(cmd)
                .assert()
                .code(1)
                .get_output()
                .clone()
        };
        let err = stderr(&out);
        assert!(
            err.contains("not running as root") && err.contains("--secrets-dir"),
            "{err}"
        );
    });
}

#[test]
fn non_root_with_a_writable_secrets_dir_needs_allow_disk() {
    in_namespace(|root| {
        let mut f = Fleet::new(root, "cinnabar");
        let ng = nogroup();
        f.file(
            "app",
            "token",
            json!({"owner": "nobody", "group": ng, "mode": "0400",
                                      "restartUnits": ["app.service"]}),
            b"mine",
        );
        f.commit();
        let nobody = nobody_uid();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::copy(&f.machine_key, home.join("key.txt")).unwrap();
        for p in [home.clone(), home.join("key.txt")] {
            nix::unistd::chown(&p, Some(nobody.into()), None).unwrap();
        }
        // The store is public (sealed) data: readable by everyone.
        assert!(std::process::Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(root)
            .arg(root.join("repo"))
            .status()
            .unwrap()
            .success());
        let run = |extra: &[&str]| {
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("vars"));
            cmd.args(["activate", "--machine", "cinnabar", "--config"])
                .arg(f.config())
                .arg("--store")
                .arg(&f.repo)
                .arg("--identity")
                .arg(home.join("key.txt"))
                .arg("--secrets-dir")
                .arg(home.join("secrets"))
                .args(extra)
                .uid(nobody)
                .gid(gid_of(&nogroup()));
            assert_cmd::Command::from_std(cmd)
        };
        let out = run(&[]).assert().code(1).get_output().clone();
        assert!(
            stderr(&out).contains("only root can mount one")
                && stderr(&out).contains("--allow-disk"),
            "{}",
            stderr(&out)
        );
        assert!(!home.join("secrets").exists());

        let out = run(&["--allow-disk"])
            .assert()
            .success()
            .get_output()
            .clone();
        assert!(
            stdout(&out).contains("(generation 1, tmpfs"),
            "{}",
            stdout(&out)
        );
        assert_file(
            &home.join("secrets"),
            "app.token",
            b"mine",
            nobody,
            gid_of(&ng),
            0o400,
        );
    });
}

#[test]
fn concurrent_runs_are_serialised() {
    in_namespace(|root| {
        let f = example(root);
        let secrets = root.join("run/secrets");
        let children: Vec<_> = (0..4)
            .map(|_| {
                let mut cmd: std::process::Command =
                    std::process::Command::new(assert_cmd::cargo::cargo_bin("vars"));
                cmd.args(["activate", "--machine", "cinnabar", "--config"])
                    .arg(f.config())
                    .arg("--store")
                    .arg(&f.repo)
                    .arg("--identity")
                    .arg(&f.machine_key)
                    .arg("--secrets-dir")
                    .arg(&secrets)
                    .stdout(std::process::Stdio::null());
                cmd.spawn().unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        assert_eq!(linked_generation(&secrets), Some(4));
        assert_eq!(generations(&secrets), [4]);
        assert_eq!(
            names(&secrets),
            [
                "app.token",
                "ca.ca.key",
                "nginx.cert.key",
                "sshd.id_ed25519"
            ]
        );
        // One ramfs, not one per run.
        let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let dotd = dotd(&secrets);
        let on_dotd = mounts
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(dotd.to_str().unwrap()))
            .count();
        assert_eq!(on_dotd, 1, "{mounts}");
    });
}

/// The whole flow with the real engine: `vars keygen`, `vars generate` (the
/// seed's sshd example and files for every owner and mode), `vars upload` for
/// the machine key, then `vars activate`; contents equal `vars get`.
#[test]
fn what_vars_generate_produced_is_installed() {
    in_namespace(|root| {
        let Some(_) = ssh_host_key(&root.join("probe/key")) else {
            return;
        };
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let admin = root.join("keys/admin.txt");
        age_key_file(&admin);
        let ng = nogroup();
        let manifest = json!({"machines": {"cinnabar": {"class": "nixos", "tags": [],
        "generators": {
            "sshd": {
                "files": {
                    "id_ed25519": {"restartUnits": ["sshd.service"],
                                   "path": root.join("etc/ssh/ssh_host_ed25519_key").to_str().unwrap()},
                    "id_ed25519.pub": {"secret": false}
                },
                "script": "ssh-keygen -q -t ed25519 -N '' -C cinnabar -f $out/id_ed25519"
            },
            "web": {
                "files": {
                    "tls.key": {"owner": "nobody", "group": ng, "mode": "0440"},
                    "token": {"owner": "1234", "group": "1234", "mode": "0600", "neededFor": "activation"}
                },
                "script": "head -c 32 /dev/urandom > $out/tls.key; printf token-%s $RANDOM > $out/token"
            }
        }}}});
        std::fs::write(repo.join("vars.json"), manifest.to_string()).unwrap();

        let run = |args: &[&str]| {
            let mut cmd = vars();
            cmd.arg("--repo").arg(&repo).args(args);
            cmd
        };
        let admin_s = admin.to_str().unwrap();
        run(&["keygen", "--user", "admin", "--identity", admin_s])
            .assert()
            .success();
        run(&["generate", "--no-sandbox", "--identity", admin_s])
            .assert()
            .success();
        let up = root.join("upload");
        run(&[
            "upload",
            "--machine",
            "cinnabar",
            "--to",
            up.to_str().unwrap(),
            "--identity",
            admin_s,
        ])
        .assert()
        .success();

        let secrets = root.join("run/secrets");
        run(&[
            "activate",
            "--machine",
            "cinnabar",
            "--identity",
            up.join("var/lib/vars/key.txt").to_str().unwrap(),
            "--secrets-dir",
            secrets.to_str().unwrap(),
        ])
        .assert()
        .success();

        assert_eq!(
            names(&secrets),
            ["sshd.id_ed25519", "web.tls.key", "web.token"]
        );
        for (file, uid, gid, mode) in [
            ("sshd/id_ed25519", 0, 0, 0o400),
            ("web/tls.key", nobody_uid(), gid_of(&ng), 0o440),
            ("web/token", 1234, 1234, 0o600),
        ] {
            let value = run(&["get", "cinnabar", file, "--identity", admin_s])
                .assert()
                .success()
                .get_output()
                .stdout
                .clone();
            assert!(!value.is_empty());
            assert_file(&secrets, &file.replace('/', "."), &value, uid, gid, mode);
        }
        // The installed host key is a working key matching the public value.
        let link = root.join("etc/ssh/ssh_host_ed25519_key");
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&link)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let public = run(&["get", "cinnabar", "sshd/id_ed25519.pub"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        assert!(String::from_utf8_lossy(&public)
            .starts_with(String::from_utf8_lossy(&out.stdout).trim()));
    });
}
