//! `vars generate`: the seed's sshd example end to end (read back by the real
//! sops with the admin key and with the machine key), what runs and what does
//! not, and the no-op second run.

mod engine;

use engine::*;

fn sshd() -> Value {
    one_machine(
        "cinnabar",
        json!({ "sshd": {
            "files": { "id_ed25519": { "secret": true }, "id_ed25519.pub": { "secret": false } },
            "script": "ssh-keygen -t ed25519 -f $out/id_ed25519 -N \"\"",
        }}),
    )
}

#[test]
fn sshd_key_is_sealed_for_the_admin_and_the_machine() {
    if !require("ssh-keygen") || !require("sops") || !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(sshd());
    let out = fleet.generate(&[]).ok();
    assert_eq!(
        out.stdout,
        "generator      result\ncinnabar/sshd  generated (never generated)\n"
    );
    assert_eq!(out.stderr, "[1/1] cinnabar/sshd generated\n");

    let secret = "sops/machines/cinnabar/secrets/sshd/id_ed25519";
    let public = "sops/machines/cinnabar/public/sshd/id_ed25519.pub";
    let files: Vec<String> = fleet
        .tree()
        .into_keys()
        .filter(|p| p.contains("/sshd"))
        .collect();
    assert_eq!(
        files,
        [
            "machines/cinnabar/meta/sshd.json",
            "machines/cinnabar/public/sshd/id_ed25519.pub",
            "machines/cinnabar/secrets/sshd/id_ed25519",
        ]
    );
    let pubkey = fleet.read_string(public);
    assert!(pubkey.starts_with("ssh-ed25519 AAAA"), "{pubkey}");
    // The private key never lands in the clear anywhere in the store.
    let sealed = fleet.read_string(secret);
    assert!(!sealed.contains("PRIVATE KEY"));
    assert_eq!(
        fleet.recipients(secret),
        [fleet.admin(), fleet.machine_key("cinnabar")].into()
    );

    // The real sops opens it with the admin key...
    let by_admin = fleet.sops_decrypt(secret, &fleet.keys_txt());
    assert!(by_admin.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    // ...and with the machine key, itself sealed to the admins in age-key.
    let machine_secret = fleet.sops_decrypt("sops/machines/cinnabar/age-key", &fleet.keys_txt());
    let machine_secret = String::from_utf8(machine_secret).unwrap();
    assert!(
        machine_secret.starts_with("AGE-SECRET-KEY-1"),
        "{machine_secret}"
    );
    let machine_keys = fleet.root().join("machine-keys.txt");
    std::fs::write(&machine_keys, &machine_secret).unwrap();
    assert_eq!(fleet.sops_decrypt(secret, &machine_keys), by_admin);

    // The decrypted private key is the one whose public half is stored.
    let key = fleet.root().join("id_ed25519");
    std::fs::write(&key, &by_admin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let derived = std::process::Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&key)
        .output()
        .unwrap();
    let derived = String::from_utf8(derived.stdout).unwrap();
    assert_eq!(
        derived.split_whitespace().take(2).collect::<Vec<_>>(),
        pubkey.split_whitespace().take(2).collect::<Vec<_>>()
    );
}

#[test]
fn second_generate_is_a_noop_and_leaves_every_file_byte_identical() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(json!({ "machines": {
        "cinnabar": machine(json!({
            "ca": { "share": true, "files": { "key": {}, "pub": { "secret": false } },
                    "script": "head -c 32 /dev/urandom > $out/key; echo ca > $out/pub" },
            "host": { "dependencies": ["ca"], "files": { "key": {} },
                      "script": "{ cat $in/ca/key; head -c 32 /dev/urandom; } > $out/key" },
        })),
        "zinc": machine(json!({
            "ca": { "share": true, "files": { "key": {}, "pub": { "secret": false } },
                    "script": "head -c 32 /dev/urandom > $out/key; echo ca > $out/pub" },
        })),
    }}));
    fleet.generate(&[]).ok();
    let before = fleet.tree();
    let out = fleet.generate(&[]).ok();
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "everything is up to date\n");
    assert_same_tree(&before, &fleet.tree());
    // Nor does a run limited to one machine, nor check, nor list.
    fleet.generate(&["--machine", "zinc"]).ok();
    fleet.check(0);
    fleet.run(&["list"]).ok();
    assert_same_tree(&before, &fleet.tree());
    // A no-op decrypts nothing, so it needs no key.
    std::fs::remove_file(fleet.keys_txt()).unwrap();
    let out = fleet.generate(&[]).ok();
    assert_eq!(out.stderr, "everything is up to date\n");
    assert_same_tree(&before, &fleet.tree());
    assert!(
        std::fs::read_dir(fleet.repo.join("sops/.tx")).map_or(true, |mut d| d.next().is_none()),
        "a transaction was left behind"
    );
}

fn chain() -> Value {
    one_machine(
        "m",
        json!({
            "a": public_gen(&["v"], "a"),
            "b": { "dependencies": ["a"], "files": { "v": { "secret": false } },
                   "script": "cat $in/a/v > $out/v; echo b >> $out/v" },
            "c": { "dependencies": ["b"], "files": { "v": { "secret": false } },
                   "script": "cat $in/b/v > $out/v; echo c >> $out/v" },
            "solo": public_gen(&["v"], "solo"),
        }),
    )
}

#[test]
fn generator_flag_forces_it_and_its_dependents_only() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(chain());
    fleet.generate(&[]).ok();
    assert_eq!(fleet.read_string("sops/machines/m/public/c/v"), "a\nb\nc\n");
    let before = fleet.tree();
    let out = fleet.generate(&["--generator", "b"]).ok();
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/b        generated (--generator)\n\
         m/c        generated (dependency m/b runs)\n"
    );
    let changed = changed(&before, &fleet.tree());
    assert_eq!(
        changed,
        ["machines/m/meta/b.json", "machines/m/meta/c.json"]
    );
}

#[test]
fn regenerate_forces_every_generator_of_the_selected_machines() {
    if !require("bwrap") {
        return;
    }
    let mut manifest = chain();
    manifest["machines"]["other"] = machine(json!({ "x": public_gen(&["v"], "x") }));
    let fleet = Fleet::new(manifest);
    fleet.generate(&[]).ok();
    let before = fleet.tree();
    let out = fleet.generate(&["--regenerate", "--machine", "m"]).ok();
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/a        generated (--regenerate)\n\
         m/b        generated (--regenerate)\n\
         m/c        generated (--regenerate)\n\
         m/solo     generated (--regenerate)\n"
    );
    let changed = changed(&before, &fleet.tree());
    assert!(
        changed.iter().all(|p| p.starts_with("machines/m/meta/")),
        "{changed:?}"
    );
    assert_eq!(changed.len(), 4);
}

#[test]
fn a_missing_file_reruns_its_generator_and_dependents() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(chain());
    fleet.generate(&[]).ok();
    std::fs::remove_file(fleet.repo.join("sops/machines/m/public/b/v")).unwrap();
    let out = fleet.generate(&[]).ok();
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/b        generated (missing v)\n\
         m/c        generated (dependency m/b runs)\n"
    );
    assert_eq!(fleet.read_string("sops/machines/m/public/b/v"), "a\nb\n");
}

#[test]
fn a_changed_script_reruns_the_generator_and_its_dependents() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(chain());
    fleet.generate(&[]).ok();
    let mut manifest = chain();
    manifest["machines"]["m"]["generators"]["a"] = public_gen(&["v"], "A");
    fleet.configure(&manifest);
    let out = fleet.generate(&[]).ok();
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/a        generated (outdated: its definition changed)\n\
         m/b        generated (dependency m/a runs)\n\
         m/c        generated (dependency m/b runs)\n"
    );
    assert_eq!(fleet.read_string("sops/machines/m/public/c/v"), "A\nb\nc\n");
}

#[test]
fn machine_flag_limits_the_run() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(json!({ "machines": {
        "a": machine(json!({ "g": public_gen(&["v"], "a") })),
        "b": machine(json!({ "g": public_gen(&["v"], "b") })),
    }}));
    let out = fleet.generate(&["--machine", "b"]).ok();
    assert_eq!(
        out.stdout,
        "generator  result\nb/g        generated (never generated)\n"
    );
    assert!(!fleet.exists("sops/machines/a"));
    assert_eq!(fleet.read_string("sops/machines/b/public/g/v"), "b\n");
}

#[test]
fn unknown_machine_or_generator_is_a_usage_error() {
    let fleet = Fleet::new(chain());
    let out = fleet.generate(&["--machine", "nope"]).code(2);
    assert_eq!(
        out.stderr,
        "error: unknown machine \"nope\": the configuration declares m\n"
    );
    let out = fleet.generate(&["--generator", "nope"]).code(2);
    assert_eq!(
        out.stderr,
        "error: unknown generator \"nope\" on the selected machines\n"
    );
    assert!(!fleet.exists("sops/machines"));
}

#[test]
fn without_an_admin_generate_says_to_run_keygen() {
    let fleet = Fleet::without_admin(chain());
    let out = fleet.generate(&[]).code(1);
    assert_eq!(
        out.stderr,
        "error: no admin keys: sops/users/*/key.json is empty; run `vars keygen` first\n"
    );
    assert!(!fleet.exists("sops/machines"));
}

#[test]
fn generator_flag_pulls_in_missing_dependencies() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(chain());
    let out = fleet.generate(&["--generator", "c"]).ok();
    assert_eq!(
        out.stdout,
        "generator  result\n\
         m/a        generated (never generated)\n\
         m/b        generated (never generated)\n\
         m/c        generated (--generator)\n"
    );
    assert!(!fleet.exists("sops/machines/m/public/solo"));
}

#[test]
fn regenerating_a_shared_node_for_one_machine_reaches_every_machine() {
    if !require("bwrap") {
        return;
    }
    let ca = json!({ "share": true, "files": { "v": { "secret": false } },
                     "script": "head -c 8 /dev/urandom | od -An -tx1 > $out/v" });
    let host = json!({ "dependencies": ["ca"], "files": { "v": { "secret": false } },
                       "script": "cp $in/ca/v $out/v" });
    let fleet = Fleet::new(json!({ "machines": {
        "a": machine(json!({ "ca": ca.clone(), "host": host.clone() })),
        "b": machine(json!({ "ca": ca, "host": host })),
    }}));
    fleet.generate(&[]).ok();
    let out = fleet
        .generate(&["--machine", "b", "--generator", "ca"])
        .ok();
    assert_eq!(
        out.stdout,
        "generator  result\n\
         shared/ca  generated (--generator)\n\
         a/host     generated (dependency shared/ca runs)\n\
         b/host     generated (dependency shared/ca runs)\n"
    );
    let ca = fleet.read("sops/shared/public/ca/v");
    assert_eq!(fleet.read("sops/machines/a/public/host/v"), ca);
    assert_eq!(fleet.read("sops/machines/b/public/host/v"), ca);
}
