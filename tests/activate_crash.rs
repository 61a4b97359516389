//! Crash safety of `vars activate`: killed with SIGKILL at random moments,
//! the secrets link always points at a complete generation. Runs in a
//! private mount namespace (see `common_activate`); needs root.

mod common_activate;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common_activate::*;
use rand::Rng;
use serde_json::json;

const FILES: usize = 150;

fn content(version: &str, i: usize) -> Vec<u8> {
    format!("{version}:{i}:{}", "x".repeat(i * 7 % 300)).into_bytes()
}

/// A fleet whose every secret carries `version` in its content.
fn fleet(root: &Path, version: &str) -> Fleet {
    let mut f = Fleet::new(&root.join(version), "cinnabar");
    for i in 0..FILES {
        let mode = ["0400", "0440", "0600"][i % 3];
        f.file(
            &format!("g{:03}", i / 10),
            &format!("f{i}"),
            json!({"mode": mode}),
            &content(version, i),
        );
    }
    f.commit();
    f
}

/// The link points at a numbered generation holding exactly the declared
/// files, all of one version, with their modes. Returns that version.
fn assert_complete(secrets: &Path) -> Option<String> {
    let Ok(target) = std::fs::read_link(secrets) else {
        return None; // never installed yet
    };
    let n: u64 = target
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .expect("a numbered generation");
    let dir = dotd(secrets).join(n.to_string());
    let mut found = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        found.insert(e.file_name().into_string().unwrap(), e.path());
    }
    assert_eq!(found.len(), FILES, "generation {n} holds every file");
    let mut version = None;
    for i in 0..FILES {
        let name = format!("g{:03}.f{i}", i / 10);
        let path = found
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing from generation {n}"));
        let bytes = std::fs::read(path).unwrap();
        let v = String::from_utf8_lossy(&bytes)
            .split(':')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(bytes, content(&v, i), "{name} is complete");
        let mode = path.metadata().unwrap().mode() & 0o7777;
        assert_eq!(mode, [0o400, 0o440, 0o600][i % 3], "{name} mode");
        match &version {
            None => version = Some(v),
            Some(seen) => assert_eq!(seen, &v, "generation {n} mixes versions"),
        }
    }
    assert!(dotd(secrets).join(format!("{n}.json")).is_file());
    version
}

fn command(f: &Fleet, other: &Fleet, secrets: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("vars"));
    cmd.args(["activate", "--machine", "cinnabar", "--config"])
        .arg(f.config())
        .arg("--store")
        .arg(&f.repo)
        .arg("--identity")
        .arg(&f.machine_key)
        .arg("--identity")
        .arg(&other.machine_key)
        .arg("--secrets-dir")
        .arg(secrets)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn staging(secrets: &Path) -> bool {
    std::fs::read_dir(dotd(secrets)).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".new-")))
    })
}

/// Spins until `ready` holds or the child exits; true when `ready` held.
fn wait_for(child: &mut std::process::Child, ready: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::hint::spin_loop();
    }
    panic!("activate neither finished nor got there in 60 s");
}

#[test]
fn killed_at_random_moments_the_link_always_points_at_a_complete_generation() {
    in_namespace(|root| {
        let a = fleet(root, "A");
        let b = fleet(root, "B");
        let secrets = root.join("run/secrets");
        assert!(command(&a, &b, &secrets).status().unwrap().success());
        assert_eq!(assert_complete(&secrets).as_deref(), Some("A"));

        // Calibrate: how long a whole run takes, and how long it spends
        // writing (from its staging directory appearing to the link swap).
        let (mut runs, mut writes) = (Vec::new(), Vec::new());
        for (f, other) in [(&b, &a), (&a, &b), (&b, &a)] {
            let before = linked_generation(&secrets);
            let start = Instant::now();
            let mut child = command(f, other, &secrets).spawn().unwrap();
            let caught = wait_for(&mut child, || staging(&secrets));
            let writing = Instant::now();
            wait_for(&mut child, || linked_generation(&secrets) != before);
            if caught {
                writes.push(writing.elapsed());
            }
            assert!(child.wait().unwrap().success());
            runs.push(start.elapsed());
        }
        runs.sort();
        writes.sort();
        let run_us = runs[1].as_micros() as u64;
        let write_us = writes
            .get(writes.len() / 2)
            .map_or(2000, |w| w.as_micros() as u64)
            .max(200);

        let mut rng = rand::thread_rng();
        let (mut anywhere, mut anywhere_killed) = (0, 0);
        let (mut writing, mut writing_killed) = (0, 0);
        for round in 0..48 {
            let (f, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let mut child = command(f, other, &secrets).spawn().unwrap();
            if round % 3 == 0 {
                // Anywhere in the run: decrypting, writing, swapping, pruning.
                anywhere += 1;
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..=run_us * 11 / 10)));
            } else {
                // While the new generation is being written or linked.
                writing += 1;
                wait_for(&mut child, || staging(&secrets));
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..=write_us * 3 / 2)));
            }
            let _ = child.kill(); // SIGKILL
            let killed = !child.wait().unwrap().success();
            match round % 3 {
                0 => anywhere_killed += usize::from(killed),
                _ => writing_killed += usize::from(killed),
            }
            assert_complete(&secrets);
        }
        eprintln!(
            "killed {anywhere_killed} of {anywhere} runs at random moments and {writing_killed} of {writing} while writing (a run takes {:?}, writing {:?})",
            Duration::from_micros(run_us),
            Duration::from_micros(write_us)
        );
        assert!(anywhere_killed >= 2, "too few runs were interrupted");
        assert!(
            writing_killed >= writing / 4,
            "too few runs were interrupted while writing"
        );

        // A run after all that completes and leaves nothing behind.
        assert!(command(&b, &a, &secrets).status().unwrap().success());
        assert_eq!(assert_complete(&secrets).as_deref(), Some("B"));
        let n = linked_generation(&secrets).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dotd(&secrets))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [n.to_string(), format!("{n}.json")]);
    });
}
