//! What queries read: an immutable [`Snapshot`] of the engine's durable state, which the
//! engine's one writer publishes after each durable commit ([`crate::engine::Engine::publish`]).
//! Readers hold it as long as they like and never wait on the writer.
//!
//! A snapshot shares everything with the book it was published from: the book keeps its
//! call states in chunks of [`CHUNK`] calls behind [`Arc`]s (see
//! [`crate::domain::state_chunks`]), a snapshot holds the same chunks, and the book
//! copies a chunk a snapshot still holds before it changes it (copy on write: a commit
//! touches the calls of its events, one or two chunks, plus those of late events); the
//! cells share their days the same way (see [`crate::domain::cells`]). The cost of a
//! publication is a list of chunk pointers, not the history, and no state is kept twice.

use crate::domain::call::{CallRecord, CallState, LineId, NONE};
use crate::domain::callbook::CallBook;
use crate::domain::cells::{CallStates, Cells, CellsView};
use crate::domain::config::MetricsConfig;
use crate::domain::event::DEFAULT_LINE;
use crate::domain::figures::CallSource;
use crate::domain::reports::{
    self, Every, Half, IntervalReport, SlaQuery, SlaYear, Table1, VolumeCheck,
};
pub use crate::domain::state_chunks::CHUNK;
use crate::domain::state_chunks::SharedChunks;
use crate::domain::time::Millis;
use crate::parallel_scan::ParallelScan;
use crate::store::LogPosition;
use jiff::civil::Date;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// The interned lines of a book, as a snapshot reads them.
#[derive(Debug, Default)]
struct LineTable {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, LineId>,
}

impl LineTable {
    fn of(book: &CallBook) -> Self {
        let names: Vec<Box<str>> = book.line_names().map(Into::into).collect();
        let ids = names
            .iter()
            .filter_map(|n| book.line_id(n).map(|id| (n.clone(), id)))
            .collect();
        Self { names, ids }
    }
}

/// The call states of a book at one publication, in shared chunks (those still in the
/// checkpoint loaded when first read).
#[derive(Debug, Clone, Default)]
pub struct SharedStates {
    chunks: SharedChunks,
    lines: Arc<LineTable>,
}

impl CallStates for SharedStates {
    fn state(&self, i: u32) -> &CallState {
        self.chunks.get(i)
    }

    fn count(&self) -> usize {
        self.chunks.len()
    }

    fn line_id(&self, name: &str) -> Option<LineId> {
        self.lines.ids.get(name).copied()
    }

    /// As [`CallBook::line_of`].
    fn line_of(&self, state: &CallState) -> LineId {
        if state.offered == NONE {
            self.line_id(DEFAULT_LINE).unwrap_or(LineId::MAX)
        } else {
            state.line
        }
    }

    /// As [`CallBook::record`].
    fn record(&self, state: &CallState, now: Millis) -> CallRecord<'_> {
        let name = if state.offered == NONE {
            DEFAULT_LINE
        } else {
            self.lines
                .names
                .get(state.line as usize)
                .map_or(DEFAULT_LINE, |s| s)
        };
        state.record(now, name)
    }

    fn walk(&self, chunks: Range<usize>) -> Box<dyn Iterator<Item = CallState> + '_> {
        Box::new(self.chunks.walk(chunks))
    }
}

/// The call states a snapshot reads: shared chunks (a server's publications), or a whole
/// book handed over for good ([`crate::engine::Engine::into_snapshot`]: a one-shot
/// query copies nothing).
#[derive(Clone)]
pub(crate) enum States {
    Shared(SharedStates),
    Book(Arc<CallBook>),
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shared(s) => f.debug_tuple("Shared").field(s).finish(),
            Self::Book(b) => write!(f, "Book({} calls)", b.calls()),
        }
    }
}

impl CallStates for States {
    fn state(&self, i: u32) -> &CallState {
        match self {
            Self::Shared(s) => s.state(i),
            Self::Book(b) => b.state(i),
        }
    }

    fn count(&self) -> usize {
        match self {
            Self::Shared(s) => s.count(),
            Self::Book(b) => CallStates::count(&**b),
        }
    }

    fn line_id(&self, name: &str) -> Option<LineId> {
        match self {
            Self::Shared(s) => s.line_id(name),
            Self::Book(b) => CallStates::line_id(&**b, name),
        }
    }

    fn line_of(&self, state: &CallState) -> LineId {
        match self {
            Self::Shared(s) => s.line_of(state),
            Self::Book(b) => CallStates::line_of(&**b, state),
        }
    }

    fn record(&self, state: &CallState, now: Millis) -> CallRecord<'_> {
        match self {
            Self::Shared(s) => s.record(state, now),
            Self::Book(b) => CallStates::record(&**b, state, now),
        }
    }

    fn walk(&self, chunks: Range<usize>) -> Box<dyn Iterator<Item = CallState> + '_> {
        match self {
            Self::Shared(s) => s.walk(chunks),
            Self::Book(b) => CallStates::walk(&**b, chunks),
        }
    }
}

/// The writer's side: what every publication shares.
#[derive(Debug)]
pub(crate) struct Publisher {
    lines: Arc<LineTable>,
    config: Arc<MetricsConfig>,
}

impl Publisher {
    pub(crate) fn new(config: &MetricsConfig) -> Self {
        Self {
            lines: Arc::default(),
            config: Arc::new(config.clone()),
        }
    }

    /// The states of `book` now: its chunks, shared (those not in memory yet are loaded
    /// by the first reader).
    pub(crate) fn states(&mut self, book: &mut CallBook) -> SharedStates {
        if self.lines.names.len() != book.line_names().count() {
            self.lines = Arc::new(LineTable::of(book));
        }
        SharedStates {
            chunks: book.share_states(),
            lines: Arc::clone(&self.lines),
        }
    }

    pub(crate) fn config(&self) -> &Arc<MetricsConfig> {
        &self.config
    }
}

/// The engine's durable state at one publication: answers every query as the engine
/// does (the cells of the period for the configured threshold, a recount of the
/// period's calls for another, every call without cells).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) config: Arc<MetricsConfig>,
    pub(crate) states: States,
    pub(crate) cells: Option<Cells>,
    pub(crate) newest_ts: Option<Millis>,
    pub(crate) position: LogPosition,
}

impl Snapshot {
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// The service lines seen (a query's `line` must be one of them).
    pub fn lines(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.states {
            States::Shared(s) => Box::new(s.lines.names.iter().map(|l| &**l)),
            States::Book(b) => Box::new(b.line_names()),
        }
    }

    /// The end of the log this snapshot covers.
    pub fn position(&self) -> LogPosition {
        self.position
    }

    /// How many calls it holds.
    pub fn calls(&self) -> usize {
        self.states.count()
    }

    /// As [`CallBook::clock`].
    fn clock(&self, wall: Millis) -> Millis {
        self.newest_ts.map_or(wall, |n| n.max(wall))
    }
}

impl Answers for Snapshot {
    fn answer_config(&self) -> &MetricsConfig {
        &self.config
    }

    fn answer_source<T>(&self, wall: Millis, count: impl FnOnce(&dyn CallSource) -> T) -> T {
        let (book, now) = (&self.states, self.clock(wall));
        match &self.cells {
            Some(cells) if !cells.is_damaged() => count(&CellsView { cells, book, now }),
            _ => count(&ParallelScan { book, now }),
        }
    }
}

/// The queries of the API, answered alike by the engine and by a snapshot: they differ
/// only in where the records are counted from ([`Self::answer_source`]).
pub trait Answers {
    /// The configuration the figures follow.
    fn answer_config(&self) -> &MetricsConfig;

    /// Calls `count` with what the records are counted from at wall clock `wall`.
    fn answer_source<T>(&self, wall: Millis, count: impl FnOnce(&dyn CallSource) -> T) -> T;

    fn table1(
        &self,
        wall: Millis,
        from: Date,
        to: Date,
        line: Option<String>,
        threshold_ms: Option<Millis>,
    ) -> Table1 {
        let config = self.answer_config();
        let threshold_ms = threshold_ms.unwrap_or(config.threshold_ms);
        self.answer_source(wall, |source| {
            reports::table1(source, config, from, to, line, threshold_ms)
        })
    }

    fn sla_year(
        &self,
        wall: Millis,
        year: i16,
        line: Option<String>,
        threshold_ms: Option<Millis>,
        target: Option<f64>,
    ) -> SlaYear {
        let config = self.answer_config();
        let q = SlaQuery {
            year,
            line,
            threshold_ms: threshold_ms.unwrap_or(config.threshold_ms),
            target: target.unwrap_or(config.target),
        };
        self.answer_source(wall, |source| reports::sla_year(source, config, q))
    }

    /// The figures of each interval of `[from, to)` (see [`reports::intervals`]).
    fn intervals(
        &self,
        wall: Millis,
        period: (Date, Date),
        line: Option<String>,
        threshold_ms: Option<Millis>,
        every: Every,
    ) -> IntervalReport {
        let config = self.answer_config();
        let threshold_ms = threshold_ms.unwrap_or(config.threshold_ms);
        self.answer_source(wall, |source| {
            reports::intervals(source, config, period, line, threshold_ms, every)
        })
    }

    fn volume(&self, wall: Millis, half: Half) -> VolumeCheck {
        let config = self.answer_config();
        self.answer_source(wall, |source| reports::volume_check(source, config, half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::privacy::Pseudonymizer;
    use crate::domain::time::parse_date;
    use crate::domain::validate::validate_line;
    use crate::engine::Engine;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::record::Record;

    /// One event line of call `i` (spread over March 2019, two lines).
    fn line(i: usize, kind: &str, offset_s: usize) -> String {
        let (day, s) = (1 + i % 28, 8 * 3600 + (i * 37) % 30_000 + offset_s);
        let ts = format!(
            "2019-03-{day:02}T{:02}:{:02}:{:02}+01:00",
            s / 3600,
            s / 60 % 60,
            s % 60
        );
        let line = if i.is_multiple_of(3) {
            "prelievi"
        } else {
            "cup"
        };
        let agent = if kind == "answered" {
            r#","agent":"op""#
        } else {
            ""
        };
        format!(r#"{{"call_id":"c{i}","type":"{kind}","ts":"{ts}","line":"{line}"{agent}}}"#)
    }

    fn ingest(e: &mut Engine, lines: &[String]) {
        let p = Pseudonymizer::new([0; 32]);
        let records = lines
            .iter()
            .map(|l| Record::Event(validate_line(l.as_bytes(), &p).expect("valid")));
        e.ingest(records).expect("ingest");
    }

    fn calls(range: std::ops::Range<usize>, kind: &str, offset_s: usize) -> Vec<String> {
        range.map(|i| line(i, kind, offset_s)).collect()
    }

    /// Every query the API asks, from the engine and from a snapshot.
    fn same_answers(e: &Engine, s: &Snapshot) {
        let d = |t| parse_date(t).expect("date");
        let periods = [("2019-03-01", "2019-04-01"), ("2019-03-04", "2019-03-05")];
        for (from, to) in periods {
            for line in [None, Some("prelievi".to_owned())] {
                for t in [None, Some(95_500)] {
                    assert_eq!(
                        e.table1(0, d(from), d(to), line.clone(), t),
                        s.table1(0, d(from), d(to), line.clone(), t),
                        "{from}..{to} {line:?} {t:?}"
                    );
                }
            }
        }
        // Hours later by the wall clock: the open calls are unresolved by then.
        let later = e.book().clock(0) + 7 * 3_600_000;
        assert_eq!(
            e.table1(later, d("2019-03-01"), d("2019-04-01"), None, None),
            s.table1(later, d("2019-03-01"), d("2019-04-01"), None, None)
        );
        assert_eq!(
            e.sla_year(0, 2019, None, None, None),
            s.sla_year(0, 2019, None, None, None)
        );
        assert_eq!(
            e.sla_year(0, 2019, Some("cup".into()), Some(60_000), Some(0.7)),
            s.sla_year(0, 2019, Some("cup".into()), Some(60_000), Some(0.7))
        );
        let h1 = Half {
            year: 2019,
            second: false,
        };
        assert_eq!(e.volume(0, h1), s.volume(0, h1));
        let march = (d("2019-03-01"), d("2019-04-01"));
        for every in [Every::Min15, Every::Min60] {
            assert_eq!(
                e.intervals(later, march, Some("cup".into()), None, every),
                s.intervals(later, march, Some("cup".into()), None, every)
            );
        }
        assert_eq!(e.lines().collect::<Vec<_>>(), s.lines().collect::<Vec<_>>());
    }

    fn shared(s: &Snapshot) -> &SharedStates {
        match &s.states {
            States::Shared(shared) => shared,
            States::Book(_) => panic!("a publication shares chunks"),
        }
    }

    fn chunk(s: &Snapshot, c: usize) -> &crate::domain::state_chunks::Chunk {
        shared(s).chunks.chunk(c)
    }

    #[test]
    fn an_engine_handed_over_answers_as_itself() {
        for indexed in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut e = Engine::open(
                Box::new(EmbeddedStore::open(dir.path()).expect("store")),
                [1; 16],
                MetricsConfig::default(),
            )
            .expect("engine");
            if indexed {
                e.index_periods();
            }
            ingest(&mut e, &calls(0..5_000, "offered", 0));
            ingest(&mut e, &calls(0..3_000, "answered", 90));
            let dir2 = tempfile::tempdir().expect("tempdir");
            let mut twin = Engine::open(
                Box::new(EmbeddedStore::open(dir2.path()).expect("store")),
                [1; 16],
                MetricsConfig::default(),
            )
            .expect("engine");
            ingest(&mut twin, &calls(0..5_000, "offered", 0));
            ingest(&mut twin, &calls(0..3_000, "answered", 90));
            let s = e.into_snapshot();
            assert!(matches!(s.states, States::Book(_)));
            same_answers(&twin, &s);
        }
    }

    fn snapshots_answer_as_the_engine_and_share_what_did_not_change(indexed: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let mut e =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        if indexed {
            e.index_periods();
        }
        let empty = e.publish();
        assert_eq!(empty.calls(), 0);
        // Calls 0..9000 offered and waiting: three chunks, the last one partial.
        let mut first = calls(0..9_000, "offered", 0);
        first.extend(calls(0..9_000, "announcement_end", 40));
        ingest(&mut e, &first);
        let s1 = e.publish();
        assert_eq!((s1.calls(), shared(&s1).chunks.chunk_count()), (9_000, 3));
        same_answers(&e, &s1);
        let s1_table = s1.table1(
            0,
            parse_date("2019-03-01").expect("d"),
            parse_date("2019-04-01").expect("d"),
            None,
            None,
        );

        // Answers for calls of chunks 1 and 2, and new calls: chunk 0 is shared.
        let mut second = calls(8_000..9_000, "answered", 100);
        second.extend(calls(9_000..9_500, "offered", 0));
        ingest(&mut e, &second);
        let s2 = e.publish();
        assert!(Arc::ptr_eq(chunk(&s1, 0), chunk(&s2, 0)));
        assert!(!Arc::ptr_eq(chunk(&s1, 1), chunk(&s2, 1)));
        assert!(!Arc::ptr_eq(chunk(&s1, 2), chunk(&s2, 2)));
        same_answers(&e, &s2);

        // A late outcome of an old call (chunk 0) and a duplicate: chunks 1, 2 shared.
        ingest(
            &mut e,
            &[line(5, "abandoned", 90), line(8_500, "answered", 100)],
        );
        let s3 = e.publish();
        assert!(!Arc::ptr_eq(chunk(&s2, 0), chunk(&s3, 0)));
        assert!(Arc::ptr_eq(chunk(&s2, 1), chunk(&s3, 1)));
        assert!(Arc::ptr_eq(chunk(&s2, 2), chunk(&s3, 2)));
        same_answers(&e, &s3);
        // Nothing changed: the same chunks again.
        let s4 = e.publish();
        assert!((0..3).all(|c| Arc::ptr_eq(chunk(&s3, c), chunk(&s4, c))));
        assert_eq!(s4.position(), s3.position());

        // An older snapshot still answers as it did when it was published.
        let again = s1.table1(
            0,
            parse_date("2019-03-01").expect("d"),
            parse_date("2019-04-01").expect("d"),
            None,
            None,
        );
        assert_eq!(s1_table, again);
        assert_ne!(
            again,
            s3.table1(
                0,
                parse_date("2019-03-01").expect("d"),
                parse_date("2019-04-01").expect("d"),
                None,
                None
            )
        );
        assert_eq!(empty.calls(), 0);
    }

    #[test]
    fn snapshots_of_an_indexed_engine_answer_as_it_does() {
        snapshots_answer_as_the_engine_and_share_what_did_not_change(true);
    }

    #[test]
    fn snapshots_of_an_engine_without_cells_answer_as_it_does() {
        snapshots_answer_as_the_engine_and_share_what_did_not_change(false);
    }

    #[test]
    fn indexing_after_publishing_keeps_the_changes_for_the_next_publication() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let mut e =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        ingest(&mut e, &calls(0..100, "offered", 0));
        let _ = e.publish();
        ingest(&mut e, &calls(0..100, "abandoned", 50));
        e.index_periods();
        let s = e.publish();
        same_answers(&e, &s);
    }
}
