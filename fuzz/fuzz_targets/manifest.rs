//! The manifest parser and validator, then the generator graph built from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vars::graph::Graph;
use vars::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::from_json_bytes(data, "fuzz.json") else {
        return;
    };
    if let Ok(graph) = Graph::build(&manifest) {
        let _ = graph.to_dot(None);
        for n in graph.order() {
            let _ = graph.generator(&manifest, n).map(|g| g.definition_hash());
        }
    }
});
