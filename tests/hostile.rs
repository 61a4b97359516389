//! Hostile input (issue 7), table-driven: SOPS files, manifests and key.json
//! files that are corrupted, truncated, oversized, deeply nested, duplicated
//! or plain wrong. Every case runs the real binary on a copy of one generated
//! repository and expects
//!
//! * its exact stdout and stderr (`{alice}` and `{m1}` stand for the admin's
//!   and the machine's recipients, which differ on every run),
//! * a non-zero exit status,
//! * the whole `sops/` tree byte-identical before and after (`sops/.lock`,
//!   which only records the pid of the last writer, aside),
//! * no panic, no death by a signal (a stack overflow aborts).
//!
//! A second test flips every byte of a sealed file (one bit each) and checks,
//! through the library, that each flip is refused or, where sops does not
//! authenticate the bytes, decrypts to the very same plaintext.
//!
//! `HOSTILE_PRINT=1 cargo test --test hostile -- --nocapture` prints what each
//! case printed, to write a new case's expectation.

mod hardening;

use std::path::Path;
use std::sync::OnceLock;

use hardening::{assert_sane, snapshot, Repo};
use serde_json::{json, Value};
use vars::sops::{Format, SopsFile};

/// The secret every SOPS case corrupts, relative to the repository.
const SECRET: &str = "sops/machines/m1/secrets/key/secret";
/// A fixed recipient nobody in the tests holds the key of.
const STRANGER: &str = "age1qm0p4vf9jvcnn43s6l4prk8zn6cx0ep9gzvevxecv729xz540v8qa742eg";

fn fleet() -> Value {
    json!({"machines": {"m1": {"class": "nixos", "generators": {
        "key": {"files": {"secret": {}, "pub": {"secret": false}},
                "script": "echo s3cr3t > $out/secret; echo public > $out/pub"},
        "dep": {"dependencies": ["key"], "files": {"out": {}},
                "script": "cat $in/key/secret > $out/out"},
    }}}})
}

/// One generated repository, copied for every case.
struct Template {
    repo: Repo,
    alice: String,
    m1: String,
    /// The recipients of the first and second age stanzas of `SECRET` (their order is the
    /// recipients'), and the first with the bit the recipient case flips.
    first: String,
    second: String,
    flipped: String,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let repo = Repo::new(&fleet());
        repo.remove_at_exit();
        repo.ok(&["generate", "--no-sandbox"]);
        repo.check_clean();
        let key = |p: &str| {
            let v: Value =
                serde_json::from_slice(&std::fs::read(repo.sops().join(p)).unwrap()).unwrap();
            v["publickey"].as_str().unwrap().to_string()
        };
        let alice = key("users/alice/key.json");
        let m1 = key("machines/m1/key.json");
        let sealed: Value =
            serde_json::from_slice(&std::fs::read(repo.dir.join(SECRET)).unwrap()).unwrap();
        let stanza = |i: usize| {
            sealed["sops"]["age"][i]["recipient"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (first, second) = (stanza(0), stanza(1));
        let mut flipped = first.clone().into_bytes();
        flipped[14] ^= 1;
        let flipped = String::from_utf8(flipped).unwrap();
        Template {
            repo,
            alice,
            m1,
            first,
            second,
            flipped,
        }
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

type Mutate = Box<dyn Fn(&Path)>;

struct Case {
    name: String,
    mutate: Mutate,
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

/// A case whose expectation is in [`EXPECTED`].
fn case(name: &str, mutate: impl Fn(&Path) + 'static, args: &[&str]) -> Case {
    let (_, code, stdout, stderr) = EXPECTED
        .iter()
        .find(|e| e.0 == name)
        .unwrap_or_else(|| panic!("no expectation for {name:?}"));
    case_with(name, mutate, args, *code, stdout, stderr)
}

fn case_with(
    name: &str,
    mutate: impl Fn(&Path) + 'static,
    args: &[&str],
    code: i32,
    stdout: &str,
    stderr: &str,
) -> Case {
    Case {
        name: name.into(),
        mutate: Box::new(mutate),
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        stdout: stdout.into(),
        stderr: stderr.into(),
    }
}

// ------------------------------------------------------------------ mutations

fn write(rel: &str, bytes: impl AsRef<[u8]> + 'static) -> impl Fn(&Path) {
    let rel = rel.to_string();
    move |dir: &Path| {
        let path = dir.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes.as_ref()).unwrap();
    }
}

fn edit_bytes(rel: &str, f: impl Fn(&mut Vec<u8>) + 'static) -> impl Fn(&Path) {
    let rel = rel.to_string();
    move |dir: &Path| {
        let path = dir.join(&rel);
        let mut bytes = std::fs::read(&path).unwrap();
        f(&mut bytes);
        std::fs::write(path, bytes).unwrap();
    }
}

/// Flips bit 0 of the byte `skip` bytes after the first occurrence of `anchor`.
fn flip_after(rel: &str, anchor: &'static str, skip: usize) -> impl Fn(&Path) {
    edit_bytes(rel, move |b| {
        let at = find(b, anchor.as_bytes()) + anchor.len() + skip;
        b[at] ^= 1;
    })
}

/// Flips bit 0 of the first decoded byte of the base64 field that follows the
/// first occurrence of `anchor` (up to the next `,`), keeping it valid base64.
fn flip_decoded(rel: &str, anchor: &'static str) -> impl Fn(&Path) {
    use base64::Engine;
    edit_bytes(rel, move |b| {
        let start = find(b, anchor.as_bytes()) + anchor.len();
        let end = start + b[start..].iter().position(|&c| c == b',').unwrap();
        let engine = base64::engine::general_purpose::STANDARD;
        let mut raw = engine.decode(&b[start..end]).unwrap();
        raw[0] ^= 1;
        b.splice(start..end, engine.encode(raw).into_bytes());
    })
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

/// Edits the sealed file as JSON.
fn edit_json(rel: &str, f: impl Fn(&mut Value) + 'static) -> impl Fn(&Path) {
    edit_bytes(rel, move |b| {
        let mut v: Value = serde_json::from_slice(b).unwrap();
        f(&mut v);
        *b = serde_json::to_vec_pretty(&v).unwrap();
    })
}

/// Replaces text in a file (first occurrence).
fn replace(rel: &str, from: &'static str, to: String) -> impl Fn(&Path) {
    edit_bytes(rel, move |b| {
        let text = String::from_utf8(b.clone()).unwrap();
        assert!(text.contains(from), "{from:?} not in the file");
        *b = text.replacen(from, &to, 1).into_bytes();
    })
}

fn manifest(value: Value) -> impl Fn(&Path) {
    let text = serde_json::to_vec(&value).unwrap();
    write("vars.json", text)
}

/// A fleet of `n` generators on one machine, each depending on the one before.
fn chain(n: usize, cycle: bool) -> Value {
    let mut gens = serde_json::Map::new();
    for i in 0..n {
        let deps: Vec<String> = if i > 0 {
            vec![format!("g{:05}", i - 1)]
        } else if cycle {
            vec![format!("g{:05}", n - 1)]
        } else {
            vec![]
        };
        gens.insert(
            format!("g{i:05}"),
            json!({"dependencies": deps, "files": {"f": {"secret": false}}, "script": "echo > $out/f"}),
        );
    }
    json!({"machines": {"m1": {"class": "nixos", "generators": gens}}})
}

/// `n` independent generators on one machine.
fn many(n: usize) -> Value {
    let mut gens = serde_json::Map::new();
    for i in 0..n {
        gens.insert(
            format!("g{i:06}"),
            json!({"files": {"f": {"secret": false}}, "script": "echo > $out/f"}),
        );
    }
    json!({"machines": {"m1": {"class": "nixos", "generators": gens}}})
}

// ------------------------------------------------------------------ the table

/// What each table case prints: (name, exit status, stdout, stderr).
const EXPECTED: &[(&str, i32, &str, &str)] = &[
    (
        "sops: truncated in the metadata",
        1,
        "",
        "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): EOF while parsing a string at line 14 column 22\n",
    ),
    ("sops: empty file", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): EOF while parsing a value at line 1 column 0\n"),
    ("sops: binary garbage", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): expected value at line 1 column 1\n"),
    ("sops: bit flip in the ciphertext", 1, "", "error: MAC mismatch in ./sops/machines/m1/secrets/key/secret: the value at data failed authentication; the file was edited or corrupted\n"),
    ("sops: bit flip in the iv", 1, "", "error: MAC mismatch in ./sops/machines/m1/secrets/key/secret: the value at data failed authentication; the file was edited or corrupted\n"),
    ("sops: bit flip in the tag", 1, "", "error: MAC mismatch in ./sops/machines/m1/secrets/key/secret: the value at data failed authentication; the file was edited or corrupted\n"),
    ("sops: bit flip in the value type", 1, "", "error: ./sops/machines/m1/secrets/key/secret: malformed value at data: unknown type \"rtr\"\n"),
    ("sops: bit flip in the mac", 1, "", "error: MAC mismatch in ./sops/machines/m1/secrets/key/secret: sops.mac failed authentication (mac or lastmodified changed); the file was edited or corrupted\n"),
    ("sops: bit flip in lastmodified", 1, "", "error: MAC mismatch in ./sops/machines/m1/secrets/key/secret: sops.mac failed authentication (mac or lastmodified changed); the file was edited or corrupted\n"),
    ("sops: bit flip in the admin's age stanza", 1, "", "error: ./sops/machines/m1/secrets/key/secret: the data key could not be unwrapped: the data key for {alice}: Header is invalid\n"),
    ("sops: bit flip in both age stanzas", 1, "", "error: ./sops/machines/m1/secrets/key/secret: the data key could not be unwrapped: the data key for {m1}: Header is invalid\n"),
    ("sops: bit flip in the key name \"data\"", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: a binary sops file holds exactly one key, \"data\", beside \"sops\"\n"),
    ("sops: bit flip in a brace", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): expected value at line 1 column 1\n"),
    ("sops: bit flip in the recipient (check)", 1, "m1/key/secret: recipients: not sealed to {first}; still sealed to {flipped} (fix: vars rekey --machine m1)\n", "1 problem\n"),
    ("sops: data is a number", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: \"data\" is not a string\n"),
    ("sops: data is missing", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: a binary sops file holds exactly one key, \"data\", beside \"sops\"\n"),
    ("sops: a second key beside data", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: a binary sops file holds exactly one key, \"data\", beside \"sops\"\n"),
    ("sops: no sops section", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: it has no sops metadata section\n"),
    ("sops: sops section is a list", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: the sops section is not a mapping\n"),
    ("sops: no mac", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: sops.mac is missing\n"),
    ("sops: no lastmodified", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: sops.lastmodified is missing\n"),
    ("sops: no age stanza", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: sops.age lists no recipients\n"),
    ("sops: age is a string", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: sops.age must be a list\n"),
    ("sops: stanza without enc", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: sops.age[0].enc is missing\n"),
    ("sops: mac is a number", 1, "", "error: MAC mismatch in ./sops/machines/m1/secrets/key/secret: malformed value at sops.mac: not an ENC[AES256_GCM,...] value; the file was edited or corrupted\n"),
    ("sops: lastmodified is not a time", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: sops.lastmodified \"yesterday\" is not an RFC 3339 time\n"),
    ("sops: ciphertext without iv", 1, "", "error: ./sops/machines/m1/secrets/key/secret: malformed value at data: missing iv\n"),
    ("sops: duplicate sops section", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): duplicate key \"sops\" at line 3 column 19\n"),
    ("sops: duplicate mac", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): duplicate key \"mac\" at line 15 column 19\n"),
    ("sops: duplicate data", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): duplicate key \"data\" at line 2 column 20\n"),
    ("sops: 16 MiB value", 1, "", "error: ./sops/machines/m1/secrets/key/secret: malformed value at data: iv is 16 bytes, expected 32\n"),
    ("sops: 100 000 nested lists", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): recursion limit exceeded at line 1 column 136\n"),
    ("sops: sealed to someone else", 1, "", "error: no identity matches ./sops/machines/m1/secrets/key/secret: it is encrypted to age1qm0p4vf9jvcnn43s6l4prk8zn6cx0ep9gzvevxecv729xz540v8qa742eg; identities tried: SOPS_AGE_KEY (unset), {dir}/home/.config/sops/age/keys.txt. Pass --identity FILE or set SOPS_AGE_KEY_FILE\n"),
    ("sops: check on a truncated secret", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): EOF while parsing a string at line 2 column 38\n"),
    ("sops: rekey on a truncated secret", 1, "", "error: not a sops file: ./sops/machines/m1/secrets/key/secret: not a sops binary file (JSON envelope): EOF while parsing a string at line 2 column 38\n"),
    ("sops: generate reading a tampered input", 1, "generator  result\nm1/dep     failed: reading input m1/key/secret: MAC mismatch in ./sops/machines/m1/secrets/key/secret: the value at data failed authentication; the file was edited or corrupted\n", "warning: --no-sandbox: scripts run without namespaces (a private tmpfs dir and a clean environment only)\n[1/1] m1/dep FAILED\nerror: 1 generator failed\n"),
    ("sops: metadata is not JSON", 1, "", "error: ./sops/machines/m1/meta/key.json: invalid metadata: EOF while parsing an object at line 1 column 1\n"),
    ("sops: metadata with an unknown field", 1, "", "error: ./sops/machines/m1/meta/key.json: invalid metadata: unknown field `extra`, expected one of `generation`, `definition`, `files`, `inputs` at line 9 column 9\n"),
    ("yaml: duplicate key", 1, "", "error: d.yaml: invalid yaml: duplicate key \"a\"\n"),
    ("yaml: truncated", 1, "", "error: d.yaml: invalid yaml: while parsing a node, did not find expected node content at byte 5 line 2 column 1\n"),
    ("yaml: alias bomb", 1, "", "error: d.yaml: invalid yaml: alias expansion is too large\n"),
    ("yaml: 10 000 nested lists", 1, "", "error: d.yaml: invalid yaml: recursion limit exceeded at byte 258 line 1 column 259\n"),
    ("yaml: duplicated metadata", 1, "", "error: d.yaml: invalid yaml: duplicate key \"mac\"\n"),
    ("json: duplicate key", 1, "", "error: d.json: invalid json: duplicate key \"a\" at line 1 column 12\n"),
    ("json: metadata of the wrong type", 1, "", "error: not a sops file: d.json: the sops section is not a mapping\n"),
    ("dotenv: a line without =", 1, "", "error: d.env: invalid dotenv: line 1: expected KEY=VALUE\n"),
    ("ini: an unclosed section", 1, "", "error: d.ini: invalid ini: line 1: a key before any [section]\n"),
    ("manifest: not JSON", 2, "", "error: ./vars.json: invalid JSON at line 1 column 13: EOF while parsing a value\n"),
    ("manifest: NUL byte in the text", 2, "", "error: ./vars.json: invalid JSON at line 1 column 17: trailing characters\n"),
    ("manifest: not UTF-8", 2, "", "error: ./vars.json: invalid JSON at line 1 column 16: invalid unicode code point\n"),
    ("manifest: a list", 2, "", "error: ./vars.json: expected the top level to be an object, got an array\n"),
    ("manifest: unknown top-level field", 2, "", "error: ./vars.json: unknown field \"extra\", expected one of \"machines\"\n"),
    ("manifest: unknown generator field", 2, "", "error: machines.m1.generators.g: unknown field \"scrpit\", expected one of \"dependencies\", \"files\", \"prompts\", \"runtimeInputs\", \"script\", \"share\", \"validation\"\n"),
    ("manifest: unknown file field", 2, "", "error: machines.m1.generators.g.files.f: unknown field \"secrte\", expected one of \"deploy\", \"group\", \"mode\", \"neededFor\", \"owner\", \"path\", \"restartUnits\", \"secret\"\n"),
    ("manifest: generator named ../x", 2, "", "error: machines.m1.generators.\"../x\": invalid generator name: must not contain \"/\"\n"),
    ("manifest: machine named ..", 2, "", "error: machines.\"..\": invalid machine name: must not be \".\" or \"..\"\n"),
    ("manifest: file named ../x", 2, "", "error: machines.m1.generators.g.files.\"../x\": invalid file name: must not contain \"/\"\n"),
    ("manifest: file named /etc/passwd", 2, "", "error: machines.m1.generators.g.files.\"/etc/passwd\": invalid file name: must not contain \"/\"\n"),
    ("manifest: NUL byte in a generator name", 2, "", "error: machines.m1.generators.\"a\\u0000b\": invalid generator name: must not contain a NUL byte\n"),
    ("manifest: NUL byte in a script", 2, "", "error: machines.m1.generators.g.script: must not contain a NUL byte\n"),
    ("manifest: relative deploy path", 2, "", "error: machines.m1.generators.g.files.f.path: expected an absolute path like \"/etc/ssh/key\", got \"etc/x\"\n"),
    ("manifest: deploy path with ..", 2, "", "error: machines.m1.generators.g.files.f.path: expected a normalized path (no empty, \".\" or \"..\" components, no trailing \"/\"), got \"/run/../etc/shadow\"\n"),
    ("manifest: relative runtime input", 1, "generator  result\nm1/g       failed: generator m1/g: runtime input \"bin\" must be an absolute path without `:` or NUL\n", "warning: --no-sandbox: scripts run without namespaces (a private tmpfs dir and a clean environment only)\n[1/1] m1/g FAILED\nerror: 1 generator failed\n"),
    ("manifest: wrong type", 2, "", "error: machines.m1.generators.g.share: expected a boolean, got a string\n"),
    ("manifest: self-dependency", 2, "", "error: dependency cycle: m1/g -> m1/g\n"),
    ("manifest: unknown dependency", 2, "", "error: machines.m1.generators.g.dependencies[0]: unknown generator \"nope\": the machine declares no generator of that name\n"),
    ("manifest: cycle of two", 2, "", "error: dependency cycle: m1/a -> m1/b -> m1/a\n"),
    ("manifest: 100 000 nested arrays", 2, "", "error: ./vars.json: invalid JSON at line 1 column 128: recursion limit exceeded\n"),
    ("manifest: duplicate key", 2, "", "error: ./vars.json: invalid JSON at line 1 column 27: duplicate key \"machines\"\n"),
    ("key.json: not JSON", 1, "", "error: ./sops/users/alice/key.json: invalid JSON: EOF while parsing an object at line 1 column 1\n"),
    ("key.json: empty list", 1, "", "error: ./sops/users/alice/key.json: the list of keys is empty\n"),
    ("key.json: a number", 1, "", "error: ./sops/users/alice/key.json: expected an object {\"publickey\": ..., \"type\": \"age\"} or a list of them\n"),
    ("key.json: unknown field", 1, "", "error: ./sops/users/alice/key.json: comment: unknown field, expected \"publickey\" and \"type\"\n"),
    ("key.json: not a public key", 1, "", "error: ./sops/users/alice/key.json: publickey: not a valid age public key: \"age1notakey\"\n"),
    ("key.json: unknown type", 1, "", "error: ./sops/users/alice/key.json: type: expected \"age\" or \"ssh\", got \"gpg\"\n"),
    ("key.json: publickey is a number", 1, "", "error: ./sops/users/alice/key.json: [0].publickey: expected a string\n"),
    ("key.json: NUL byte in the key", 1, "", "error: ./sops/users/alice/key.json: publickey: not a valid age public key: \"age1\\0\"\n"),
    ("key.json: an ssh key declared as age", 1, "", "error: ./sops/machines/m1/key.json: publickey: not a valid age public key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n"),
    ("key.json: duplicate publickey", 1, "", "error: ./sops/users/alice/key.json: invalid JSON: duplicate key \"publickey\" at line 1 column 91\n"),
    ("key.json: 1 MiB key", 1, "", "error: ./sops/users/alice/key.json: publickey: not a valid age public key: \"age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq\"… (1048580 bytes)\n"),
    ("key.json: 100 000 nested lists", 1, "", "error: ./sops/machines/m1/key.json: invalid JSON: recursion limit exceeded at line 1 column 128\n"),
    ("key.json: a directory", 1, "", "error: ./sops/machines/m1/key.json: Is a directory (os error 21)\n"),
    ("key.json: bad machine key on rekey", 1, "", "error: ./sops/machines/m1/key.json: the list of keys is empty\n"),
    ("key.json: bad admin key on generate", 1, "", "error: ./sops/users/alice/key.json: the list of keys is empty\n"),
    ("key.json: bad admin key on set", 1, "", "error: ./sops/users/alice/key.json: the list of keys is empty\n"),
];

fn cases() -> Vec<Case> {
    let get = ["get", "m1", "key/secret"];
    let mut c = vec![
        // ---- SOPS files: truncation, garbage, bit flips
        case(
            "sops: truncated in the metadata",
            edit_bytes(SECRET, |b| {
                let at = find(b, b"\"lastmodified\": \"") + 20;
                b.truncate(at);
            }),
            &get,
        ),
        case("sops: empty file", write(SECRET, b""), &get),
        case(
            "sops: binary garbage",
            write(SECRET, vec![0xffu8, 0xfe, 0, 1, 2, 0x80]),
            &get,
        ),
        case(
            "sops: bit flip in the ciphertext",
            flip_decoded(SECRET, "data:"),
            &get,
        ),
        case(
            "sops: bit flip in the iv",
            flip_decoded(SECRET, ",iv:"),
            &get,
        ),
        case(
            "sops: bit flip in the tag",
            flip_decoded(SECRET, ",tag:"),
            &get,
        ),
        case(
            "sops: bit flip in the value type",
            flip_after(SECRET, ",type:", 0),
            &get,
        ),
        case(
            "sops: bit flip in the mac",
            flip_decoded(SECRET, "\"mac\": \"ENC[AES256_GCM,data:"),
            &get,
        ),
        case(
            "sops: bit flip in lastmodified",
            flip_after(SECRET, "\"lastmodified\": \"", 3),
            &get,
        ),
        case(
            "sops: bit flip in the admin's age stanza",
            |dir: &Path| {
                let alice = template().alice.clone();
                edit_bytes(SECRET, move |b| {
                    let at = find(b, alice.as_bytes());
                    // In the armor's first line, which encodes the fixed "age-encryption.org/v1".
                    let at = at + find(&b[at..], b"-----BEGIN AGE ENCRYPTED FILE-----\\n") + 36 + 5;
                    b[at] ^= 1;
                })(dir)
            },
            &get,
        ),
        case(
            "sops: bit flip in both age stanzas",
            edit_bytes(SECRET, |b| {
                let marker = b"-----BEGIN AGE ENCRYPTED FILE-----\\n";
                let first = find(b, marker) + marker.len() + 5;
                b[first] ^= 1;
                let second = first + find(&b[first..], marker) + marker.len() + 5;
                b[second] ^= 1;
            }),
            &get,
        ),
        case(
            "sops: bit flip in the key name \"data\"",
            flip_after(SECRET, "\"dat", 0),
            &get,
        ),
        case(
            "sops: bit flip in a brace",
            edit_bytes(SECRET, |b| b[0] ^= 1),
            &get,
        ),
        case(
            "sops: bit flip in the recipient (check)",
            flip_after(SECRET, "\"recipient\": \"age1", 10),
            &["check"],
        ),
        // ---- SOPS files: wrong types, missing and duplicated metadata, duplicate keys, huge values
        case(
            "sops: data is a number",
            edit_json(SECRET, |v| v["data"] = json!(7)),
            &get,
        ),
        case(
            "sops: data is missing",
            edit_json(SECRET, |v| {
                v.as_object_mut().unwrap().shift_remove("data");
            }),
            &get,
        ),
        case(
            "sops: a second key beside data",
            edit_json(SECRET, |v| v["extra"] = json!("x")),
            &get,
        ),
        case(
            "sops: no sops section",
            edit_json(SECRET, |v| {
                v.as_object_mut().unwrap().shift_remove("sops");
            }),
            &get,
        ),
        case(
            "sops: sops section is a list",
            edit_json(SECRET, |v| v["sops"] = json!([])),
            &get,
        ),
        case(
            "sops: no mac",
            edit_json(SECRET, |v| {
                v["sops"].as_object_mut().unwrap().shift_remove("mac");
            }),
            &get,
        ),
        case(
            "sops: no lastmodified",
            edit_json(SECRET, |v| {
                v["sops"]
                    .as_object_mut()
                    .unwrap()
                    .shift_remove("lastmodified");
            }),
            &get,
        ),
        case(
            "sops: no age stanza",
            edit_json(SECRET, |v| v["sops"]["age"] = json!([])),
            &get,
        ),
        case(
            "sops: age is a string",
            edit_json(SECRET, |v| v["sops"]["age"] = json!("age1")),
            &get,
        ),
        case(
            "sops: stanza without enc",
            edit_json(SECRET, |v| {
                for s in v["sops"]["age"].as_array_mut().unwrap() {
                    s.as_object_mut().unwrap().shift_remove("enc");
                }
            }),
            &get,
        ),
        case(
            "sops: mac is a number",
            edit_json(SECRET, |v| v["sops"]["mac"] = json!(1)),
            &get,
        ),
        case(
            "sops: lastmodified is not a time",
            edit_json(SECRET, |v| v["sops"]["lastmodified"] = json!("yesterday")),
            &get,
        ),
        case(
            "sops: ciphertext without iv",
            edit_json(SECRET, |v| {
                v["data"] = json!("ENC[AES256_GCM,data:AAAA,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]")
            }),
            &get,
        ),
        case(
            "sops: duplicate sops section",
            replace(SECRET, "\"sops\": {", "\"sops\": {}, \"sops\": {".into()),
            &get,
        ),
        case(
            "sops: duplicate mac",
            replace(SECRET, "\"mac\": ", "\"mac\": \"x\", \"mac\": ".into()),
            &get,
        ),
        case(
            "sops: duplicate data",
            replace(SECRET, "\"data\": ", "\"data\": \"x\", \"data\": ".into()),
            &get,
        ),
        case(
            "sops: 16 MiB value",
            edit_json(SECRET, |v| {
                v["data"] = json!(format!("ENC[AES256_GCM,data:{},iv:AAAAAAAAAAAAAAAAAAAAAA==,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]", "A".repeat(16 << 20)))
            }),
            &get,
        ),
        case(
            "sops: 100 000 nested lists",
            write(
                SECRET,
                format!(
                    "{{\"data\": {}{}}}",
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                ),
            ),
            &get,
        ),
        case(
            "sops: sealed to someone else",
            |dir: &Path| {
                let other: vars::keys::Recipient = STRANGER.parse().unwrap();
                let sealed = vars::sops::encrypt_binary(b"x", &[other]).unwrap();
                std::fs::write(dir.join(SECRET), sealed).unwrap();
            },
            &get,
        ),
        case(
            "sops: check on a truncated secret",
            edit_bytes(SECRET, |b| b.truncate(40)),
            &["check"],
        ),
        case(
            "sops: rekey on a truncated secret",
            edit_bytes(SECRET, |b| b.truncate(40)),
            &["rekey"],
        ),
        case(
            "sops: generate reading a tampered input",
            flip_decoded(SECRET, "data:"),
            &["generate", "--no-sandbox", "--generator", "dep"],
        ),
        case(
            "sops: metadata is not JSON",
            write("sops/machines/m1/meta/key.json", b"{"),
            &["check"],
        ),
        case(
            "sops: metadata with an unknown field",
            edit_json("sops/machines/m1/meta/key.json", |v| v["extra"] = json!(1)),
            &["check"],
        ),
    ];
    // ---- SOPS documents in the other stores, through `vars sops decrypt`
    let sops_decrypt = |file: &'static str, text: &'static str, name: &str| {
        case(name, write(file, text), &["sops", "decrypt", file])
    };
    c.push(sops_decrypt(
        "d.yaml",
        "a: 1\na: 2\n",
        "yaml: duplicate key",
    ));
    c.push(sops_decrypt("d.yaml", "a: [\n", "yaml: truncated"));
    c.push(sops_decrypt(
        "d.yaml",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
        "yaml: alias bomb",
    ));
    c.push(case(
        "yaml: 10 000 nested lists",
        write(
            "d.yaml",
            format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000)),
        ),
        &["sops", "decrypt", "d.yaml"],
    ));
    c.push(sops_decrypt(
        "d.yaml",
        "a: 1\nsops:\n    mac: x\n    mac: y\n",
        "yaml: duplicated metadata",
    ));
    c.push(sops_decrypt(
        "d.json",
        "{\"a\": 1, \"a\": 2}",
        "json: duplicate key",
    ));
    c.push(sops_decrypt(
        "d.json",
        "{\"a\": 1, \"sops\": 7}",
        "json: metadata of the wrong type",
    ));
    c.push(sops_decrypt(
        "d.env",
        "just text\n",
        "dotenv: a line without =",
    ));
    c.push(sops_decrypt(
        "d.ini",
        "[s\na=1\n",
        "ini: an unclosed section",
    ));

    // ---- manifests
    let m = |name: &str, value: Value| case(name, manifest(value), &["check"]);
    let gen = |g: Value| json!({"machines": {"m1": {"class": "nixos", "generators": {"g": g}}}});
    c.extend([
        case(
            "manifest: not JSON",
            write("vars.json", "{\"machines\": "),
            &["check"],
        ),
        case(
            "manifest: NUL byte in the text",
            write("vars.json", b"{\"machines\": {}}\0"),
            &["check"],
        ),
        case(
            "manifest: not UTF-8",
            write("vars.json", b"{\"machines\": {\"\xff\": {}}}"),
            &["check"],
        ),
        m("manifest: a list", json!([])),
        m(
            "manifest: unknown top-level field",
            json!({"machines": {}, "extra": 1}),
        ),
        m(
            "manifest: unknown generator field",
            gen(json!({"scrpit": "x"})),
        ),
        m(
            "manifest: unknown file field",
            gen(json!({"files": {"f": {"secrte": true}}})),
        ),
        m(
            "manifest: generator named ../x",
            json!({"machines": {"m1": {"class": "nixos", "generators": {"../x": {}}}}}),
        ),
        m(
            "manifest: machine named ..",
            json!({"machines": {"..": {"class": "nixos"}}}),
        ),
        m(
            "manifest: file named ../x",
            gen(json!({"files": {"../x": {}}})),
        ),
        m(
            "manifest: file named /etc/passwd",
            gen(json!({"files": {"/etc/passwd": {}}})),
        ),
        m(
            "manifest: NUL byte in a generator name",
            json!({"machines": {"m1": {"class": "nixos", "generators": {"a\u{0}b": {}}}}}),
        ),
        m(
            "manifest: NUL byte in a script",
            gen(json!({"script": "echo\u{0}"})),
        ),
        m(
            "manifest: relative deploy path",
            gen(json!({"files": {"f": {"path": "etc/x"}}})),
        ),
        m(
            "manifest: deploy path with ..",
            gen(json!({"files": {"f": {"path": "/run/../etc/shadow"}}})),
        ),
        case(
            "manifest: relative runtime input",
            manifest(gen(json!({"runtimeInputs": ["bin"], "files": {"f": {}}}))),
            &["generate", "--no-sandbox", "--generator", "g"],
        ),
        m("manifest: wrong type", gen(json!({"share": "yes"}))),
        m(
            "manifest: self-dependency",
            gen(json!({"dependencies": ["g"]})),
        ),
        m(
            "manifest: unknown dependency",
            gen(json!({"dependencies": ["nope"]})),
        ),
        m(
            "manifest: cycle of two",
            json!({"machines": {"m1": {"class": "nixos", "generators": {
            "a": {"dependencies": ["b"]}, "b": {"dependencies": ["a"]}}}}}),
        ),
        case(
            "manifest: 100 000 nested arrays",
            write(
                "vars.json",
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            ),
            &["check"],
        ),
        // serde_json cannot build a duplicate key: written as text.
        case(
            "manifest: duplicate key",
            write("vars.json", "{\"machines\": {}, \"machines\": {}}"),
            &["check"],
        ),
    ]);

    // ---- key.json files
    let admin = "sops/users/alice/key.json";
    let machine = "sops/machines/m1/key.json";
    let k = |name: &str, rel: &'static str, text: &'static str| {
        case(name, write(rel, text), &["check"])
    };
    c.extend([
        k("key.json: not JSON", admin, "{"),
        k("key.json: empty list", admin, "[]"),
        k("key.json: a number", admin, "7"),
        k("key.json: unknown field", admin, r#"{"publickey": "age1x", "type": "age", "comment": "x"}"#),
        k("key.json: not a public key", admin, r#"{"publickey": "age1notakey", "type": "age"}"#),
        k("key.json: unknown type", admin, r#"{"publickey": "age1notakey", "type": "gpg"}"#),
        k("key.json: publickey is a number", admin, r#"[{"publickey": 1}]"#),
        k("key.json: NUL byte in the key", admin, "{\"publickey\": \"age1\\u0000\", \"type\": \"age\"}"),
        k("key.json: an ssh key declared as age", machine, r#"{"publickey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "type": "age"}"#),
        k("key.json: duplicate publickey", admin, r#"{"publickey": "age1qm0p4vf9jvcnn43s6l4prk8zn6cx0ep9gzvevxecv729xz540v8qa742eg", "publickey": "age1notakey"}"#),
        case("key.json: 1 MiB key", write(admin, format!("{{\"publickey\": \"age1{}\", \"type\": \"age\"}}", "q".repeat(1 << 20))), &["check"]),
        case("key.json: 100 000 nested lists", write(machine, format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))), &["check"]),
        case("key.json: a directory", move |dir: &Path| {
            let p = dir.join(machine);
            std::fs::remove_file(&p).unwrap();
            std::fs::create_dir(&p).unwrap();
        }, &["check"]),
        case("key.json: bad machine key on rekey", write(machine, "[]"), &["rekey"]),
        case("key.json: bad admin key on generate", write(admin, "[]"), &["generate", "--no-sandbox", "--regenerate"]),
        case("key.json: bad admin key on set", write(admin, "[]"), &["set", "m1", "key/secret"]),
    ]);
    c
}

/// `vars check`'s report on a never-generated store of `names` (whose old
/// generators `key` and `dep` are orphans).
fn all_missing(names: impl Iterator<Item = String>) -> (String, String) {
    let mut out = String::new();
    let mut n = 0;
    for g in names {
        out.push_str(&format!(
            "m1/{g}: missing: never generated (fix: vars generate --machine m1 --generator {g})\n"
        ));
        n += 1;
    }
    for g in ["dep", "key"] {
        out.push_str(&format!(
            "m1/{g}: orphan: stored but no longer declared (fix: vars prune --machine m1)\n"
        ));
    }
    (out, format!("{} problems\n", n + 2))
}

/// Deep and large manifests, whose expectations are built rather than written.
fn big_cases() -> Vec<Case> {
    let cycle: Vec<String> = std::iter::once("m1/g00000".to_string())
        .chain((0..10_000).rev().map(|i| format!("m1/g{i:05}")))
        .collect();
    let (chain_out, chain_err) = all_missing((0..10_000).map(|i| format!("g{i:05}")));
    let (many_out, many_err) = all_missing((0..100_000).map(|i| format!("g{i:06}")));
    vec![
        case_with(
            "manifest: a chain of 10 000 dependencies closed into a cycle",
            manifest(chain(10_000, true)),
            &["check"],
            2,
            "",
            &format!("error: dependency cycle: {}\n", cycle.join(" -> ")),
        ),
        case_with("manifest: a chain of 10 000 dependencies", manifest(chain(10_000, false)), &["check"], 1, &chain_out, &chain_err),
        case_with("manifest: 100 000 generators", manifest(many(100_000)), &["check"], 1, &many_out, &many_err),
        case_with("manifest: 100 000 generators, one name invalid", |dir: &Path| {
            let mut v = many(100_000);
            v["machines"]["m1"]["generators"]["../x"] = json!({});
            std::fs::write(dir.join("vars.json"), serde_json::to_vec(&v).unwrap()).unwrap();
        }, &["check"], 2, "", "error: machines.m1.generators.\"../x\": invalid generator name: must not contain \"/\"\n"),
    ]
}

fn substitute(text: &str, t: &Template, dir: &Path) -> String {
    text.replace("{alice}", &t.alice)
        .replace("{m1}", &t.m1)
        .replace("{first}", &t.first)
        .replace("{second}", &t.second)
        .replace("{flipped}", &t.flipped)
        .replace("{dir}", dir.to_str().unwrap())
}

fn run_case(t: &Template, case: &Case, print: bool) -> Option<String> {
    let tmp = tempfile::Builder::new()
        .prefix("vars-hostile-")
        .tempdir()
        .unwrap();
    copy_tree(&t.repo.dir, tmp.path());
    (case.mutate)(tmp.path());
    let before = snapshot(&tmp.path().join("sops"), &[".lock"]);
    let mut cmd = t.repo.cmd(&[]);
    cmd.args(&case.args)
        .current_dir(tmp.path())
        .env("HOME", tmp.path().join("home"))
        .env("XDG_CONFIG_HOME", tmp.path().join("home/.config"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().unwrap();
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    assert_sane(&args, &out);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if print {
        let generic = |text: &str| {
            text.replace(&t.alice, "{alice}")
                .replace(&t.m1, "{m1}")
                .replace(tmp.path().to_str().unwrap(), "{dir}")
        };
        println!(
            "=== {}\n{}",
            case.name,
            serde_json::to_string(&json!([
                out.status.code(),
                generic(&clip(&stdout)),
                generic(&clip(&stderr))
            ]))
            .unwrap()
        );
    }
    let after = snapshot(&tmp.path().join("sops"), &[".lock"]);
    let mut problems = Vec::new();
    if after != before {
        let changed: Vec<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        problems.push(format!("the sops/ tree changed: {changed:?}"));
    }
    if out.status.code() != Some(case.code) || case.code == 0 {
        problems.push(format!(
            "exit {:?}, expected {}",
            out.status.code(),
            case.code
        ));
    }
    if stdout != substitute(&case.stdout, t, tmp.path()) {
        problems.push(format!("stdout:\n{}", clip(&stdout)));
    }
    if stderr != substitute(&case.stderr, t, tmp.path()) {
        problems.push(format!("stderr:\n{}", clip(&stderr)));
    }
    (!problems.is_empty()).then(|| format!("{}: {}", case.name, problems.join("\n")))
}

fn clip(s: &str) -> String {
    if s.len() > 2000 {
        let cut = (0..=2000)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…[{} bytes]", &s[..cut], s.len())
    } else {
        s.to_string()
    }
}

fn run_all(cases: Vec<Case>) -> usize {
    let t = template();
    let print = std::env::var_os("HOSTILE_PRINT").is_some();
    let n = cases.len();
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(t, c, print)).collect();
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    n
}

#[test]
fn hostile_inputs_are_refused_exactly_and_change_nothing() {
    let n = run_all(cases());
    eprintln!("hostile: {n} table cases");
    assert!(n >= 40);
}

#[test]
fn huge_and_deep_manifests_are_refused_exactly() {
    let n = run_all(big_cases());
    eprintln!("hostile: {n} large cases");
}

/// Planning a chain of 10 000 generators is linear, not quadratic (it took
/// over a minute in a debug build when each node's ancestors were walked
/// separately).
#[test]
fn a_chain_of_10_000_is_planned_quickly() {
    let t = template();
    let tmp = tempfile::Builder::new()
        .prefix("vars-hostile-")
        .tempdir()
        .unwrap();
    copy_tree(&t.repo.dir, tmp.path());
    manifest(chain(10_000, false))(tmp.path());
    let started = std::time::Instant::now();
    let out = t
        .repo
        .cmd(&["generate", "--dry-run"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_sane(&["generate", "--dry-run"], &out);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 10_000);
    assert_eq!(text.lines().next(), Some("m1/g00000: never generated"));
    assert_eq!(text.lines().nth(1), Some("m1/g00001: never generated"));
    assert!(
        started.elapsed().as_secs() < 20,
        "planning took {:?}",
        started.elapsed()
    );
}

/// Every byte of a sealed file flipped (bit `i % 8` of byte `i`): parse and
/// decrypt, through the library, either refuse or give the same plaintext,
/// and the second only where sops authenticates nothing: JSON whitespace
/// turned into other whitespace, the recipient names, the version, and the
/// stanza of the other recipient (the machine's: the admin never opens it).
#[test]
fn a_bit_flip_anywhere_is_refused_or_harmless() {
    let t = template();
    let sealed = std::fs::read(t.repo.dir.join(SECRET)).unwrap();
    let ids = t.repo.ids();
    let plain = SopsFile::parse(&sealed, Format::Binary, "f")
        .unwrap()
        .decrypt_binary(&ids)
        .unwrap()
        .to_vec();
    let text = String::from_utf8(sealed.clone()).unwrap();
    // The byte range of the machine's stanza (its "enc" line).
    let m1_at = text.find(&t.m1).unwrap();
    let enc_start = m1_at + text[m1_at..].find("\"enc\"").unwrap();
    let enc_end = enc_start + text[enc_start..].find('\n').unwrap();
    let mut refused = 0;
    let mut harmless = 0;
    for i in 0..sealed.len() {
        let mut bytes = sealed.clone();
        bytes[i] ^= 1 << (i % 8);
        let result =
            SopsFile::parse(&bytes, Format::Binary, "f").and_then(|s| s.decrypt_binary(&ids));
        let Ok(p) = result else {
            refused += 1;
            continue;
        };
        assert_eq!(p.to_vec(), plain, "flipping byte {i} changed the plaintext");
        harmless += 1;
        let line_start = text[..i].rfind('\n').map_or(0, |p| p + 1);
        let line = text[line_start..].lines().next().unwrap_or("");
        let whitespace = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        // The MAC covers lastmodified as an instant: its date/time separator (any byte for
        // RFC 3339 as the time crate reads it) and the case of `Z` are not part of it.
        let separator = text.find("\"lastmodified\": \"").unwrap() + 17 + 10;
        let same_time = i == separator
            || (sealed[i] == b'Z' && bytes[i] == b'z' && line.contains("\"lastmodified\""));
        let unauthenticated = (whitespace(sealed[i]) && whitespace(bytes[i]))
            || same_time
            || line.contains("\"recipient\"")
            || line.contains("\"version\"")
            || (enc_start..enc_end).contains(&i);
        assert!(
            unauthenticated,
            "flipping byte {i} ({:?} to {:?}) in {line:?} was accepted",
            sealed[i] as char, bytes[i] as char
        );
    }
    eprintln!(
        "hostile: {} single-bit flips of a sealed file: {refused} refused, {harmless} accepted \
         with the same plaintext (whitespace, recipient names, version, the machine's stanza)",
        sealed.len()
    );
    assert!(refused > sealed.len() / 2);
}
