//! Locking (issue 7): writers on one repository — `generate`, `set`, `rekey`
//! — are serialised by `sops/.lock`. A second one waits and says who holds
//! the lock; four started at once all succeed, one after the other, and
//! nothing is lost or interleaved.
//!
//! Interleaving is caught from inside: every script of the two concurrent
//! `generate`s (run with `--jobs 1`, so their own process commits nothing while
//! a script runs) hashes the whole store, sleeps, hashes it again and fails when
//! anything changed in between — which only another writer could have done.

mod hardening;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hardening::Repo;
use serde_json::{json, Value};
use vars::graph::NodeId;
use vars::sops::{Format, SopsFile};

/// While `<repo>/watch` exists, fails the script when another writer is at
/// work during it: when `sops/.lock` names another process than the vars
/// running the script, or when a file of the store that this run does not
/// write (anything but paths matching `own`) changes. (A generate commits its
/// own outputs from another thread while its next script runs.)
fn watching(repo: &str, own: &str, body: &str) -> String {
    format!(
        "snap() {{ ( cd '{repo}/sops' && find . -path ./.tx -prune -o -type f ! -name .lock -print \
         | LC_ALL=C sort | grep -Ev '{own}' | xargs -d '\\n' sha256sum | sha256sum ); }}\n\
         holder() {{ tr -d ' \\n' < '{repo}/sops/.lock'; }}\n\
         if [ -e '{repo}/watch' ]; then\n\
         a=$(snap); l1=$(holder)\nsleep 0.3\nb=$(snap); l2=$(holder)\n\
         [ \"$l1\" = \"$PPID\" ] && [ \"$l2\" = \"$PPID\" ] || {{ echo \"the lock names $l1 then $l2, not this vars ($PPID)\" >&2; exit 1; }}\n\
         [ \"$a\" = \"$b\" ] || {{ echo 'the store changed while this script ran' >&2; exit 1; }}\n\
         fi\n{body}\n"
    )
}

/// What `generate --generator X` writes.
const X_OWN: &str = "/(X|Xd)/|/meta/(X|Xd)\\.json$";

const NONCE: &str = "printf -v n '%08x%08x' \"$SRANDOM\" \"$SRANDOM\"";

/// One machine: `S` (the value `set` writes) and its dependent `D`, which
/// copies it; `X` → `Xd` and `Y`, which the concurrent generates force and
/// whose scripts watch the store; `Z`, which no generate touches (only rekey).
fn fleet(repo: &str) -> Value {
    json!({"machines": {"m1": {"class": "nixos", "generators": {
        "S": {"files": {"value": {}}, "script": "printf default > $out/value"},
        "D": {"dependencies": ["S"], "files": {"copy": {}},
              "script": "printf 'from=%s\\n' \"$(cat $in/S/value)\" > $out/copy"},
        "X": {"files": {"k": {}, "pub": {"secret": false}},
              "script": watching(repo, X_OWN, &format!("{NONCE}\necho $n > $out/k\necho $n > $out/pub"))},
        "Xd": {"dependencies": ["X"], "files": {"k": {}},
               "script": watching(repo, X_OWN, "cat $in/X/k > $out/k")},
        "Y": {"files": {"k": {}},
              "script": watching(repo, "/Y/|/meta/Y\\.json$", &format!("{NONCE}\necho $n > $out/k"))},
        "Z": {"files": {"k": {}}, "script": format!("{NONCE}\necho $n > $out/k")},
    }}}})
}

fn get(repo: &Repo, spec: &str) -> String {
    repo.ok(&["get", "m1", spec])
}

/// The recipients `m1/<gen>/<file>` is sealed to.
fn recipients(repo: &Repo, gen: &str, file: &str) -> Vec<String> {
    let path = repo
        .sops()
        .join(format!("machines/m1/secrets/{gen}/{file}"));
    SopsFile::parse(&std::fs::read(path).unwrap(), Format::Binary, file)
        .unwrap()
        .recipients()
}

/// A new admin `name` with a fresh age key; returns its public key.
fn add_admin(repo: &Repo, name: &str) -> String {
    let (id, text) = vars::keys::generate_identity();
    let key = repo.dir.join(format!("{name}.key"));
    std::fs::write(&key, format!("{}\n", text.as_str())).unwrap();
    repo.ok(&[
        "keygen",
        "--user",
        name,
        "--identity",
        key.to_str().unwrap(),
    ]);
    id.to_public().to_string()
}

fn spawn(repo: &Repo, args: &[&str], stdin: &[u8]) -> Child {
    let mut child = repo
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vars");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child
}

/// The lines of `waiting: …` in a stderr, each checked against the exact
/// message; returns how many there were.
fn waits(stderr: &str, pids: &[u32], repo: &Repo) -> usize {
    let canonical = std::fs::canonicalize(&repo.dir).unwrap();
    let mut n = 0;
    for line in stderr.lines().filter(|l| l.starts_with("waiting")) {
        let pid: u32 = line
            .strip_prefix("waiting: another vars process (pid ")
            .and_then(|r| r.split_once(')'))
            .and_then(|(p, _)| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message {line:?}"));
        assert!(pids.contains(&pid), "{line:?} names none of {pids:?}");
        assert_eq!(
            line,
            format!(
                "waiting: another vars process (pid {pid}) holds the lock on {}",
                canonical.display()
            )
        );
        n += 1;
    }
    n
}

#[test]
fn four_writers_at_once_are_serialised_and_lose_nothing() {
    let started = Instant::now();
    let repo = Repo::new(&json!({"machines": {}}));
    let path = repo.dir.to_str().unwrap().to_string();
    repo.write_manifest(&fleet(&path));
    repo.ok(&["generate", "--no-sandbox", "--jobs", "1"]);
    repo.check_clean();
    let (_, graph) = repo.manifest();
    let d = NodeId::per_machine("m1", "D");
    assert_eq!(graph.dependencies(&d), [NodeId::per_machine("m1", "S")]);

    let mut total_waits = 0;
    for round in 0..3 {
        let admin = add_admin(&repo, &format!("admin{round}"));
        let x_before = get(&repo, "X/pub");
        let y_before = get(&repo, "Y/k");
        let value = format!("value-{round}");
        let commands: [(&str, Vec<&str>, &[u8]); 4] = [
            (
                "generate X",
                vec![
                    "generate",
                    "--no-sandbox",
                    "--jobs",
                    "1",
                    "--generator",
                    "X",
                ],
                b"",
            ),
            ("set", vec!["set", "m1", "S/value"], value.as_bytes()),
            ("rekey", vec!["rekey"], b""),
            (
                "generate Y",
                vec![
                    "generate",
                    "--no-sandbox",
                    "--jobs",
                    "1",
                    "--generator",
                    "Y",
                ],
                b"",
            ),
        ];
        // All four at once, in a different order each round, watched.
        std::fs::write(repo.dir.join("watch"), b"").unwrap();
        let mut children: Vec<(&str, Child)> = (0..4)
            .map(|i| {
                let (name, args, stdin) = &commands[(i + round) % 4];
                (*name, spawn(&repo, args, stdin))
            })
            .collect();
        let pids: Vec<u32> = children.iter().map(|(_, c)| c.id()).collect();
        let mut round_waits = 0;
        for (name, child) in children.drain(..) {
            let out = child.wait_with_output().unwrap();
            hardening::assert_sane(&[name], &out);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "round {round}: {name} failed ({}):\n{}\n{stderr}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
            round_waits += waits(&stderr, &pids, &repo);
        }
        total_waits += round_waits;
        std::fs::remove_file(repo.dir.join("watch")).unwrap();

        // Nothing lost: the set value, both regenerations, the rekey.
        assert_eq!(
            get(&repo, "S/value"),
            value,
            "round {round}: the set value is lost"
        );
        assert_ne!(
            get(&repo, "X/pub"),
            x_before,
            "round {round}: X was not regenerated"
        );
        assert_ne!(
            get(&repo, "Y/k"),
            y_before,
            "round {round}: Y was not regenerated"
        );
        assert_eq!(
            get(&repo, "Xd/k"),
            get(&repo, "X/k"),
            "round {round}: Xd is older than X"
        );
        for (gen, file) in [
            ("Z", "k"),
            ("S", "value"),
            ("X", "k"),
            ("Y", "k"),
            ("Xd", "k"),
        ] {
            assert!(
                recipients(&repo, gen, file).contains(&admin),
                "round {round}: {gen}/{file} is not sealed to the new admin"
            );
        }
        // At most D is behind (when set came after both generates); a plain run repairs it.
        let check = repo.run(&["check"]);
        let text = String::from_utf8_lossy(&check.stdout).into_owned();
        for line in text.lines() {
            assert!(
                line.starts_with("m1/D: outdated: "),
                "round {round}: {line}"
            );
        }
        repo.ok(&["generate", "--no-sandbox", "--jobs", "1"]);
        repo.check_clean();
        assert_eq!(get(&repo, "D/copy"), format!("from={value}\n"));
    }
    eprintln!(
        "locking: 3 rounds of 4 concurrent writers, {total_waits} waited for the lock, {:.1?}",
        started.elapsed()
    );
    assert!(
        total_waits >= 3,
        "the writers hardly overlapped: {total_waits} waits"
    );
}

/// The exact message of a writer that has to wait, naming the holder's pid.
#[test]
fn a_second_writer_waits_for_the_holder_and_says_so() {
    let repo = Repo::new(
        &json!({"machines": {"m1": {"class": "nixos", "generators": {
            "slow": {"files": {"k": {}}, "script": "sleep 1.5; echo x > $out/k"},
            "S": {"files": {"value": {}}, "script": "printf default > $out/value"},
        }}}}),
    );
    repo.ok(&["generate", "--no-sandbox"]);
    let holder = spawn(
        &repo,
        &["generate", "--no-sandbox", "--generator", "slow"],
        b"",
    );
    let lock = repo.sops().join(".lock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock).map_or(true, |s| s.trim() != holder.id().to_string()) {
        assert!(
            Instant::now() < deadline,
            "the generate never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = repo.run_with(&["set", "m1", "S/value"], b"v");
    let canonical = std::fs::canonicalize(&repo.dir).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "waiting: another vars process (pid {}) holds the lock on {}\nstored m1 S/value\n",
            holder.id(),
            canonical.display()
        )
    );
    assert!(out.status.success());
    let done = holder.wait_with_output().unwrap();
    assert!(done.status.success());
    assert_eq!(get(&repo, "S/value"), "v");
    repo.check_clean();
}
