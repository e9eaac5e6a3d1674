//! The knobs of the figures, with the spec's defaults (spec §3–§6).

use super::calendar::ServiceCalendar;
use super::time::{Millis, SECOND};

/// Which calls make the denominator of the monthly SLA (spec §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaPolicy {
    /// Contract default: answered calls only.
    Answered,
    /// Industry convention: answered + abandoned.
    AnsweredAndAbandoned,
    /// Strictest: answered + abandoned + overflow.
    Offered,
}

impl SlaPolicy {
    pub const ALL: [SlaPolicy; 3] = [Self::Answered, Self::AnsweredAndAbandoned, Self::Offered];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::AnsweredAndAbandoned => "answered_and_abandoned",
            Self::Offered => "offered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Penalty terms of seed §1.5; the fee amounts are not in the seed, so they default to unset.
#[derive(Debug, Clone, PartialEq)]
pub struct PenaltyConfig {
    pub monthly_fee_eur: Option<f64>,
    pub annual_fee_eur: Option<f64>,
    /// Per deficient month, percent of the monthly fee (up to).
    pub deficient_month_pct: f64,
    /// Per grave month, percent of the annual fee (up to).
    pub grave_month_pct: f64,
    /// Penalties reaching this percent of the annual amount give the termination right.
    pub termination_pct: f64,
}

impl Default for PenaltyConfig {
    fn default() -> Self {
        Self {
            monthly_fee_eur: None,
            annual_fee_eur: None,
            deficient_month_pct: 1.5,
            grave_month_pct: 3.0,
            termination_pct: 10.0,
        }
    }
}

/// Booking index of seed §1.6.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeConfig {
    pub annual_index: u64,
    pub tolerance_pct: f64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            annual_index: 136_000,
            tolerance_pct: 20.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// SLA threshold T on the net wait.
    pub threshold_ms: Millis,
    /// Length of the information message the net wait is counted from the end of: the
    /// seed's Table 1 states its thresholds gross, i.e. net + this (seed §1.2 note 2).
    pub message_ms: Millis,
    pub target: f64,
    pub grave_floor: f64,
    pub policy: SlaPolicy,
    pub penalties: PenaltyConfig,
    pub volume: VolumeConfig,
    pub calendar: ServiceCalendar,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            threshold_ms: 140 * SECOND,
            message_ms: 40 * SECOND,
            target: 0.60,
            grave_floor: 0.40,
            policy: SlaPolicy::Answered,
            penalties: PenaltyConfig::default(),
            volume: VolumeConfig::default(),
            calendar: ServiceCalendar::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_by_name() {
        assert_eq!(SlaPolicy::parse("offered"), Some(SlaPolicy::Offered));
        assert_eq!(SlaPolicy::parse("Offered"), None);
    }
}
