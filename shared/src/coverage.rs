//! The completeness ledger's vocabulary (`coverage_daily`, `docs/coverage.md`): how complete a
//! participant's local day is in one family, and why it is not. The writer decides a day's
//! [`DayCoverage`] from what it stores ([`decide`]); `fitlink coverage` and `status` read them
//! back by these names.

use serde::{Deserialize, Serialize};

/// How much of a day's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageStatus {
    /// Fetched to the day's end, with data.
    Complete,
    /// Some data, the rest of the day not fetched yet.
    Partial,
    /// Nothing stored.
    Missing,
}

/// Why a day is not complete (`Ok` when it is). Exactly one per gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    Ok,
    NotWorn,
    DeviceNotSynced,
    NotFetched,
    ProviderError,
    NotPermitted,
    Withdrawn,
}

macro_rules! named {
    ($ty:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$(<$ty>::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(<$ty>::$variant => $name),*
                }
            }

            /// The value named `name` (its [`as_str`](Self::as_str)).
            pub fn parse(name: &str) -> Option<$ty> {
                Self::ALL.iter().copied().find(|v| v.as_str() == name)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named!(CoverageStatus {
    Complete => "complete",
    Partial => "partial",
    Missing => "missing",
});

named!(GapReason {
    Ok => "ok",
    NotWorn => "not_worn",
    DeviceNotSynced => "device_not_synced",
    NotFetched => "not_fetched",
    ProviderError => "provider_error",
    NotPermitted => "not_permitted",
    Withdrawn => "withdrawn",
});

/// Why the participant is not fetching new days, from their state: what a day beyond the
/// cursor is missing for, before the device's own sync is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Syncing (or waiting out a retry).
    Syncing,
    /// Consent gone: revoked, expired, needs a new consent, a scope missing, only invited.
    ConsentLost,
    /// The job was dead-lettered (its id) or the provider's data could not be read (`None`).
    ProviderError {
        dead_letter_id: Option<String>,
    },
    Withdrawn {
        purged: bool,
    },
}

/// What the writer knows about one family on one local day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayFacts {
    /// Units stored (minutes, sessions, or 1 for a day's value).
    pub received: i64,
    /// The cursor has reached the day's end.
    pub fetched: bool,
    /// The tracker's latest sync is at or after the day's end.
    pub device_synced_past: bool,
    /// The family is refused for this participant.
    pub family_refused: bool,
    pub standing: Standing,
}

/// A day's status and reason, with the dead letter behind a `provider_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayCoverage {
    pub status: CoverageStatus,
    pub reason: GapReason,
    pub dead_letter_id: Option<String>,
}

/// The ledger's rule (`docs/coverage.md`, "Reasons"): the first reason that applies.
pub fn decide(facts: &DayFacts) -> DayCoverage {
    let status = match (facts.received > 0, facts.fetched) {
        (true, true) => CoverageStatus::Complete,
        (true, false) => CoverageStatus::Partial,
        (false, _) => CoverageStatus::Missing,
    };
    let reason = |reason| DayCoverage {
        status,
        reason,
        dead_letter_id: None,
    };
    if status == CoverageStatus::Complete {
        return reason(GapReason::Ok);
    }
    match &facts.standing {
        Standing::Withdrawn { purged } if *purged || !facts.fetched => {
            return reason(GapReason::Withdrawn);
        }
        _ => {}
    }
    if facts.family_refused || (!facts.fetched && facts.standing == Standing::ConsentLost) {
        return reason(GapReason::NotPermitted);
    }
    if facts.fetched {
        return reason(GapReason::NotWorn);
    }
    match &facts.standing {
        Standing::ProviderError { dead_letter_id } => DayCoverage {
            dead_letter_id: dead_letter_id.clone(),
            ..reason(GapReason::ProviderError)
        },
        _ if !facts.device_synced_past => reason(GapReason::DeviceNotSynced),
        _ => reason(GapReason::NotFetched),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(received: i64, fetched: bool) -> DayFacts {
        DayFacts {
            received,
            fetched,
            device_synced_past: true,
            family_refused: false,
            standing: Standing::Syncing,
        }
    }

    #[test]
    fn a_fetched_day_with_data_is_ok_whatever_else_is_true() {
        let mut f = facts(3, true);
        f.family_refused = true;
        f.standing = Standing::Withdrawn { purged: false };
        assert_eq!(
            decide(&f),
            DayCoverage {
                status: CoverageStatus::Complete,
                reason: GapReason::Ok,
                dead_letter_id: None
            }
        );
    }

    #[test]
    fn each_gap_gets_the_first_reason_that_applies() {
        let reason = |f: DayFacts| decide(&f).reason;
        assert_eq!(reason(facts(0, true)), GapReason::NotWorn);
        assert_eq!(reason(facts(0, false)), GapReason::NotFetched);
        assert_eq!(
            reason(DayFacts {
                device_synced_past: false,
                ..facts(5, false)
            }),
            GapReason::DeviceNotSynced
        );
        assert_eq!(
            reason(DayFacts {
                family_refused: true,
                ..facts(0, true)
            }),
            GapReason::NotPermitted
        );
        assert_eq!(
            reason(DayFacts {
                standing: Standing::ConsentLost,
                device_synced_past: false,
                ..facts(0, false)
            }),
            GapReason::NotPermitted
        );
        // Consent lost after the day was fetched: the day's own reason stands.
        assert_eq!(
            reason(DayFacts {
                standing: Standing::ConsentLost,
                ..facts(0, true)
            }),
            GapReason::NotWorn
        );
        assert_eq!(
            reason(DayFacts {
                standing: Standing::Withdrawn { purged: true },
                family_refused: true,
                ..facts(0, true)
            }),
            GapReason::Withdrawn
        );
        assert_eq!(
            reason(DayFacts {
                standing: Standing::Withdrawn { purged: false },
                ..facts(0, true)
            }),
            GapReason::NotWorn
        );
    }

    #[test]
    fn a_dead_lettered_day_names_its_dead_letter() {
        let d = decide(&DayFacts {
            standing: Standing::ProviderError {
                dead_letter_id: Some("job-1".into()),
            },
            device_synced_past: false,
            ..facts(2, false)
        });
        assert_eq!(d.status, CoverageStatus::Partial);
        assert_eq!(d.reason, GapReason::ProviderError);
        assert_eq!(d.dead_letter_id.as_deref(), Some("job-1"));
    }

    #[test]
    fn names_round_trip() {
        for r in GapReason::ALL {
            assert_eq!(GapReason::parse(r.as_str()), Some(*r));
        }
        for s in CoverageStatus::ALL {
            assert_eq!(CoverageStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(GapReason::parse("lost"), None);
    }
}
