//! The cache's namespaces: what kind of thing an entry or record is. Their names are
//! folder names in the local store and part of every remote entry's name, so they
//! never change; which of them the remote tier shares is decided here, once.

/// One kind of cached item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// A compiled object file.
    Object,
    /// The headers an object's compile read, by its base key.
    Manifest,
    /// A stage-1 unit's archive.
    Archive,
    /// A sketch's linked firmware files.
    Link,
    /// What a link produced besides files: names and sizes.
    LinkMeta,
    /// A compile's output when it failed.
    Failure,
    /// A marker: this base key failed to compile once.
    FailedSource,
    /// A link that failed and would fail again.
    LinkFailure,
    /// Discovery answers, guesses and header sets.
    Discover,
    /// Facts about this machine's own compilers.
    Toolchain,
}

impl Namespace {
    pub const ALL: [Namespace; 10] = [
        Namespace::Object,
        Namespace::Manifest,
        Namespace::Archive,
        Namespace::Link,
        Namespace::LinkMeta,
        Namespace::Failure,
        Namespace::FailedSource,
        Namespace::LinkFailure,
        Namespace::Discover,
        Namespace::Toolchain,
    ];

    /// The name on disk, in remote entry names and in the stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Object => "object",
            Namespace::Manifest => "manifest",
            Namespace::Archive => "archive",
            Namespace::Link => "link",
            Namespace::LinkMeta => "link-meta",
            Namespace::Failure => "failure",
            Namespace::FailedSource => "failed-source",
            Namespace::LinkFailure => "link-failure",
            Namespace::Discover => "discover",
            Namespace::Toolchain => "toolchain",
        }
    }

    pub fn named(name: &str) -> Option<Namespace> {
        Namespace::ALL.into_iter().find(|n| n.as_str() == name)
    }

    /// Worth sharing between machines: build results and their manifests. Facts
    /// about this machine's own tools stay local. Discovery answers and remembered
    /// link failures are build results like objects: a record is only used after its
    /// headers are hashed again on this machine.
    pub fn is_shared(self) -> bool {
        self != Namespace::Toolchain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_toolchain_facts_stay_local() {
        for n in Namespace::ALL {
            assert_eq!(Namespace::named(n.as_str()), Some(n));
        }
        let shared: Vec<&str> = Namespace::ALL.into_iter().filter(|n| n.is_shared()).map(Namespace::as_str).collect();
        // The list remote.rs held before namespaces were typed.
        assert_eq!(shared, ["object", "manifest", "archive", "link", "link-meta", "failure", "failed-source", "link-failure", "discover"]);
        assert_eq!(Namespace::named("obj"), None);
    }
}
