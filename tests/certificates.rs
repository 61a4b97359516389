//! Certificate-based SSH: a shared `openssh-ca` signs each machine's host key.

mod engine;

use engine::*;

fn ca() -> Value {
    json!({
        "share": true,
        "files": { "ca": { "secret": true }, "ca.pub": { "secret": false } },
        "script": "ssh-keygen -q -t ed25519 -N '' -C fleet-ca -f $out/ca",
    })
}

fn host(name: &str) -> Value {
    json!({
        "dependencies": ["openssh-ca"],
        "files": {
            "ssh_host_ed25519_key": { "secret": true, "restartUnits": ["sshd.service"] },
            "ssh_host_ed25519_key.pub": { "secret": false },
            "ssh_host_ed25519_key-cert.pub": { "secret": false },
        },
        "script": format!(
            "ssh-keygen -q -t ed25519 -N '' -C {name} -f $out/ssh_host_ed25519_key\n\
             install -m 600 $in/openssh-ca/ca $TMPDIR/ca\n\
             ssh-keygen -q -s $TMPDIR/ca -I {name} -h -n {name} $out/ssh_host_ed25519_key.pub\n"
        ),
    })
}

fn machine_with_ca(name: &str) -> Value {
    machine(json!({
        "openssh-ca": ca(),
        "openssh": host(name),
        "motd": public_gen(&["motd"], name),
    }))
}

fn fleet_of(names: &[&str]) -> Value {
    let machines: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.to_string(), machine_with_ca(n)))
        .collect();
    json!({ "machines": machines })
}

/// `ssh-keygen -l` / `-L` output for a file of the repository.
fn ssh_keygen(fleet: &Fleet, flag: &str, rel: &str) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg(flag)
        .arg("-f")
        .arg(fleet.repo.join(rel))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ca_fingerprint(fleet: &Fleet) -> String {
    let line = ssh_keygen(fleet, "-l", "sops/shared/public/openssh-ca/ca.pub");
    line.split_whitespace().nth(1).unwrap().to_string()
}

const CERT: &str = "public/openssh/ssh_host_ed25519_key-cert.pub";

#[test]
fn host_certificate_is_signed_by_the_shared_ca() {
    if !require("ssh-keygen") || !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(fleet_of(&["cinnabar"]));
    let out = fleet.generate(&["--machine", "cinnabar"]).ok();
    assert_eq!(
        out.stdout,
        "generator          result\n\
         shared/openssh-ca  generated (never generated)\n\
         cinnabar/motd      generated (never generated)\n\
         cinnabar/openssh   generated (never generated)\n"
    );
    let fingerprint = ca_fingerprint(&fleet);
    assert!(fingerprint.starts_with("SHA256:"));
    let cert = ssh_keygen(&fleet, "-L", &format!("sops/machines/cinnabar/{CERT}"));
    assert!(cert.contains("host certificate"), "{cert}");
    assert!(
        cert.contains(&format!(
            "Signing CA: ED25519 {fingerprint} (using ssh-ed25519)"
        )),
        "{cert}"
    );
    assert!(cert.contains("Key ID: \"cinnabar\""), "{cert}");
    // The CA's private key is sealed to the admin and the one declaring machine.
    assert_eq!(
        fleet.recipients("sops/shared/secrets/openssh-ca/ca"),
        [fleet.admin(), fleet.machine_key("cinnabar")].into()
    );
}

#[test]
fn generating_a_second_machine_seals_the_shared_ca_to_both() {
    if !require("ssh-keygen") || !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(fleet_of(&["cinnabar"]));
    fleet.generate(&[]).ok();
    let ca_before = fleet.read("sops/shared/public/openssh-ca/ca.pub");
    let cinnabar_cert = fleet.read(&format!("sops/machines/cinnabar/{CERT}"));

    fleet.configure(&fleet_of(&["cinnabar", "zinc"]));
    let out = fleet.generate(&["--machine", "zinc"]).ok();
    assert_eq!(
        out.stdout,
        "generator     result\n\
         zinc/motd     generated (never generated)\n\
         zinc/openssh  generated (never generated)\n\
         re-sealed shared/openssh-ca/ca\n"
    );
    // Same CA, now sealed to the admin and both machines.
    assert_eq!(
        fleet.read("sops/shared/public/openssh-ca/ca.pub"),
        ca_before
    );
    assert_eq!(
        fleet.recipients("sops/shared/secrets/openssh-ca/ca"),
        [
            fleet.admin(),
            fleet.machine_key("cinnabar"),
            fleet.machine_key("zinc")
        ]
        .into()
    );
    // zinc's certificate comes from the same CA; cinnabar's is untouched.
    let fingerprint = ca_fingerprint(&fleet);
    let cert = ssh_keygen(&fleet, "-L", &format!("sops/machines/zinc/{CERT}"));
    assert!(
        cert.contains(&format!("Signing CA: ED25519 {fingerprint}")),
        "{cert}"
    );
    assert_eq!(
        fleet.read(&format!("sops/machines/cinnabar/{CERT}")),
        cinnabar_cert
    );
    fleet.check(0);
}

#[test]
fn regenerating_the_ca_regenerates_every_host_certificate() {
    if !require("ssh-keygen") || !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(fleet_of(&["cinnabar", "zinc"]));
    fleet.generate(&[]).ok();
    let before = fleet.tree();
    let old_fingerprint = ca_fingerprint(&fleet);

    let out = fleet.generate(&["--generator", "openssh-ca"]).ok();
    assert_eq!(
        out.stdout,
        "generator          result\n\
         shared/openssh-ca  generated (--generator)\n\
         cinnabar/openssh   generated (dependency shared/openssh-ca runs)\n\
         zinc/openssh       generated (dependency shared/openssh-ca runs)\n"
    );
    let after = fleet.tree();
    let new_fingerprint = ca_fingerprint(&fleet);
    assert_ne!(new_fingerprint, old_fingerprint);
    for m in ["cinnabar", "zinc"] {
        let rel = format!("machines/{m}/{CERT}");
        assert_ne!(before[&rel], after[&rel], "{rel} did not change");
        let cert = ssh_keygen(&fleet, "-L", &format!("sops/{rel}"));
        assert!(
            cert.contains(&format!("Signing CA: ED25519 {new_fingerprint}")),
            "{cert}"
        );
    }
    // Exactly the CA and the host keys changed; motd and the keys are byte-identical.
    let mut want = vec![
        "shared/meta/openssh-ca.json".to_string(),
        "shared/public/openssh-ca/ca.pub".to_string(),
        "shared/secrets/openssh-ca/ca".to_string(),
    ];
    for m in ["cinnabar", "zinc"] {
        want.push(format!("machines/{m}/meta/openssh.json"));
        want.push(format!("machines/{m}/{CERT}"));
        want.push(format!(
            "machines/{m}/public/openssh/ssh_host_ed25519_key.pub"
        ));
        want.push(format!("machines/{m}/secrets/openssh/ssh_host_ed25519_key"));
    }
    want.sort();
    assert_eq!(changed(&before, &after), want);
    fleet.check(0);
}

#[test]
fn a_machine_declaring_the_ca_without_deploying_it_is_not_a_recipient() {
    if !require("ssh-keygen") || !require("bwrap") {
        return;
    }
    let mut manifest = fleet_of(&["cinnabar", "zinc"]);
    manifest["machines"]["zinc"]["generators"]["openssh-ca"]["files"]["ca"]["deploy"] =
        json!(false);
    let fleet = Fleet::new(manifest);
    fleet.generate(&[]).ok();
    assert_eq!(
        fleet.recipients("sops/shared/secrets/openssh-ca/ca"),
        [fleet.admin(), fleet.machine_key("cinnabar")].into()
    );
    // zinc still gets a certificate signed by the CA.
    let fingerprint = ca_fingerprint(&fleet);
    let cert = ssh_keygen(&fleet, "-L", &format!("sops/machines/zinc/{CERT}"));
    assert!(
        cert.contains(&format!("Signing CA: ED25519 {fingerprint}")),
        "{cert}"
    );
    fleet.check(0);
}
