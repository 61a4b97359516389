//! Finding bubblewrap and building its argument list.
//!
//! The sandbox's root is an empty tmpfs (bwrap's default) made read-only at the end, holding:
//!
//! * the host's `/usr`, `/bin`, `/sbin`, `/lib`, `/lib64`, `/lib32`, `/libx32` read-only (a
//!   top-level symlink such as `/bin -> usr/bin` is recreated as the same symlink);
//! * `/nix/store` read-only when it exists, and `/run/current-system` (a symlink into the store
//!   on NixOS) so `/run/current-system/sw/bin` works;
//! * from `/etc`, only what programs such as `ssh-keygen` and `openssl` need to run (user and
//!   group databases, NSS and loader configuration, certificates, alternatives, time zone), each
//!   read-only; never `/etc/ssh` (host keys), `/etc/shadow`, `/etc/nix` (may hold access tokens)
//!   or anything else. Private-key directories inside the certificate trees
//!   (`/etc/ssl/private`, `/etc/pki/tls/private`, `/etc/pki/CA/private`) are hidden under an
//!   empty tmpfs;
//! * a fresh `/proc` and `/dev`, an empty tmpfs on `/tmp`;
//! * the run's `in/` and `prompts/` read-only, `out/`, `tmp/` and `home/` read-write, and the
//!   script file read-only, each at its real absolute path so `$in`, `$out`... mean the same
//!   inside and outside.
//!
//! Nothing else of the host is visible: not the repository, `$HOME`, `/root`, `/run/user`,
//! `/var` or any key file.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Top-level host directories mounted read-only (or recreated as symlinks).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// The entries of `/etc` made visible, read-only, when they exist.
const ETC_ENTRIES: &[&str] = &[
    "passwd",
    "group",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "services",
    "protocols",
    "gai.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "os-release",
    "alternatives",
    "ssl",
    "pki",
    "ca-certificates",
    "crypto-policies",
    // NixOS: most of /etc is symlinks into /etc/static, itself a symlink into the store.
    "static",
];

/// Directories hidden under an empty tmpfs because they may hold private keys.
const MASKED: &[&str] = &[
    "/etc/ssl/private",
    "/etc/pki/tls/private",
    "/etc/pki/CA/private",
];

/// Fixed places looked at for `bwrap` after `PATH`.
const BWRAP_FALLBACKS: &[&str] = &[
    "/usr/bin/bwrap",
    "/usr/local/bin/bwrap",
    "/run/current-system/sw/bin/bwrap",
    "/nix/var/nix/profiles/default/bin/bwrap",
];

/// Finds an executable `bwrap` on `path_var` (a `PATH`-style list), then in a few fixed places.
pub(crate) fn find_bwrap(path_var: Option<&OsStr>) -> Option<PathBuf> {
    find_bwrap_in(path_var, BWRAP_FALLBACKS)
}

/// [`find_bwrap`] with explicit fallback locations.
pub(crate) fn find_bwrap_in(path_var: Option<&OsStr>, fallbacks: &[&str]) -> Option<PathBuf> {
    let from_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("bwrap"));
    let fallbacks = fallbacks.iter().map(PathBuf::from);
    from_path.chain(fallbacks).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A bwrap argument list under construction.
#[derive(Debug, Default, Clone)]
pub(crate) struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, flag: &str) {
        self.0.push(OsString::from(flag));
    }

    fn pair(&mut self, flag: &str, a: impl AsRef<OsStr>, b: impl AsRef<OsStr>) {
        self.0.push(OsString::from(flag));
        self.0.push(a.as_ref().to_owned());
        self.0.push(b.as_ref().to_owned());
    }

    fn one(&mut self, flag: &str, a: impl AsRef<OsStr>) {
        self.0.push(OsString::from(flag));
        self.0.push(a.as_ref().to_owned());
    }

    /// Makes host `path` visible at the same place: a symlink is recreated with the same
    /// target, anything else is bind-mounted read-only. Missing paths are skipped.
    fn host(&mut self, path: &Path) {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(path) {
                    self.pair("--symlink", target, path);
                }
            }
            Ok(_) => self.pair("--ro-bind", path, path),
            Err(_) => {}
        }
    }

    /// The arguments.
    pub(crate) fn into_vec(self) -> Vec<OsString> {
        self.0
    }
}

/// The part of the argument list that is the same for every run: namespaces, process
/// options and the host filesystem view. With `share_net`, the network namespace is not
/// unshared (the caller has moved bwrap into the shared empty one).
pub(crate) fn system_args(share_net: bool) -> Args {
    let mut args = Args::default();
    args.flag("--unshare-all");
    if share_net {
        args.flag("--share-net");
    }
    args.flag("--die-with-parent");
    args.flag("--new-session");
    args.flag("--clearenv");
    args.one("--cap-drop", "ALL");
    for dir in SYSTEM_DIRS {
        args.host(Path::new(dir));
    }
    if Path::new("/nix/store").is_dir() {
        args.pair("--ro-bind", "/nix/store", "/nix/store");
    }
    args.host(Path::new("/run/current-system"));
    let etc = Path::new("/etc");
    for entry in ETC_ENTRIES {
        args.host(&etc.join(entry));
    }
    for masked in MASKED {
        if Path::new(masked).is_dir() {
            args.one("--tmpfs", masked);
        }
    }
    args.one("--proc", "/proc");
    args.one("--dev", "/dev");
    args.one("--tmpfs", "/tmp");
    args
}

/// The per-run mounts of the working directory, the working directory of the script, the
/// final read-only remount of the root, and the environment.
pub(crate) struct RunMounts<'a> {
    /// `$in`, bound read-only.
    pub(crate) inputs: &'a Path,
    /// `$prompts`, bound read-only.
    pub(crate) prompts: &'a Path,
    /// `$out`, bound read-write.
    pub(crate) out: &'a Path,
    /// `$TMPDIR`, bound read-write; also the script's working directory.
    pub(crate) tmp: &'a Path,
    /// `$HOME`, bound read-write.
    pub(crate) home: &'a Path,
    /// The script file, bound read-only.
    pub(crate) script: &'a Path,
}

/// Appends the per-run part of the argument list to `args`, ending with `--` and `command`.
pub(crate) fn run_args(
    mut args: Args,
    mounts: &RunMounts<'_>,
    env: &[(&str, OsString)],
    command: &[OsString],
) -> Vec<OsString> {
    args.pair("--ro-bind", mounts.inputs, mounts.inputs);
    args.pair("--ro-bind", mounts.prompts, mounts.prompts);
    args.pair("--bind", mounts.out, mounts.out);
    args.pair("--bind", mounts.tmp, mounts.tmp);
    args.pair("--bind", mounts.home, mounts.home);
    args.pair("--ro-bind", mounts.script, mounts.script);
    args.one("--chdir", mounts.tmp);
    args.one("--remount-ro", "/");
    for (key, value) in env {
        args.pair("--setenv", key, value);
    }
    args.flag("--");
    let mut args = args.into_vec();
    args.extend(command.iter().cloned());
    args
}
