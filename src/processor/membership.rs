//! How a processor is known to its consumer group.
//!
//! With static membership (Kafka's `group.instance.id`, KIP-345) a processor that
//! crashed and comes back under the same id takes its place in the group at once,
//! with the same partitions, instead of waiting for the dead member's session to
//! run out. On the embedded broker it is what brings a group back at all: Tansu 0.6
//! can lose a group whose only (so leading) member died while another joins, and
//! takes a returning static member in about 6 s every time.
//!
//! A restart must get the id of the instance it replaces, and two processors
//! running side by side must never share one (the broker fences the older). So the
//! automatic id is a slot, `<host>-<n>`: each running processor holds an exclusive
//! lock on its slot's file, the OS drops the lock when the process dies however it
//! dies, and a new processor takes the lowest free slot of its cluster and group:
//! the one its crashed predecessor left.

use std::{
    fs::{File, OpenOptions},
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
};

/// The most processors of one group on one host that get a static id; any beyond
/// run as dynamic members.
const SLOTS: usize = 64;

/// How the processor joins its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// A new member on every start (Kafka's default).
    Dynamic,
    /// This `group.instance.id`, as the operator gave it.
    Static(String),
    /// A static id of a free slot on this host (see the module's notes).
    Auto,
}

impl std::str::FromStr for Membership {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Membership::Auto),
            "none" => Ok(Membership::Dynamic),
            "" => Err("an instance id cannot be empty: give one, auto or none".into()),
            id if id.len() > 249 || id.chars().any(char::is_control) => Err(format!(
                "{id:?} is not a valid instance id: at most 249 printable characters"
            )),
            id => Ok(Membership::Static(id.to_string())),
        }
    }
}

/// The id the processor runs under, and what keeps it its own while it runs.
#[derive(Debug)]
pub struct Instance {
    pub id: Option<String>,
    _slot: Option<File>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "claiming a static member id in {dir}: {source}; pass --instance-id none or an id of your own"
)]
pub struct ClaimError {
    dir: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Membership {
    /// Resolves the id for a processor of `group` on the cluster at `bootstrap`.
    pub fn claim(&self, bootstrap: &str, group: &str) -> Result<Instance, ClaimError> {
        match self {
            Membership::Dynamic => Ok(Instance {
                id: None,
                _slot: None,
            }),
            Membership::Static(id) => Ok(Instance {
                id: Some(id.clone()),
                _slot: None,
            }),
            Membership::Auto => claim_slot(&slot_dir(), bootstrap, group),
        }
    }
}

/// Per user, so that no one else's processors share (or block) the slots.
fn slot_dir() -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    base.join(format!("orderflow-{uid}")).join("instances")
}

fn claim_slot(dir: &std::path::Path, bootstrap: &str, group: &str) -> Result<Instance, ClaimError> {
    let err = |source| ClaimError {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut h = DefaultHasher::new();
    (bootstrap, group).hash(&mut h);
    let scope = h.finish();
    for n in 1..=SLOTS {
        let path = dir.join(format!("{scope:016x}-{n}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {
                return Ok(Instance {
                    id: Some(format!("{}-{n}", host())),
                    _slot: Some(file),
                });
            }
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
    }
    tracing::warn!(
        group,
        "{SLOTS} processors of this group already run on this host; this one joins as a dynamic member"
    );
    Ok(Instance {
        id: None,
        _slot: None,
    })
}

fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "orderflow".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_takes_the_slot_its_predecessor_left_and_neighbours_get_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let claim = |group| claim_slot(dir.path(), "127.0.0.1:9092", group).unwrap();
        let first = claim("g");
        let second = claim("g");
        let other_group = claim("h");
        let (a, b) = (first.id.clone().unwrap(), second.id.clone().unwrap());
        assert!(a.ends_with("-1") && b.ends_with("-2"), "{a} {b}");
        assert!(other_group.id.unwrap().ends_with("-1"));
        drop(first); // the process died: its lock is gone with its file
        assert_eq!(claim("g").id.unwrap(), a);
    }

    #[test]
    fn flags_parse() {
        assert_eq!("auto".parse(), Ok(Membership::Auto));
        assert_eq!("none".parse(), Ok(Membership::Dynamic));
        assert_eq!("p-1".parse(), Ok(Membership::Static("p-1".into())));
        assert!("".parse::<Membership>().is_err());
        assert!("a\nb".parse::<Membership>().is_err());
    }
}
