//! The rule of [`Figures::add`](super::figures::Figures::add) written as SQL, for a
//! store that answers from call records ([`super::derived::CallRow`]) a query whose
//! threshold is not the one its cells were made for. Generated here, beside the rule,
//! and held equal to it by a test on random records (`clickhouse-store`'s tests).

use super::call::Outcome;
use super::time::{Millis, SECOND};

/// The code of an outcome in a stored call row.
pub fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Open => 0,
        Outcome::Answered => 1,
        Outcome::Abandoned => 2,
        Outcome::Overflow => 3,
        Outcome::Unresolved => 4,
    }
}

/// The columns of a call row the expressions read: the outcome's code (an expression:
/// a query may turn open calls into unresolved ones by its clock), whether the anchor
/// is in service hours (0/1), the net wait and talk time in ms (−1: none), bookings.
#[derive(Debug, Clone)]
pub struct RowColumns<'a> {
    pub outcome: &'a str,
    pub in_hours: &'a str,
    pub net_wait_ms: &'a str,
    pub talk_ms: &'a str,
    pub bookings: &'a str,
}

/// One aggregate expression per field of [`Figures`](super::figures::Figures), named
/// as the field (`max_wait_ms` is −1 when no call was answered), over rows that are
/// each one call.
pub fn figures_sql(c: &RowColumns<'_>, threshold_ms: Millis) -> Vec<(&'static str, String)> {
    let (o, h) = (c.outcome, c.in_hours);
    let counted = format!("({o}) != {}", outcome_code(Outcome::Open));
    let inside = |code: Outcome| format!("({o}) = {} AND {h} = 1", outcome_code(code));
    let answered = inside(Outcome::Answered);
    // Net wait of an answered call, 0 when missing (as `unwrap_or(0)`).
    let w = format!("greatest({}, 0)", c.net_wait_ms);
    let count = |cond: String| format!("toUInt64(countIf({cond}))");
    let resolved = [Outcome::Answered, Outcome::Abandoned, Outcome::Overflow]
        .map(|x| outcome_code(x).to_string())
        .join(", ");
    vec![
        ("answered", count(answered.clone())),
        ("abandoned", count(inside(Outcome::Abandoned))),
        ("overflow", count(inside(Outcome::Overflow))),
        (
            "answered_without_wait",
            count(format!("{answered} AND {w} < {SECOND}")),
        ),
        (
            "answered_wait_within_threshold",
            count(format!(
                "{answered} AND {w} >= {SECOND} AND {w} < {threshold_ms}"
            )),
        ),
        (
            "answered_wait_over_threshold",
            count(format!("{answered} AND {w} >= {threshold_ms}")),
        ),
        (
            "answered_within_threshold",
            count(format!("{answered} AND {w} < {threshold_ms}")),
        ),
        (
            "max_wait_ms",
            format!("toInt64(if(countIf({answered}) = 0, -1, maxIf({w}, {answered})))"),
        ),
        ("wait_sum_ms", format!("toUInt64(sumIf({w}, {answered}))")),
        (
            "talk_sum_ms",
            format!(
                "toUInt64(sumIf(greatest({t}, 0), {answered} AND {t} >= 0))",
                t = c.talk_ms
            ),
        ),
        (
            "talk_count",
            count(format!("{answered} AND {} >= 0", c.talk_ms)),
        ),
        (
            "bookings",
            format!(
                "toUInt64(sumIf({}, ({o}) IN ({resolved}) AND {h} = 1))",
                c.bookings
            ),
        ),
        ("out_of_hours", count(format!("{counted} AND {h} = 0"))),
        ("unresolved", count(inside(Outcome::Unresolved))),
    ]
}
