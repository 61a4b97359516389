//! `vars get`, `vars set`, `vars list`.

mod engine;

use engine::*;

fn manifest() -> Value {
    json!({ "machines": {
        "cinnabar": machine(json!({
            "api": {
                "files": { "token": {}, "url": { "secret": false } },
                "script": "printf 'tok\\0en\\n' > $out/token; echo https://api.example > $out/url",
            },
            "client": {
                "dependencies": ["api"],
                "files": { "conf": { "secret": false } },
                "script": "{ echo \"url=$(cat $in/api/url)\"; echo \"token-bytes=$(wc -c < $in/api/token)\"; } > $out/conf",
            },
            "ca": { "share": true, "files": { "k": {}, "k.pub": { "secret": false } },
                    "script": "echo secret-ca > $out/k; echo public-ca > $out/k.pub" },
        })),
        "zinc": machine(json!({
            "ca": { "share": true, "files": { "k": {}, "k.pub": { "secret": false } },
                    "script": "echo secret-ca > $out/k; echo public-ca > $out/k.pub" },
        })),
    }})
}

fn generated() -> Fleet {
    let fleet = Fleet::new(manifest());
    fleet.generate(&[]).ok();
    fleet
}

#[test]
fn get_prints_raw_bytes() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let out = fleet.run(&["get", "cinnabar", "api/token"]).ok();
    assert_eq!(out.stdout, "tok\0en\n");
    assert_eq!(out.stderr, "");
    assert_eq!(
        fleet.run(&["get", "cinnabar", "api/url"]).ok().stdout,
        "https://api.example\n"
    );
    // Shared values through any declaring machine.
    assert_eq!(
        fleet.run(&["get", "zinc", "ca/k"]).ok().stdout,
        "secret-ca\n"
    );
    assert_eq!(
        fleet.run(&["get", "cinnabar", "ca/k.pub"]).ok().stdout,
        "public-ca\n"
    );
}

#[test]
fn get_errors_name_what_was_asked() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(manifest());
    let out = fleet.run(&["get", "cinnabar", "api/token"]).code(1);
    assert_eq!(
        out.stderr,
        "error: cinnabar/api/token is not in the store; run `vars generate --machine cinnabar`\n"
    );
    let out = fleet.run(&["get", "cinnabar", "api/nope"]).code(1);
    assert_eq!(
        out.stderr,
        "error: generator api of cinnabar declares no file \"nope\"\n"
    );
    let out = fleet.run(&["get", "zinc", "api/token"]).code(1);
    assert_eq!(out.stderr, "error: machine zinc has no generator \"api\"\n");
    let out = fleet.run(&["get", "mars", "api/token"]).code(1);
    assert_eq!(out.stderr, "error: unknown machine \"mars\"\n");
    let out = fleet.run(&["get", "cinnabar", "token"]).code(1);
    assert_eq!(
        out.stderr,
        "error: expected GENERATOR/FILE, got \"token\"\n"
    );
    // Without the admin key, a secret cannot be read.
    fleet.generate(&[]).ok();
    std::fs::remove_file(fleet.keys_txt()).unwrap();
    let out = fleet.run(&["get", "cinnabar", "api/token"]).code(1);
    assert_eq!(out.stdout, "");
    let sealed_to: Vec<String> = fleet
        .recipients("sops/machines/cinnabar/secrets/api/token")
        .into_iter()
        .collect();
    assert_eq!(
        out.stderr,
        format!(
            "error: no identity matches ./sops/machines/cinnabar/secrets/api/token: \
             it is encrypted to {}; identities tried: SOPS_AGE_KEY (unset), {} (not found). \
             Pass --identity FILE or set SOPS_AGE_KEY_FILE\n",
            sealed_to.join(", "),
            fleet.keys_txt().display()
        )
    );
    // Public values need no key.
    fleet.run(&["get", "cinnabar", "api/url"]).ok();
}

#[test]
fn set_seals_stdin_and_makes_dependents_outdated() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    let before = fleet.tree();
    let out = fleet
        .run_stdin(&["set", "cinnabar", "api/token"], b"new\xfftoken")
        .ok();
    assert_eq!(out.stderr, "stored cinnabar api/token\n");
    assert_eq!(
        changed(&before, &fleet.tree()),
        [
            "machines/cinnabar/meta/api.json",
            "machines/cinnabar/secrets/api/token"
        ]
    );
    let sealed = fleet.read("sops/machines/cinnabar/secrets/api/token");
    assert!(!sealed.windows(5).any(|w| w == b"token"));
    assert_eq!(
        fleet.recipients("sops/machines/cinnabar/secrets/api/token"),
        [fleet.admin(), fleet.machine_key("cinnabar")].into()
    );
    let got = fleet.run(&["get", "cinnabar", "api/token"]).ok();
    assert_eq!(got.stdout.as_bytes(), "new\u{fffd}token".as_bytes());
    let out = fleet.check(1);
    assert_eq!(
        out.stdout,
        "cinnabar/client: outdated: its dependency cinnabar/api was regenerated \
         (fix: vars generate --machine cinnabar --generator client)\n"
    );
    let out = fleet.generate(&[]).ok();
    assert_eq!(
        out.stdout,
        "generator        result\n\
         cinnabar/client  generated (outdated: its dependency cinnabar/api was regenerated)\n"
    );
    assert_eq!(
        fleet.read_string("sops/machines/cinnabar/public/client/conf"),
        "url=https://api.example\ntoken-bytes=9\n"
    );
    fleet.check(0);
}

#[test]
fn set_public_stores_raw_bytes() {
    if !require("bwrap") {
        return;
    }
    let fleet = generated();
    fleet
        .run_stdin(&["set", "zinc", "ca/k.pub"], b"replaced\n")
        .ok();
    assert_eq!(
        fleet.read_string("sops/shared/public/ca/k.pub"),
        "replaced\n"
    );
    assert_eq!(
        fleet.run(&["get", "cinnabar", "ca/k.pub"]).ok().stdout,
        "replaced\n"
    );
}

#[test]
fn list_shows_statuses_and_public_values() {
    if !require("bwrap") {
        return;
    }
    let fleet = Fleet::new(manifest());
    let out = fleet.run(&["list"]).ok();
    assert_eq!(
        out.stdout,
        "cinnabar/api/token  secret  missing\n\
         cinnabar/api/url  public  missing\n\
         cinnabar/ca/k  secret  missing\n\
         cinnabar/ca/k.pub  public  missing\n\
         cinnabar/client/conf  public  missing\n\
         zinc/ca/k  secret  missing\n\
         zinc/ca/k.pub  public  missing\n"
    );
    fleet.generate(&[]).ok();
    fleet
        .run_stdin(&["set", "cinnabar", "api/url"], b"https://new\n")
        .ok();
    let out = fleet.run(&["list"]).ok();
    assert_eq!(
        out.stdout,
        "cinnabar/api/token  secret  ok\n\
         cinnabar/api/url  public  ok  https://new\n\
         cinnabar/ca/k  secret  ok\n\
         cinnabar/ca/k.pub  public  ok  public-ca\n\
         cinnabar/client/conf  public  outdated: its dependency cinnabar/api was regenerated  url=https://api.example\\ntoken-bytes=7\n\
         zinc/ca/k  secret  ok\n\
         zinc/ca/k.pub  public  ok  public-ca\n"
    );
    let out = fleet.run(&["list", "--machine", "zinc", "--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!([
            { "machine": "zinc", "generator": "ca", "file": "k", "secret": true,
              "status": "ok", "value": null },
            { "machine": "zinc", "generator": "ca", "file": "k.pub", "secret": false,
              "status": "ok", "value": "public-ca" },
        ])
    );
}
