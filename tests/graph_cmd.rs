//! `vars graph`: the generator DAG in Graphviz DOT.

mod engine;

use engine::*;

fn manifest() -> Value {
    let ca = json!({ "share": true, "files": { "k": {} }, "script": "true" });
    json!({ "machines": {
        "cinnabar": machine(json!({
            "openssh-ca": ca.clone(),
            "openssh": { "dependencies": ["openssh-ca"] },
            "wifi": {},
            "nm": { "dependencies": ["wifi", "openssh"] },
        })),
        "zinc": machine(json!({
            "openssh-ca": ca,
            "openssh": { "dependencies": ["openssh-ca"] },
        })),
        "lead": machine(json!({ "motd": {} })),
    }})
}

#[test]
fn whole_fleet() {
    let fleet = Fleet::without_admin(manifest());
    let out = fleet.run(&["graph"]).ok();
    assert_eq!(
        out.stdout,
        r#"digraph vars {
  node [shape=box];
  "shared/openssh-ca" [shape=ellipse, style=filled, fillcolor=lightblue];
  "cinnabar/nm";
  "cinnabar/openssh";
  "cinnabar/wifi";
  "lead/motd";
  "zinc/openssh";
  "shared/openssh-ca" -> "cinnabar/openssh";
  "shared/openssh-ca" -> "zinc/openssh";
  "cinnabar/openssh" -> "cinnabar/nm";
  "cinnabar/wifi" -> "cinnabar/nm";
}
"#
    );
    assert_eq!(out.stderr, "");
    // Nothing is written.
    assert!(!fleet.exists("sops"));
}

#[test]
fn one_machine_with_the_shared_nodes_it_declares() {
    let fleet = Fleet::without_admin(manifest());
    let out = fleet.run(&["graph", "--machine", "zinc"]).ok();
    assert_eq!(
        out.stdout,
        r#"digraph vars {
  node [shape=box];
  "shared/openssh-ca" [shape=ellipse, style=filled, fillcolor=lightblue];
  "zinc/openssh";
  "shared/openssh-ca" -> "zinc/openssh";
}
"#
    );
    let out = fleet.run(&["graph", "--machine", "lead"]).ok();
    assert_eq!(
        out.stdout,
        "digraph vars {\n  node [shape=box];\n  \"lead/motd\";\n}\n"
    );
}

#[test]
fn unknown_machine_and_config_errors_exit_2() {
    let fleet = Fleet::without_admin(manifest());
    let out = fleet.run(&["graph", "--machine", "mars"]).code(2);
    assert_eq!(out.stderr, "error: unknown machine \"mars\"\n");
    let mut m = manifest();
    m["machines"]["lead"]["generators"]["motd"]["dependencies"] = json!(["motd"]);
    fleet.configure(&m);
    let out = fleet.run(&["graph"]).code(2);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "error: dependency cycle: lead/motd -> lead/motd\n"
    );
}
