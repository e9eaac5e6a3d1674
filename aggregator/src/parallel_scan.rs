//! A scan of every call (what a report counts from without cells: a store opened for one
//! query) on two threads, half of the chunks of states each, their figures merged. Each
//! thread decodes the stored chunks it reads for the pass only (`StateChunks::walk`), so
//! a half costs what it reads and no state stays in memory after it.

use crate::domain::calendar::ServiceCalendar;
use crate::domain::cells::{CallStates, ScanShare};
use crate::domain::figures::{CallSource, Figures, IntervalGrid, LineFilter};
use crate::domain::time::Millis;
use jiff::civil::Date;

/// Books of fewer chunks than this are scanned on the calling thread alone: a thread
/// would cost about what it saves.
const SPLIT_FROM: usize = 8;

/// Every call of `book` at clock `now` (as `domain::cells::Scan`), on two threads.
pub struct ParallelScan<'a, B: ?Sized> {
    pub book: &'a B,
    pub now: Millis,
}

impl<B: CallStates + Sync + ?Sized> ParallelScan<'_, B> {
    /// `count` of each half into its own buckets, the second half's merged into `out`.
    fn by_halves(
        &self,
        count: &(dyn Fn(&ScanShare<'_, B>, &mut [Figures]) + Sync),
        out: &mut [Figures],
    ) {
        let n = self.book.chunk_count();
        let share = |chunks| ScanShare {
            book: self.book,
            now: self.now,
            chunks,
        };
        if n < SPLIT_FROM {
            return count(&share(0..n), out);
        }
        let mid = n / 2;
        let mut second = vec![Figures::default(); out.len()];
        std::thread::scope(|s| {
            let other = s.spawn(|| count(&share(mid..n), &mut second));
            count(&share(0..mid), out);
            if let Err(panic) = other.join() {
                // A damaged chunk panics the scan the same on either thread.
                std::panic::resume_unwind(panic);
            }
        });
        for (f, o) in out.iter_mut().zip(&second) {
            f.merge(o);
        }
    }
}

impl<B: CallStates + Sync + ?Sized> CallSource for ParallelScan<'_, B> {
    fn tally(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        period: (Date, Date),
        bucket: &(dyn Fn(Date) -> Option<usize> + Sync),
        out: &mut [Figures],
    ) {
        self.by_halves(
            &|share, out| share.tally(line, calendar, threshold_ms, period, bucket, out),
            out,
        );
    }

    fn tally_intervals(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        grid: IntervalGrid,
        out: &mut [Figures],
    ) {
        self.by_halves(
            &|share, out| share.tally_intervals(line, calendar, threshold_ms, grid, out),
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::callbook::CallBook;
    use crate::domain::cells::Scan;
    use crate::domain::config::MetricsConfig;
    use crate::domain::privacy::Pseudonymizer;
    use crate::domain::reports::{self, Every, Half, SlaQuery};
    use crate::domain::state_chunks::CHUNK;
    use crate::domain::time::parse_date;
    use crate::domain::validate::validate_line;

    /// `calls` calls of three lines, 37 s apart from 2019-05-28: answered, abandoned,
    /// overflowed or left open, after waits of up to 10 minutes, some with bookings.
    fn book(calls: usize) -> CallBook {
        let p = Pseudonymizer::new([0; 32]);
        let mut book = CallBook::new([7; 16]);
        let mut apply = |line: String| {
            let ev = validate_line(line.as_bytes(), &p).expect("valid");
            book.try_apply(&ev).expect("applied");
        };
        for i in 0..calls as i64 {
            let (c, t0) = (format!("c{i}"), 1_559_030_400_000 + i * 37_000);
            let line = ["cup", "prelievi", "zeta"][i as usize % 3];
            let wait = (i * 7_919) % 600_000;
            let ev = |kind: &str, ts: i64, more: &str| {
                format!(r#"{{"call_id":"{c}","type":"{kind}","ts":{ts}{more}}}"#)
            };
            apply(ev("offered", t0, &format!(r#","line":"{line}""#)));
            apply(ev("announcement_end", t0 + 40_000, ""));
            apply(ev("queued", t0 + 40_000, ""));
            let after = t0 + 40_000 + wait;
            match i % 5 {
                0 | 1 => {
                    apply(ev("answered", after, r#","agent":"op""#));
                    apply(ev("ended", after + 95_000, ""));
                }
                2 => apply(ev("abandoned", after, "")),
                3 => apply(ev("overflow", t0 + 10_000, "")),
                _ => {} // open: unresolved six hours on
            }
            if i % 7 == 0 {
                apply(ev("booking", after + 60_000, r#","booking":"book""#));
            }
        }
        book
    }

    #[test]
    fn two_halves_count_what_one_scan_counts() {
        let cfg = MetricsConfig::default();
        let d = |s| parse_date(s).expect("date");
        // Odd and even numbers of chunks, the last one partial; and one below the split.
        for calls in [11 * CHUNK - 5, 12 * CHUNK, 3 * CHUNK + 1] {
            let book = book(calls);
            for now in [book.clock(0), book.clock(0) + 7 * 3_600_000] {
                let (one, two) = (Scan { book: &book, now }, ParallelScan { book: &book, now });
                for line in [None, Some("cup".to_owned()), Some("nope".to_owned())] {
                    for threshold in [cfg.threshold_ms, 95_500] {
                        let t1 = |s: &dyn CallSource| {
                            reports::table1(
                                s,
                                &cfg,
                                d("2019-05-01"),
                                d("2019-07-01"),
                                line.clone(),
                                threshold,
                            )
                        };
                        assert_eq!(t1(&one), t1(&two), "{calls} {line:?} {threshold}");
                        let q = SlaQuery {
                            year: 2019,
                            line: line.clone(),
                            threshold_ms: threshold,
                            target: 0.6,
                        };
                        assert_eq!(
                            reports::sla_year(&one, &cfg, q.clone()),
                            reports::sla_year(&two, &cfg, q)
                        );
                        let iv = |s: &dyn CallSource| {
                            let period = (d("2019-06-01"), d("2019-06-08"));
                            reports::intervals(
                                s,
                                &cfg,
                                period,
                                line.clone(),
                                threshold,
                                Every::Min30,
                            )
                        };
                        assert_eq!(iv(&one), iv(&two));
                    }
                }
                let half = Half {
                    year: 2019,
                    second: false,
                };
                assert_eq!(
                    reports::volume_check(&one, &cfg, half),
                    reports::volume_check(&two, &cfg, half)
                );
            }
            // The calls were counted at all (the comparison proves nothing otherwise).
            let all = reports::table1(
                &ParallelScan {
                    book: &book,
                    now: book.clock(0),
                },
                &cfg,
                d("2019-01-01"),
                d("2020-01-01"),
                None,
                cfg.threshold_ms,
            );
            let f = all.figures;
            assert!(
                f.answered > 1_000 && f.abandoned > 500 && f.out_of_hours > 1_000,
                "{f:?}"
            );
        }
    }
}
