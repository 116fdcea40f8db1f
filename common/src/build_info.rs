//! What a program was built from: its version, git commit and cargo
//! profile, as the `<prefix>_build_info` gauge (`--version` prints the
//! same from each program's `VERSION`).
//!
//! The commit and profile come from each program's build script
//! (`common/build/build_info.rs`, included by `router/build.rs` and
//! `binlog-reader/build.rs`), which is why [`BuildInfo`] values are built
//! in the programs' crates, not here: each calls [`crate::build_info!`] once.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Defines `BUILD` ([`BuildInfo`]) and `VERSION` (`--version`'s text after
/// the program's name: `0.1.0 (commit 9d2e37e, release)`) in the calling
/// program's crate, from its own version and what its build script set.
#[macro_export]
macro_rules! build_info {
    () => {
        /// What this program was built from (`--version`, the `build_info`
        /// gauge).
        pub const BUILD: $crate::build_info::BuildInfo = $crate::build_info::BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("CAUSEWAY_GIT_COMMIT"),
            profile: env!("CAUSEWAY_BUILD_PROFILE"),
        };

        /// `--version`'s text after the program's name:
        /// `0.1.0 (commit 9d2e37e, release)`.
        pub const VERSION: &str = concat!(
            env!("CARGO_PKG_VERSION"),
            " (commit ",
            env!("CAUSEWAY_GIT_COMMIT"),
            ", ",
            env!("CAUSEWAY_BUILD_PROFILE"),
            ")"
        );
    };
}

/// A program's version, commit and build profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    /// The crate's version (`0.1.0`).
    pub version: &'static str,
    /// The git commit's short hash, or `unknown`.
    pub commit: &'static str,
    /// `debug` or `release`.
    pub profile: &'static str,
}

/// Labels of the `build_info` gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
    profile: String,
}

impl BuildInfo {
    /// Registers `build_info` (a gauge, always 1, labelled `version`,
    /// `commit`, `profile`) in `registry`, under the registry's prefix.
    pub fn register(&self, registry: &mut Registry) {
        let family = Family::<BuildLabels, Gauge>::default();
        family
            .get_or_create(&BuildLabels {
                version: self.version.into(),
                commit: self.commit.into(),
                profile: self.profile.into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "1, labelled with the version, git commit and build profile",
            family,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics_http::Render;

    #[test]
    fn the_gauge_carries_the_labels() {
        let b = BuildInfo {
            version: "1.2.3",
            commit: "abc1234",
            profile: "release",
        };
        let mut registry = Registry::default();
        b.register(registry.sub_registry_with_prefix("x"));
        let text = registry.render();
        assert!(
            text.contains(
                "x_build_info{version=\"1.2.3\",commit=\"abc1234\",profile=\"release\"} 1\n"
            ),
            "{text}"
        );
    }
}
