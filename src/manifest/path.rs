//! JSON paths for error messages, like `machines.cinnabar.generators.openssh.files.key.mode`.
//!
//! A path is a chain of borrowed segments living on the stack of the code walking the
//! document, so nothing is allocated until an error is actually rendered.

use super::error::ManifestError;
use super::text::quote;

/// A location in the manifest document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonPath<'a> {
    parent: Option<&'a JsonPath<'a>>,
    segment: Segment<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    /// The document itself; renders as the source file name when nothing follows it.
    Root(&'a str),
    /// An object member.
    Key(&'a str),
    /// An array element.
    Index(usize),
}

impl<'a> JsonPath<'a> {
    /// The top of the document read from `source`.
    pub(crate) fn root(source: &'a str) -> JsonPath<'a> {
        JsonPath {
            parent: None,
            segment: Segment::Root(source),
        }
    }

    /// The member `key` of the object at this path.
    pub(crate) fn key<'b>(&'b self, key: &'b str) -> JsonPath<'b> {
        JsonPath {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }

    /// The element `index` of the array at this path.
    pub(crate) fn index(&self, index: usize) -> JsonPath<'_> {
        JsonPath {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }

    /// The path as text: keys joined by `.`, indices as `[n]`, keys that are not plain
    /// identifiers quoted; the source name for the root itself.
    pub(crate) fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut cursor = Some(self);
        while let Some(path) = cursor {
            segments.push(path.segment);
            cursor = path.parent;
        }
        segments.reverse();
        let mut out = String::new();
        for segment in &segments {
            match segment {
                Segment::Root(_) => {}
                Segment::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    if is_plain(key) {
                        out.push_str(key);
                    } else {
                        out.push_str(&quote(key));
                    }
                }
                Segment::Index(index) => out.push_str(&format!("[{index}]")),
            }
        }
        if out.is_empty() {
            if let Some(Segment::Root(source)) = segments.first() {
                out.push_str(source);
            }
        }
        out
    }

    /// The error `message` at this path.
    pub(crate) fn error(&self, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            path: self.render(),
            message: message.into(),
        }
    }
}

/// Whether `key` can appear in a path unquoted without ambiguity.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_renders_as_the_source() {
        assert_eq!(JsonPath::root("vars.json").render(), "vars.json");
    }

    #[test]
    fn keys_and_indices_render_dotted() {
        let root = JsonPath::root("vars.json");
        let machines = root.key("machines");
        let machine = machines.key("cinnabar");
        let tags = machine.key("tags");
        assert_eq!(tags.index(3).render(), "machines.cinnabar.tags[3]");
    }

    #[test]
    fn unusual_keys_are_quoted() {
        let root = JsonPath::root("vars.json");
        let files = root.key("files");
        assert_eq!(
            files.key("ssh_host_ed25519_key.pub").render(),
            "files.\"ssh_host_ed25519_key.pub\""
        );
        assert_eq!(files.key("").render(), "files.\"\"");
        assert_eq!(files.key("a\0b").render(), "files.\"a\\u0000b\"");
        assert_eq!(files.key("../x").render(), "files.\"../x\"");
    }
}
