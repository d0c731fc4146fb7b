//! A plugin version's host range, prepared for the update check.
//!
//! Every offer a check considers is matched against the host's version. semver's
//! `VersionReq::matches` walks the comparators behind a pointer with a branch per operator,
//! a tenth of a check's CPU in its profile. Almost every range (`>=1.2`, `^1.4.0`,
//! `>=1.0, <3`) admits, for hosts that are releases, one interval of versions, which two
//! comparisons of numbers held inline decide. Ranges that name pre-releases, and hosts that
//! are pre-releases, fall back to semver's rules.

use semver::{Comparator, Op, Version, VersionReq};

/// `major.minor.patch`, ordered as semver orders releases.
type Release = (u64, u64, u64);

/// A host range, with the interval it admits when there is one.
#[derive(Debug, Clone)]
pub struct HostRange {
    /// The releases the range admits, when they form one interval (always, unless a
    /// comparator names a pre-release or a bound overflows).
    releases: Option<ReleaseInterval>,
    requirement: VersionReq,
}

/// `[from, below)`; without `below`, unbounded above.
#[derive(Debug, Clone, Copy)]
struct ReleaseInterval {
    from: Release,
    below: Option<Release>,
}

impl ReleaseInterval {
    fn contains(self, version: Release) -> bool {
        self.from <= version && self.below.is_none_or(|below| version < below)
    }
}

impl HostRange {
    /// Prepares `requirement`.
    pub fn new(requirement: VersionReq) -> Self {
        let releases = requirement.comparators.iter().try_fold(
            ReleaseInterval {
                from: (0, 0, 0),
                below: None,
            },
            |admitted, comparator| {
                let (from, below) = releases_matching(comparator)?;
                Some(ReleaseInterval {
                    from: admitted.from.max(from),
                    below: match (admitted.below, below) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                })
            },
        );
        Self {
            releases,
            requirement,
        }
    }

    /// Whether a host at `version` is in the range, by semver's rules.
    pub fn matches(&self, version: &Version) -> bool {
        match self.releases {
            Some(releases) if version.pre.is_empty() => {
                releases.contains((version.major, version.minor, version.patch))
            }
            _ => self.requirement.matches(version),
        }
    }
}

/// The releases one comparator admits, `[from, below)`, by the rules of semver's `eval.rs`;
/// `None` when it names a pre-release or a bound would overflow.
fn releases_matching(comparator: &Comparator) -> Option<(Release, Option<Release>)> {
    if !comparator.pre.is_empty() {
        return None;
    }
    let major = comparator.major;
    let next_major = (major.checked_add(1)?, 0, 0);
    // The releases `=comparator` admits: a partial version stands for all it prefixes.
    let exact_from = (
        major,
        comparator.minor.unwrap_or(0),
        comparator.patch.unwrap_or(0),
    );
    let exact_below = match (comparator.minor, comparator.patch) {
        (None, _) => next_major,
        (Some(minor), None) => (major, minor.checked_add(1)?, 0),
        (Some(minor), Some(patch)) => (major, minor, patch.checked_add(1)?),
    };
    Some(match comparator.op {
        Op::Exact | Op::Wildcard => (exact_from, Some(exact_below)),
        Op::Greater => (exact_below, None),
        Op::GreaterEq => (exact_from, None),
        Op::Less => ((0, 0, 0), Some(exact_from)),
        Op::LessEq => ((0, 0, 0), Some(exact_below)),
        Op::Tilde => match (comparator.minor, comparator.patch) {
            (Some(minor), Some(_)) => (exact_from, Some((major, minor.checked_add(1)?, 0))),
            _ => (exact_from, Some(exact_below)),
        },
        Op::Caret => match (major, comparator.minor, comparator.patch) {
            (_, None, _) | (0, Some(_), None) | (0, Some(0), Some(_)) => {
                (exact_from, Some(exact_below))
            }
            (0, Some(minor), Some(_)) => (exact_from, Some((0, minor.checked_add(1)?, 0))),
            _ => (exact_from, Some(next_major)),
        },
        // An operator semver adds later: its own rules decide.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every comparator over small numbers, with every way of leaving parts out.
    fn comparators() -> Vec<String> {
        let mut versions = Vec::new();
        for major in 0..3 {
            versions.push(format!("{major}"));
            for minor in 0..3 {
                versions.push(format!("{major}.{minor}"));
                for patch in 0..3 {
                    versions.push(format!("{major}.{minor}.{patch}"));
                }
            }
        }
        let mut out = Vec::new();
        for version in &versions {
            for op in ["=", ">", ">=", "<", "<=", "~", "^", ""] {
                out.push(format!("{op}{version}"));
            }
        }
        for major in 0..3 {
            out.push(format!("{major}.*"));
            for minor in 0..3 {
                out.push(format!("{major}.{minor}.*"));
            }
        }
        out
    }

    fn hosts() -> Vec<Version> {
        let mut hosts = Vec::new();
        for major in 0..4 {
            for minor in 0..4 {
                for patch in 0..4 {
                    hosts.push(Version::new(major, minor, patch));
                }
            }
        }
        hosts
    }

    fn assert_agrees(requirement: &str, hosts: &[Version]) {
        let parsed = VersionReq::parse(requirement).unwrap();
        let range = HostRange::new(parsed.clone());
        for host in hosts {
            assert_eq!(
                range.matches(host),
                parsed.matches(host),
                "`{requirement}` against host {host}"
            );
        }
    }

    #[test]
    fn agrees_with_semver_on_every_small_comparator_and_pair() {
        let comparators = comparators();
        let hosts = hosts();
        assert_agrees("*", &hosts);
        for first in &comparators {
            assert_agrees(first, &hosts);
            assert!(
                HostRange::new(VersionReq::parse(first).unwrap())
                    .releases
                    .is_some(),
                "`{first}` has an interval"
            );
        }
        // Pairs, as ranges like `>=1.2, <2` are written.
        for first in comparators.iter().step_by(3) {
            for second in comparators.iter().skip(1).step_by(5) {
                assert_agrees(&format!("{first}, {second}"), &hosts);
            }
        }
    }

    #[test]
    fn pre_releases_follow_semver() {
        let hosts = [
            Version::parse("1.2.3-beta.1").unwrap(),
            Version::parse("1.2.3").unwrap(),
            Version::parse("2.0.0-rc.1").unwrap(),
            Version::parse("1.2.4").unwrap(),
        ];
        for requirement in [
            ">=1.2.3-beta.0",
            "^1.2.3-alpha",
            ">=1.0, <2",
            "^1.2",
            "<2.0.0",
        ] {
            assert_agrees(requirement, &hosts);
        }
        // A release-only range never admits a pre-release host, even inside its interval.
        assert!(!HostRange::new(VersionReq::parse(">=1.0").unwrap()).matches(&hosts[0]));
        // A range naming a pre-release is left to semver.
        assert!(
            HostRange::new(VersionReq::parse(">=1.2.3-beta.0").unwrap())
                .releases
                .is_none()
        );
    }

    #[test]
    fn bounds_at_the_top_of_the_numbers_fall_back() {
        let max = u64::MAX;
        let hosts = [Version::new(max, max, max), Version::new(max, 0, 0)];
        for requirement in [
            format!("^{max}"),
            format!("<={max}.{max}.{max}"),
            format!(">{max}.0"),
            format!("~{max}.{max}.1"),
        ] {
            assert_agrees(&requirement, &hosts);
        }
    }
}
