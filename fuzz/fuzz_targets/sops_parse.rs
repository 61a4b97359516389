//! Every SOPS store's parser, then decryption with a fixed identity (the seeds
//! in corpus/sops_parse are sealed to it), and the plaintext parsers and
//! emitters. The first byte picks the store; the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vars::keys::Identities;
use vars::sops::{self, Format, SopsFile};

/// A key made for fuzzing only: it protects nothing.
const FUZZ_KEY: &[u8] =
    b"AGE-SECRET-KEY-1RW7ETYSSJ0LWVYAUJFKAKVWS0REKPKZVTVHQNPG8KTFR2C4FU28SR0FD40\n";

const FORMATS: [Format; 5] = [
    Format::Binary,
    Format::Yaml,
    Format::Json,
    Format::Dotenv,
    Format::Ini,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(selector) % FORMATS.len()];
    if let Ok(file) = SopsFile::parse(bytes, format, "fuzz") {
        let _ = file.recipients();
        let mut ids = Identities::default();
        ids.add_text("fuzz", FUZZ_KEY).expect("the fuzz key");
        if let Ok(tree) = file.decrypt(&ids) {
            let _ = sops::emit_plain(&tree, format, "fuzz");
        }
    }
    if let Ok(tree) = sops::parse_plain(bytes, format, "fuzz") {
        let _ = sops::emit_plain(&tree, format, "fuzz");
        let _ = sops::extract(&tree, "[\"a\"][0]");
    }
});
