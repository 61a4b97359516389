//! key.json files (admins' and machines' recipients).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(recipients) = vars::keys::parse_key_json(text, "key.json") {
            let text = vars::keys::key_json_text(&recipients);
            // What vars writes, it reads back the same.
            let again = vars::keys::parse_key_json(&text, "key.json").expect("round trip");
            assert_eq!(again, recipients);
        }
    }
});
